"""The tool contract: typed arguments, typed results, declared traits, previews.

A tool is a plain function ``fn(args: ArgsModel, ctx: ToolContext) -> ResultModel`` wrapped by
``@tool(...)`` into a frozen ``ToolSpec``. The spec tells the policy what the call means
(amount moved, fields written, customers touched) through ``describe()``; it never lets the
model choose the principal. Write tools declare ``effect="write"`` and may supply a dry-run
``preview``; they receive an idempotency key in ``ToolContext`` and must honour it.
"""

from __future__ import annotations

import copy
import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError

from tether.guards.policy import ActionRequest

__all__ = [
    "ArgumentProblem",
    "ToolContext",
    "ToolSpec",
    "Toolset",
    "tool",
]

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
Effect = Literal["read", "write"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolContext:
    """What a tool may know about the run. Built by the workflow, never by the model."""

    customer_id: str
    """The end user the run acts for."""
    thread_id: str
    run_id: str
    tool_call_id: str
    idempotency_key: str
    """Stable per (thread, tool call): a repeated execution must not repeat the effect."""
    db: sqlite3.Connection
    """Connection to the business database."""
    evidence: frozenset[str] = frozenset()
    """Evidence ids retrieved so far in this run."""


class ArgumentProblem(BaseModel):
    """Why the model's arguments were refused before any policy check. The model sees this."""

    model_config = ConfigDict(frozen=True)

    tool: str
    code: Literal["unknown_tool", "invalid_arguments"]
    errors: tuple[str, ...]
    hint: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSpec(Generic[A, R]):
    """A typed, policy-describable tool."""

    name: str
    description: str
    args_model: type[A]
    result_model: type[R]
    fn: Callable[[A, ToolContext], R]
    effect: Effect = "read"
    schema_version: str = "1"
    """Bump when the argument or result shape changes."""
    amount_arg: str | None = None
    """Argument holding the USD amount the call moves (policy: max_amount_usd, approvals)."""
    fields_arg: str | None = None
    """Argument holding a mapping of record fields to write (policy: allowed_fields)."""
    customer_arg: str | None = None
    """Argument naming a customer the call targets (policy: row_level_security)."""
    citations_arg: str | None = None
    """Argument listing evidence ids the call cites (policy: require_citation)."""
    sql_arg: str | None = None
    """Argument that would carry free SQL text (policy: mode parameterized_only)."""
    preview: Callable[[A, ToolContext], str] | None = None
    """Dry run: describe what the call would change, without changing it."""
    terminal: bool = False
    """A successful call ends the run (e.g. hand-off to a human)."""
    yields_evidence: bool = False
    """The result has an ``evidence`` list whose ids become citable in this run."""
    idempotent: bool = True
    """Repeating a call with the same idempotency key cannot repeat its effect (reads are
    trivially idempotent; write tools must check the key). A non-idempotent tool whose
    earlier attempt has an unknown outcome is escalated instead of re-run."""

    def parse(self, raw: Mapping[str, Any]) -> A | ArgumentProblem:
        try:
            return self.args_model.model_validate(dict(raw))
        except ValidationError as err:
            msgs = tuple(
                f"{'.'.join(str(p) for p in e['loc']) or '<args>'}: {e['msg']}" for e in err.errors()
            )
            return ArgumentProblem(
                tool=self.name,
                code="invalid_arguments",
                errors=msgs,
                hint=f"Call {self.name} again with arguments matching its schema.",
            )

    def describe(
        self,
        args: A,
        *,
        principal: str,
        evidence: frozenset[str],
        agent: str | None = None,
        roles: tuple[str, ...] = (),
    ) -> ActionRequest:
        """Turn validated arguments into what the policy decides on.

        ``principal`` is the end user (customer) the run acts for; ``agent`` and ``roles`` are
        the agent identity and its roles. All three come from the run's configuration.
        """
        data = args.model_dump(mode="json")
        amount = data.get(self.amount_arg) if self.amount_arg else None
        fields = data.get(self.fields_arg) if self.fields_arg else None
        target = data.get(self.customer_arg) if self.customer_arg else None
        cites = data.get(self.citations_arg) if self.citations_arg else None
        sql = data.get(self.sql_arg) if self.sql_arg else None
        return ActionRequest(
            tool=self.name,
            amount_usd=float(amount) if amount is not None else None,
            fields=tuple(sorted(fields)) if fields is not None else None,
            free_sql=bool(sql),
            sql=str(sql) if sql else None,
            target_customer_ids=(str(target),) if target else (),
            principal_customer_id=principal,
            citations=tuple(cites or ()),
            retrieved_evidence=evidence,
            principal=agent,
            roles=roles,
            args=data,
        )

    def run(self, args: A, ctx: ToolContext) -> R:
        return self.fn(args, ctx)

    def openai_schema(self) -> dict[str, Any]:
        """The schema handed to a chat model's ``bind_tools`` (built once per tool)."""
        return copy.deepcopy(_function_schema(self.name, self.description, self.args_model))


@functools.lru_cache(maxsize=512)
def _function_schema(name: str, description: str, args_model: type[BaseModel]) -> dict[str, Any]:
    params = args_model.model_json_schema()
    params.pop("title", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def tool(
    *,
    name: str,
    effect: Effect = "read",
    amount_arg: str | None = None,
    fields_arg: str | None = None,
    customer_arg: str | None = None,
    citations_arg: str | None = None,
    sql_arg: str | None = None,
    preview: Callable[[Any, ToolContext], str] | None = None,
    terminal: bool = False,
    yields_evidence: bool = False,
    idempotent: bool = True,
    schema_version: str = "1",
) -> Callable[[Callable[[A, ToolContext], R]], ToolSpec[A, R]]:
    """Declare a tool from a typed function ``fn(args, ctx) -> result``.

    The argument and result models are read from the function's annotations; the first
    paragraph of its docstring is the description the model sees.
    """

    def wrap(fn: Callable[[A, ToolContext], R]) -> ToolSpec[A, R]:
        hints = get_type_hints(fn)
        args_model, result_model = hints["args"], hints["return"]
        doc = (fn.__doc__ or name).strip().split("\n\n")[0]
        return ToolSpec(
            name=name,
            description=" ".join(doc.split()),
            args_model=args_model,
            result_model=result_model,
            fn=fn,
            effect=effect,
            amount_arg=amount_arg,
            fields_arg=fields_arg,
            customer_arg=customer_arg,
            citations_arg=citations_arg,
            sql_arg=sql_arg,
            preview=preview,
            terminal=terminal,
            yields_evidence=yields_evidence,
            idempotent=idempotent,
            schema_version=schema_version,
        )

    return wrap


@dataclass(frozen=True, kw_only=True, slots=True)
class Toolset:
    """An ordered, name-indexed set of tools."""

    tools: Sequence[ToolSpec[Any, Any]]
    _by_name: Mapping[str, ToolSpec[Any, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tools]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate tool names: {sorted(dup)}")
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tools})

    def get(self, name: str) -> ToolSpec[Any, Any] | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.openai_schema() for t in self.tools]
