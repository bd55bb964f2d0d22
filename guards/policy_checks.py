"""Checks across sections of a policy file, run after the schema validated.

Each problem names the offending key path and line: a role granting an unlisted tool, a
principal with an unknown role, an unknown predicate, a bad regular expression, a tool rule
that loosens its risk tier's defaults, ``mode: read_only_sql`` without an ``sql`` scope, an
argument rule with an unknown ``find`` kind or ``from`` source (or a ``TOOL.FIELD`` source
naming an unlisted tool), and context rules that are malformed: duplicate ids, zero or several
kinds, keys of one kind used with another (``same`` without ``after``, ``match``/``field``/``in``
without ``read``, ``in`` without ``field``), or an ``after``/``read`` tool the policy does not
list. Checks against the tools a workflow really has are in ``tether.guards.context_checks``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable

from tether.errors import PolicyProblem
from tether.guards.context_rules import SOURCES
from tether.guards.matchers import FIND_PATTERNS
from tether.guards.policy_file import PolicyFile, ToolRuleSection
from tether.guards.policy_sections import CONTEXT_KINDS, ArgRule, ContextRule, TierSection
from tether.guards.predicates import DEFAULT_PREDICATES, PredicateRegistry

__all__ = ["cross_check"]

Lines = dict[tuple[str, ...], int]
Add = Callable[[tuple[str, ...], str], None]


def _line(lines: Lines, path: tuple[str, ...]) -> int | None:
    for i in range(len(path), 0, -1):
        if path[:i] in lines:
            return lines[path[:i]]
    return None


def _unknown(what: str, name: str, options: Iterable[str]) -> str:
    opts = sorted(options)
    close = difflib.get_close_matches(name, opts, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(opts) if opts else "(none)"
    return f"unknown {what} '{name}'.{hint} Known: {listed}."


def cross_check(
    spec: PolicyFile, lines: Lines, predicates: PredicateRegistry | None = None
) -> list[PolicyProblem]:
    registry = predicates if predicates is not None else DEFAULT_PREDICATES
    out: list[PolicyProblem] = []

    def add(path: tuple[str, ...], reason: str) -> None:
        out.append(PolicyProblem(key=".".join(path), reason=reason, line=_line(lines, path)))

    roles = spec.roles
    for pname, principal in (spec.principals or {}).items():
        for i, role in enumerate(principal.roles):
            if roles is None:
                add(
                    ("principals", pname, "roles", str(i)),
                    "roles are named but there is no 'roles:' section.",
                )
            elif role not in roles:
                add(("principals", pname, "roles", str(i)), _unknown("role", role, roles))
    for rname, role_section in (roles or {}).items():
        for i, tool in enumerate(role_section.tools):
            if tool not in spec.tools:
                add(("roles", rname, "tools", str(i)), _unknown("tool", tool, spec.tools))
    for tname, rule in spec.tools.items():
        t = ("tools", tname)
        for i, ref in enumerate(rule.predicates):
            if ref.name not in registry:
                add((*t, "predicates", str(i)), _unknown("predicate", ref.name, registry.names()))
        for field, arg in rule.args.items():
            _check_arg_rule((*t, "args", field), arg, spec, add)
        _check_context(t, rule.context, spec, add)
        if rule.mode == "read_only_sql" and rule.sql is None:
            add((*t, "mode"), "read_only_sql needs an 'sql:' scope with the tables and columns allowed.")
        if rule.sql is not None and rule.mode != "read_only_sql":
            add((*t, "sql"), "an sql scope only applies with mode: read_only_sql.")
        tier = (spec.tiers or {}).get(rule.risk) if rule.risk is not None else None
        if tier is not None and rule.risk is not None:
            for key, reason in _loosened(rule, tier):
                add(
                    (*t, key),
                    f"loosens risk tier '{rule.risk.value}': {reason} A tool rule can "
                    "tighten its tier's defaults, not loosen them.",
                )
    return out


def _loosened(rule: ToolRuleSection, tier: TierSection) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    explicit = rule.model_fields_set
    for flag in ("require_citation", "require_approval"):
        if getattr(tier, flag) and flag in explicit and not getattr(rule, flag):
            out.append((flag, f"the tier sets {flag}: true and the tool sets false."))
    for key in ("max_amount_usd", "require_approval_over_usd"):
        mine, theirs = getattr(rule, key), getattr(tier, key)
        if mine is not None and theirs is not None and mine > theirs:
            out.append((key, f"{mine:g} is above the tier's {theirs:g}."))
    return out


def _check_arg_rule(at: tuple[str, ...], arg: ArgRule, spec: PolicyFile, add: Add) -> None:
    if arg.pattern is not None:
        try:
            re.compile(arg.pattern)
        except re.error as exc:
            add((*at, "pattern"), f"not a valid regular expression: {exc}.")
    if arg.find is not None:
        if arg.find not in FIND_PATTERNS:
            add((*at, "find"), _unknown("find kind", arg.find, FIND_PATTERNS))
        if arg.min is not None or arg.max is not None:
            add((*at, "find"), "find checks text values found in the argument; min/max do not apply.")
        if arg.enum is None and arg.pattern is None and arg.from_ is None:
            add((*at, "find"), "find needs enum, pattern or from to check the values it finds.")
    for i, source in enumerate(arg.from_ or ()):
        reason = source_problem(source, spec)
        if reason is not None:
            add((*at, "from", str(i)), reason)


def source_problem(source: str, spec: PolicyFile) -> str | None:
    """Why a ``from:`` source is not ``request``, ``subject`` or ``TOOL.FIELD`` of a listed tool."""
    if source in SOURCES:
        return None
    tool, dot, field = source.partition(".")
    if not dot:
        return _unknown("from source", source, [*SOURCES, "TOOL.FIELD"])
    if not tool or not field:
        return f"from source '{source}' must be TOOL.FIELD (a tool and a dotted result field)."
    if tool not in spec.tools:
        return _unknown("tool", tool, spec.tools) + " (in from source '" + source + "')"
    return None


def _check_context(t: tuple[str, ...], rules: tuple[ContextRule, ...], spec: PolicyFile, add: Add) -> None:
    first: dict[str, int] = {}
    for i, rule in enumerate(rules):
        at = (*t, "context", str(i))
        if rule.id in first:
            add(
                (*at, "id"),
                f"duplicate context rule id '{rule.id}' (also item {first[rule.id]}); ids must be "
                "unique per tool.",
            )
        first.setdefault(rule.id, i)
        kinds = rule.kinds
        if len(kinds) != 1:
            got = ", ".join(kinds) if kinds else "none"
            add(at, f"a context rule needs exactly one of {', '.join(CONTEXT_KINDS)} (got {got}).")
        for key, kind in (("same", "after"), ("match", "read"), ("field", "read"), ("in", "read")):
            if _given(rule, key) and getattr(rule, kind) is None:
                add((*at, key), f"{key} only applies with {kind}: TOOL.")
        if rule.read is not None and not rule.match:
            add(
                (*at, "read"), "read needs match: {RESULT_FIELD: MY_ARG} to find the record the call touches."
            )
        if rule.in_ is not None and rule.field is None:
            add((*at, "in"), "in needs field: RESULT_FIELD (the field whose value it restricts).")
        if rule.field is not None and rule.in_ is None:
            add((*at, "field"), "field needs in: [allowed values].")
        if rule.in_ is not None and not rule.in_:
            add((*at, "in"), "in is empty; no value could pass. List the allowed values.")
        for key in ("after", "read"):
            tool = getattr(rule, key)
            if tool is not None and tool not in spec.tools:
                add((*at, key), _unknown("tool", tool, spec.tools))


def _given(rule: ContextRule, key: str) -> bool:
    value = rule.in_ if key == "in" else getattr(rule, key)
    return bool(value) if isinstance(value, dict) else value is not None
