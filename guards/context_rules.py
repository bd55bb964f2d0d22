"""Run-context rules (``tools.<t>.context``) and value provenance (``args.<a>.from``).

Pure functions of the ``ActionRequest`` (its arguments, records and ``RunContext``) and the
parsed rules; each violated rule becomes one ``RuleMatch`` with the rule's ``effect`` and the
id ``tools.<t>.context.<id>``. The kinds:

- ``after: TOOL`` (+ ``same: {THEIR_ARG: MY_ARG}``): TOOL succeeded earlier in the run, with
  ``args[THEIR_ARG]`` equal to this call's ``args[MY_ARG]`` when ``same`` is given;
- ``read: TOOL``, ``match: {RESULT_FIELD: MY_ARG}`` (+ ``field: F``, ``in: [...]``): a result
  of an earlier successful TOOL call describes the record this call touches (its dotted
  RESULT_FIELD equals ``args[MY_ARG]``); with ``field``, the matched record's F is one of
  ``in``. Results that are lists, or paths that share a list prefix (``items.id`` and
  ``items.status``), are matched record by record; the latest read wins;
- ``max_per_record: N``: at most N successful calls of this tool per record
  (``ActionRequest.records`` against ``PriorAction.records``) in the run; calls admitted
  earlier in the same model message count too. A call without records is not counted.

Provenance sources for ``from:``: ``request`` (the value appears in the user's request,
case-insensitively and as a whole token: ``P-1`` does not come from ``P-12``), ``subject``
(the subject's id or any value in its attributes) and ``TOOL.FIELD`` (a value at dotted FIELD
in the result of an earlier successful TOOL call). Equality is exact (``True`` never equals
``1``); arguments are compared as JSON. Reasons name the sources, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from tether.guards.context import RunContext, field_values
from tether.guards.decisions import RuleMatch
from tether.guards.policy_sections import ContextRule

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest

__all__ = ["SOURCES", "comes_from", "context_matches", "describe_sources", "in_request", "same_value"]

SOURCES = ("request", "subject")
"""The named ``from:`` sources; any other source is ``TOOL.FIELD``."""


# ---------------------------------------------------------------- values and provenance


def _json(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except Exception:  # not JSON-able: compared as is
        return value


def same_value(a: Any, b: Any) -> bool:
    """JSON equality where booleans only equal booleans (``True != 1``)."""
    a, b = _json(a), _json(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, float) else None


def in_request(value: Any, request: str) -> bool:
    """``value`` appears in ``request`` as a whole token, case-insensitively."""
    text = _text(_json(value))
    if text is None or not text.strip():
        return False
    needle = re.escape(text.casefold())
    before = r"(?<!\w)" if re.match(r"\w", text) else ""
    after = r"(?!\w)" if re.search(r"\w$", text) else ""
    return re.search(before + needle + after, request.casefold()) is not None


def _leaves(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for v in data.values():
            yield from _leaves(v)
    elif isinstance(data, list):
        for v in data:
            yield from _leaves(v)
    else:
        yield data


def _from_source(value: Any, source: str, ctx: RunContext) -> bool:
    if source == "request":
        return in_request(value, ctx.request)
    if source == "subject":
        if ctx.subject is None:
            return False
        known = [ctx.subject.id, *_leaves(ctx.subject.attributes)]
        return any(same_value(value, k) for k in known)
    tool, dot, field = source.partition(".")
    if not dot or not tool or not field:
        return False  # not a valid source (the loader refuses it): admits nothing
    return any(same_value(value, v) for v in ctx.values(tool, field))


def comes_from(value: Any, sources: Iterable[str], ctx: RunContext) -> bool:
    """True when ``value`` comes from at least one of ``sources`` (see the module doc)."""
    return any(_from_source(value, s, ctx) for s in sources)


def describe_sources(sources: Sequence[str]) -> str:
    words = {"request": "the user's request", "subject": "the run's subject"}
    named = [words.get(s, f"a {s.partition('.')[0]} result ({s})") for s in sources]
    return named[0] if len(named) == 1 else "any of: " + "; ".join(named)


# ---------------------------------------------------------------- context rules


def context_matches(tool: str, rules: Sequence[ContextRule], action: ActionRequest) -> list[RuleMatch]:
    """The violated context rules of ``tool`` for ``action``, in file order."""
    out: list[RuleMatch] = []
    for rule in rules:
        rid = f"tools.{tool}.context.{rule.id}"
        if len(rule.kinds) != 1:  # the loader refuses this; fail closed if built by hand
            reason = f"context rule '{rule.id}' needs exactly one of after, read, max_per_record"
            out.append(RuleMatch(rule_id=rid, effect="deny", reason=reason))
            continue
        if rule.after is not None:
            why = _after(rule.after, rule.same, action)
        elif rule.read is not None:
            why = _read(rule, rule.read, action)
        else:
            why = _per_record(tool, rule.max_per_record or 0, action)
        if why is not None:
            out.append(RuleMatch(rule_id=rid, effect=rule.effect, reason=why))
    return out


def _missing(args: dict[str, Any], names: Iterable[str]) -> list[str]:
    return sorted({n for n in names if args.get(n) is None})


def _after(after: str, same: dict[str, str], action: ActionRequest) -> str | None:
    prior = action.context.succeeded(after)
    if not prior:
        return f"'{after}' has not succeeded earlier in this run"
    if not same:
        return None
    missing = _missing(action.args, same.values())
    if missing:
        return f"the call does not give {', '.join(missing)}, which must match an earlier '{after}' call"
    for p in prior:
        if all(same_value(p.args.get(theirs), action.args[mine]) for theirs, mine in same.items()):
            return None
    pairs = ", ".join(f"{theirs} equal to this call's {mine}" for theirs, mine in same.items())
    return f"no earlier successful '{after}' call in this run had {pairs}"


def _split(paths: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The longest dotted prefix every path strictly extends, and each path relative to it."""
    parts = [p.split(".") for p in paths]
    common: list[str] = []
    for segs in zip(*(p[:-1] for p in parts), strict=False):  # stops at the shortest
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    n = len(common)
    return ".".join(common), {p: ".".join(s[n:]) for p, s in zip(paths, parts, strict=True)}


def _find_record(rule: ContextRule, tool: str, action: ActionRequest) -> tuple[bool, Any, dict[str, str]]:
    """The latest record read by ``tool`` in this run whose ``match`` fields equal this call's."""
    prefix, rel = _split([*rule.match, *([rule.field] if rule.field else [])])
    for p in reversed(action.context.succeeded(tool)):
        for rec in field_values(p.result, prefix):
            if all(
                any(same_value(v, action.args[mine]) for v in field_values(rec, rel[theirs]))
                for theirs, mine in rule.match.items()
            ):
                return True, rec, rel
    return False, None, rel


def _read(rule: ContextRule, tool: str, action: ActionRequest) -> str | None:
    if not rule.match:
        return f"context rule '{rule.id}' names no match field; denied to be safe"
    missing = _missing(action.args, rule.match.values())
    if missing:
        return f"the call does not give {', '.join(missing)}, needed to find the record '{tool}' read"
    found, record, rel = _find_record(rule, tool, action)
    if not found:
        keys = ", ".join(f"{theirs} equal to this call's {mine}" for theirs, mine in rule.match.items())
        return f"the record this call touches was not read in this run (no '{tool}' result with {keys})"
    if rule.field is None:
        return None
    got = field_values(record, rel[rule.field])
    if not got:
        return f"'{tool}' returned no {rule.field} for the record this call touches"
    allowed = rule.in_
    if allowed is None:
        return None
    bad = [g for g in got if not any(same_value(g, a) for a in allowed)]
    if bad:
        return (
            f"'{tool}' reported {rule.field} {bad[0]!r} for the record this call touches; "
            f"allowed: {', '.join(repr(a) for a in allowed)}"
        )
    return None


def _per_record(tool: str, limit: int, action: ActionRequest) -> str | None:
    for record in dict.fromkeys(action.records):
        done = sum(
            1
            for p in action.context.actions
            if p.tool == tool and (p.ok or p.status == "admitted") and record in p.records
        )
        if done >= limit:
            return (
                f"'{tool}' already succeeded {done} time(s) for record {record} in this run; "
                f"at most {limit} allowed"
            )
    return None
