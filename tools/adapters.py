"""LangChain tools (``BaseTool``, ``@tool``) as tether tool contracts.

The argument schema comes from the tool (its ``args_schema``: a pydantic model, or the JSON
schema an MCP server publishes); the result is wrapped in ``ToolOutput`` (``content`` text and,
when the tool returns one, a ``structured`` JSON value). What a call *means* cannot be declared
in code we do not own, so it is declared in the policy file:

    tools:
      lookup_invoice: {allowed: true, effect: read}
      pay_invoice:
        allowed: true
        effect: write
        traits: {amount_arg: amount_usd, record_arg: invoice_id}
        require_approval_over_usd: 100

An allowed tool without ``effect`` is refused when it is wrapped (``tools.<t>.effect``); a
tool the policy does not list is still wrapped, and every call of it is denied
(``default.unlisted_tool``), as for any tool.

Writes and idempotency: the workflow records intent (``executing``, with the idempotency key)
before the call and completion (``executed``) after it, and never re-runs a completed call. A
wrapped tool whose schema has an ``idempotency_key`` argument receives the run's key there (the
model never sees or sets it) and is marked ``idempotent=True``. Any other write tool is
``idempotent=False``: a crash between intent and completion escalates to a human instead of
calling the tool a second time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from tether.errors import MissingExtra, PolicyFileError, PolicyProblem, ToolError
from tether.guards.policy_sections import TRAIT_KEYS
from tether.tools.base import ToolContext, Toolset, ToolSpec, ToolTraits

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from tether.guards.policy import Policy

__all__ = ["IDEMPOTENCY_ARG", "ToolOutput", "from_langchain", "run_coroutine", "toolset_from_langchain"]

IDEMPOTENCY_ARG = "idempotency_key"
"""The argument a wrapped tool receives the run's idempotency key in, when its schema has one."""


class ToolOutput(BaseModel):
    """What a wrapped tool returned: its text, and its structured value when it has one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    """The tool's output as text (MCP text blocks joined by newlines)."""
    structured: dict[str, Any] | list[Any] | None = None
    """The structured result (MCP ``structuredContent``, or a tool's JSON return value)."""


def run_coroutine(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from synchronous code, on a loop of its own.

    The loop is created and closed here (``asyncio.run``); when the calling thread already
    runs a loop, the coroutine runs on a fresh loop in a short-lived thread instead.
    """

    async def main() -> Any:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="tether-async-tool", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _langchain() -> None:
    try:
        import langchain_core.tools  # noqa: F401
    except ImportError:  # pragma: no cover - langchain-core is a core dependency today
        raise MissingExtra(extra="langchain", feature="tether.tools.adapters") from None


def from_langchain(tool: BaseTool, policy: Policy, *, schema_version: str = "1") -> ToolSpec[Any, ToolOutput]:
    """A ``ToolSpec`` for a LangChain tool; effect and traits come from ``policy``.

    Raises ``PolicyFileError`` naming ``tools.<t>.effect`` or ``tools.<t>.traits.<key>`` when
    an allowed tool states no effect, or a trait names an argument the tool does not have.
    """
    _langchain()
    name = tool.name
    args_model, has_key = _args_model(tool)
    effect, traits = _contract(name, policy, args_model)
    call = _caller(tool, has_key)

    def fn(args: BaseModel, ctx: ToolContext[Any]) -> ToolOutput:
        data = args.model_dump(mode="json", exclude_unset=True)
        if has_key:
            data[IDEMPOTENCY_ARG] = ctx.idempotency_key
        return call(data, ctx.tool_call_id or uuid.uuid4().hex)

    return ToolSpec(
        name=name, description=" ".join((tool.description or name).split()), args_model=args_model,
        result_model=ToolOutput, fn=fn, effect=effect, traits=traits, schema_version=schema_version,
        idempotent=effect == "read" or has_key,
    )


def toolset_from_langchain(tools: Iterable[BaseTool], policy: Policy) -> Toolset:
    """A ``Toolset`` of wrapped LangChain tools (see ``from_langchain``)."""
    return Toolset(tools=[from_langchain(t, policy) for t in tools])


# ---------------------------------------------------------------- the contract, from the policy


def _contract(name: str, policy: Policy, args_model: type[BaseModel]) -> tuple[Literal["read", "write"], ToolTraits]:
    rule = policy.tools.get(name)
    if rule is None:  # unlisted: every call is denied; described conservatively
        return "write", ToolTraits()
    at = f"tools.{name}"
    problems: list[PolicyProblem] = []
    if rule.effect is None and rule.allowed:
        problems.append(PolicyProblem(key=f"{at}.effect", reason=(
            f"'{name}' is a wrapped tool: say what a call does with effect: read or effect: write.")))
    declared = rule.traits.model_dump() if rule.traits is not None else {}
    args = list(args_model.model_fields)
    for key in TRAIT_KEYS:
        arg = declared.get(key)
        if arg is not None and arg not in args:
            problems.append(PolicyProblem(key=f"{at}.traits.{key}", reason=(
                f"'{name}' has no argument {arg!r}; its arguments: {', '.join(args) or '(none)'}.")))
    if problems:
        raise PolicyFileError(path=policy.source, problems=problems)
    return rule.effect or "write", ToolTraits(**{k: v for k, v in declared.items() if v is not None})


# ---------------------------------------------------------------- arguments


def _args_model(tool: BaseTool) -> tuple[type[BaseModel], bool]:
    """The model-visible arguments (without ``idempotency_key``), and whether the tool takes a key."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    schema = tool.tool_call_schema
    model_name = "".join(p.capitalize() for p in tool.name.replace("-", "_").split("_")) + "Args"
    config = ConfigDict(extra="forbid", frozen=True)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        fields = dict(schema.model_fields)
        has_key = fields.pop(IDEMPOTENCY_ARG, None) is not None
        defs: dict[str, Any] = {n: (f.annotation, f) for n, f in fields.items()}
        return create_model(model_name, __config__=config, **defs), has_key
    params = convert_to_openai_tool(tool)["function"].get("parameters", {})
    return json_schema_model(model_name, params, drop=(IDEMPOTENCY_ARG,))


_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}
_CONSTRAINTS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
                "minLength": "min_length", "maxLength": "max_length", "pattern": "pattern",
                "minItems": "min_length", "maxItems": "max_length"}


def json_schema_model(name: str, schema: dict[str, Any], *, drop: Sequence[str] = ()) -> tuple[type[BaseModel], bool]:
    """A pydantic model for a JSON object schema; unknown keywords are left to the tool to check.

    Returns the model and whether one of the ``drop`` properties was present (and removed).
    """
    props = dict(schema.get("properties") or {})
    dropped = any(props.pop(d, None) is not None for d in drop)
    required = set(schema.get("required") or ())
    defs: dict[str, Any] = {}
    for prop, sub in props.items():
        annotation = _annotation(sub if isinstance(sub, dict) else {})
        kwargs = {v: sub[k] for k, v in _CONSTRAINTS.items() if isinstance(sub, dict) and k in sub}
        description = sub.get("description") if isinstance(sub, dict) else None
        if prop in required:
            defs[prop] = (annotation, Field(..., description=description, **kwargs))
        else:
            default = sub.get("default") if isinstance(sub, dict) else None
            defs[prop] = (annotation | None, Field(default=default, description=description, **kwargs))
    config = ConfigDict(extra="forbid", frozen=True)
    return create_model(name, __config__=config, **defs), dropped


def _annotation(sub: dict[str, Any]) -> Any:
    if sub.get("enum"):
        return Literal[tuple(sub["enum"])]
    if "const" in sub:
        return Literal[sub["const"]]
    options = sub.get("anyOf") or sub.get("oneOf")
    if isinstance(options, list) and options:
        kinds = [_annotation(o) for o in options if isinstance(o, dict)]
        out = kinds[0]
        for k in kinds[1:]:
            out = out | k
        return out
    kind = sub.get("type")
    if isinstance(kind, list):
        return _annotation({**sub, "type": None, "anyOf": [{"type": k} for k in kind]})
    if kind == "array":
        items = sub.get("items")
        return list[_annotation(items) if isinstance(items, dict) else Any]  # type: ignore[misc]
    if kind == "object":
        return dict[str, Any]
    return _TYPES.get(kind, Any) if isinstance(kind, str) else Any


# ---------------------------------------------------------------- calling


def _caller(tool: BaseTool, has_key: bool) -> Callable[[dict[str, Any], str], ToolOutput]:
    from langchain_core.tools import StructuredTool

    async_only = isinstance(tool, StructuredTool) and tool.func is None and tool.coroutine is not None

    def call(data: dict[str, Any], call_id: str) -> ToolOutput:
        from langchain_core.messages import ToolMessage
        from langchain_core.tools import ToolException

        request = {"type": "tool_call", "name": tool.name, "args": data, "id": call_id}
        try:
            reply = run_coroutine(lambda: tool.ainvoke(request)) if async_only else tool.invoke(request)
        except ToolException as exc:
            raise ToolError(code="tool_error", message=f"{tool.name}: {str(exc)[:500]}") from None
        if isinstance(reply, ToolMessage):
            out = _output(reply.content, reply.artifact)
            if reply.status == "error":
                raise ToolError(code="tool_error", message=f"{tool.name}: {out.content[:500]}")
            return out
        return _output(reply, None)

    return call


def _output(content: Any, artifact: Any) -> ToolOutput:
    structured = artifact.get("structured_content") if isinstance(artifact, dict) else None
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "\n".join(
            b if isinstance(b, str) else str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content
        )
    elif isinstance(content, dict | BaseModel):
        data = content.model_dump(mode="json") if isinstance(content, BaseModel) else content
        text, structured = json.dumps(data, default=str, sort_keys=True), structured or data
    else:
        text = "" if content is None else str(content)
    if structured is None and text[:1] in ("{", "["):
        try:
            structured = json.loads(text)
        except ValueError:
            structured = None
    if structured is not None and not isinstance(structured, dict | list):
        structured = None
    return ToolOutput(content=text, structured=structured)
