"""The tool contract: typed arguments, typed results, declared traits, previews.

A tool is a plain function ``fn(args: ArgsModel, ctx: ToolContext[Resources]) -> ResultModel``
wrapped by ``@tool(...)`` into a frozen ``ToolSpec``. What a call means to the policy (money
moved, fields written, subjects and records touched, evidence cited) is declared once, as
traits, and turned into an ``ActionRequest`` in exactly one place, ``describe_action``; the
workflow, ``tether policy explain`` and ``tether policy diff --replay`` all use it. The model
never chooses the subject. Write tools declare ``effect="write"`` and may supply a dry-run
``preview``; they receive an idempotency key in ``ToolContext`` and must honour it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError

from tether.guards.citations import CitationFact
from tether.guards.context import RunContext, Subject
from tether.guards.policy import ActionRequest

__all__ = [
    "ArgumentProblem",
    "HandOff",
    "ToolContext",
    "ToolSpec",
    "ToolTraits",
    "Toolset",
    "describe_action",
    "describe_args",
    "tool",
]

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
Res = TypeVar("Res")
Effect = Literal["read", "write"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolContext(Generic[Res]):
    """What a tool may know about the run. Built by the workflow, never by the model."""

    subject: Subject | None
    """The party the run acts for (``None`` when the workflow runs without one)."""
    thread_id: str
    run_id: str
    tool_call_id: str
    idempotency_key: str
    """Stable per (thread, tool call): a repeated execution must not repeat the effect."""
    resources: Res
    """What the workflow author provides to tools (connections, clients, a knowledge base)."""
    evidence: frozenset[str] = frozenset()
    """Evidence ids retrieved so far in this run."""

    @property
    def subject_id(self) -> str:
        """The subject's id; raises ``ToolError`` when the run has no subject."""
        if self.subject is None:
            from tether.errors import ToolError

            raise ToolError(code="no_subject", message="this tool needs a subject and the run has none",
                            hint="Start the run with a subject (Session.run(..., subject=...)).")
        return self.subject.id


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolTraits:
    """Which argument means what to the policy. Every field names an argument, or is ``None``."""

    amount_arg: str | None = None
    """USD amount the call moves (policy: max_amount_usd, approvals, per-run totals)."""
    fields_arg: str | None = None
    """Mapping of record fields to write (policy: allowed_fields)."""
    subject_arg: str | None = None
    """A subject the call targets (policy: row_level_security)."""
    record_arg: str | None = None
    """Record id (or list of ids) the call reads or writes (policy: context rules per record)."""
    citations_arg: str | None = None
    """Evidence ids the call cites (policy: require_citation / citation; see ``guards.citations``)."""
    sql_arg: str | None = None
    """Free SQL text (policy: mode parameterized_only / read_only_sql)."""

    @classmethod
    def guess(cls, args: Mapping[str, Any]) -> ToolTraits:
        """Traits from common argument names, for ``policy explain`` without a workflow."""
        cites = next((c for c in ("citation_ids", "citations") if c in args), None)
        pick = {k: k if k in args else None for k in ("amount_usd", "fields", "customer_id", "sql")}
        return cls(amount_arg=pick["amount_usd"], fields_arg=pick["fields"],
                   subject_arg=pick["customer_id"], citations_arg=cites, sql_arg=pick["sql"])


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ids(v: Any) -> tuple[str, ...]:
    if v is None or v == "":
        return ()
    return tuple(str(x) for x in v) if isinstance(v, list | tuple) else (str(v),)


def describe_action(
    tool: str,
    traits: ToolTraits,
    data: Mapping[str, Any],
    context: RunContext,
    *,
    evidence: frozenset[str] | None = None,
    run_total_usd: float = 0.0,
    citation_facts: tuple[CitationFact, ...] = (),
) -> ActionRequest:
    """The one place a call becomes what the policy decides on.

    ``data`` are the validated arguments as JSON; ``context`` is the run so far (subject,
    principal, roles, earlier actions). ``evidence`` defaults to the context's.
    ``citation_facts`` are what the workflow measured about the cited ids (see
    ``guards.citations.measure_citations``); without them the gate checks retrieval only.
    """
    t = traits
    fields = data.get(t.fields_arg) if t.fields_arg else None
    sql = data.get(t.sql_arg) if t.sql_arg else None
    return ActionRequest(
        tool=tool,
        amount_usd=_number(data.get(t.amount_arg)) if t.amount_arg else None,
        run_total_usd=run_total_usd,
        fields=tuple(sorted(fields)) if isinstance(fields, Mapping | list | tuple) else None,
        free_sql=bool(sql),
        sql=str(sql) if sql else None,
        target_subject_ids=_ids(data.get(t.subject_arg)) if t.subject_arg else (),
        subject_id=context.subject.id if context.subject else None,
        records=_ids(data.get(t.record_arg)) if t.record_arg else (),
        citations=_ids(data.get(t.citations_arg)) if t.citations_arg else (),
        retrieved_evidence=context.evidence if evidence is None else evidence,
        citation_facts=citation_facts,
        principal=context.principal,
        roles=context.roles,
        args=dict(data),
        context=context,
    )


def describe_args(
    tool: str,
    args: Mapping[str, Any],
    *,
    traits: ToolTraits | None = None,
    subject: str | None = None,
    principal: str | None = None,
    roles: tuple[str, ...] = (),
    evidence: frozenset[str] | None = None,
) -> ActionRequest:
    """``describe_action`` for plain arguments outside a run (``policy explain``, replays).

    ``traits=None`` guesses them from common argument names; ``evidence=None`` assumes every
    cited id was retrieved.
    """
    t = traits or ToolTraits.guess(args)
    cited = _ids(args.get(t.citations_arg)) if t.citations_arg else ()
    context = RunContext(principal=principal, roles=roles,
                         subject=Subject(id=subject) if subject else None,
                         evidence=frozenset(cited) if evidence is None else evidence)
    return describe_action(tool, t, args, context)


@dataclass(frozen=True, kw_only=True, slots=True)
class HandOff:
    """What a terminal tool's success means: the case goes to a human with this summary."""

    reason: str
    summary: str
    ticket_id: str | None = None


class ArgumentProblem(BaseModel):
    """Why the model's arguments were refused before any policy check. The model sees this."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    fn: Callable[[A, ToolContext[Any]], R]
    effect: Effect = "read"
    schema_version: str = "1"
    """Bump when the argument or result shape changes."""
    traits: ToolTraits = ToolTraits()
    """Which argument means what to the policy."""
    preview: Callable[[A, ToolContext[Any]], str] | None = None
    """Dry run: describe what the call would change, without changing it."""
    terminal: Callable[[A, R], HandOff] | None = None
    """Set for a hand-off tool: a successful call ends the run, handed to a human as returned."""
    yields_evidence: bool = False
    """The result has an ``evidence`` list whose ids become citable in this run."""
    idempotent: bool = True
    """Repeating a call with the same idempotency key cannot repeat its effect (reads are
    trivially idempotent; write tools must check the key). A non-idempotent tool whose
    earlier attempt has an unknown outcome is escalated instead of re-run."""

    @property
    def amount_arg(self) -> str | None:
        return self.traits.amount_arg

    @property
    def citations_arg(self) -> str | None:
        return self.traits.citations_arg

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

    def describe(self, args: A, context: RunContext, *, run_total_usd: float = 0.0,
                 citation_facts: tuple[CitationFact, ...] = ()) -> ActionRequest:
        """Validated arguments, as the policy sees them (see ``describe_action``)."""
        return describe_action(
            self.name, self.traits, args.model_dump(mode="json"), context, run_total_usd=run_total_usd,
            citation_facts=citation_facts,
        )

    def run(self, args: A, ctx: ToolContext[Any]) -> R:
        return self.fn(args, ctx)

    def openai_schema(self) -> dict[str, Any]:
        """The schema handed to a chat model's ``bind_tools`` (built once per tool)."""
        fresh: dict[str, Any] = json.loads(_function_schema(self.name, self.description, self.args_model))
        return fresh

    def shape(self) -> tuple[frozenset[str], frozenset[str]]:
        """Argument names and dotted result field paths (for checking policy names)."""
        return frozenset(self.args_model.model_fields), frozenset(_paths(self.result_model))


def _paths(model: type[BaseModel], prefix: str = "", depth: int = 0) -> list[str]:
    out: list[str] = []
    for name, f in model.model_fields.items():
        path = prefix + name
        out.append(path)
        inner = _model_in(f.annotation)
        if inner is not None and depth < 4:
            out += _paths(inner, path + ".", depth + 1)
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=512)
def _function_schema(name: str, description: str, args_model: type[BaseModel]) -> str:
    params = args_model.model_json_schema()
    params.pop("title", None)
    return json.dumps({"type": "function", "function": {"name": name, "description": description,
                                                        "parameters": params}})


def tool(
    *,
    name: str,
    effect: Effect = "read",
    amount_arg: str | None = None,
    fields_arg: str | None = None,
    subject_arg: str | None = None,
    record_arg: str | None = None,
    citations_arg: str | None = None,
    sql_arg: str | None = None,
    preview: Callable[[Any, ToolContext[Any]], str] | None = None,
    terminal: Callable[[Any, Any], HandOff] | None = None,
    yields_evidence: bool = False,
    idempotent: bool = True,
    schema_version: str = "1",
) -> Callable[[Callable[[A, ToolContext[Any]], R]], ToolSpec[A, R]]:
    """Declare a tool from a typed function ``fn(args, ctx) -> result``.

    The argument and result models are read from the function's annotations; the first
    paragraph of its docstring is the description the model sees. The ``*_arg`` traits name
    the arguments the policy reads (see ``ToolTraits``).
    """
    traits = ToolTraits(amount_arg=amount_arg, fields_arg=fields_arg, subject_arg=subject_arg,
                        record_arg=record_arg, citations_arg=citations_arg, sql_arg=sql_arg)

    def wrap(fn: Callable[[A, ToolContext[Any]], R]) -> ToolSpec[A, R]:
        hints = get_type_hints(fn)
        args_model, result_model = hints["args"], hints["return"]
        unknown = [a for a in _trait_args(traits) if a not in args_model.model_fields]
        if unknown:
            raise ValueError(f"tool {name!r}: traits name arguments {unknown} that "
                             f"{args_model.__name__} does not have ({', '.join(args_model.model_fields)})")
        doc = (fn.__doc__ or name).strip().split("\n\n")[0]
        return ToolSpec(
            name=name,
            description=" ".join(doc.split()),
            args_model=args_model,
            result_model=result_model,
            fn=fn,
            effect=effect,
            traits=traits,
            preview=preview,
            terminal=terminal,
            yields_evidence=yields_evidence,
            idempotent=idempotent,
            schema_version=schema_version,
        )

    return wrap


def _trait_args(t: ToolTraits) -> list[str]:
    values = (t.amount_arg, t.fields_arg, t.subject_arg, t.record_arg, t.citations_arg, t.sql_arg)
    return [v for v in values if v is not None]


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
