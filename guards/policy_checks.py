"""Checks across sections of a policy file, run after the schema validated.

Each problem names the offending key path and line: a role granting an unlisted tool, a
principal with an unknown role, an unknown predicate, a bad regular expression, a tool rule
that loosens its risk tier's defaults, ``mode: read_only_sql`` without an ``sql`` scope.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from tether.errors import PolicyProblem
from tether.guards.policy_file import PolicyFile, ToolRuleSection
from tether.guards.policy_sections import TierSection
from tether.guards.predicates import DEFAULT_PREDICATES, PredicateRegistry

__all__ = ["cross_check"]

Lines = dict[tuple[str, ...], int]


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
        for i, name in enumerate(rule.predicates):
            if name not in registry:
                add((*t, "predicates", str(i)), _unknown("predicate", name, registry.names()))
        for field, arg in rule.args.items():
            if arg.pattern is not None:
                try:
                    re.compile(arg.pattern)
                except re.error as exc:
                    add((*t, "args", field, "pattern"), f"not a valid regular expression: {exc}.")
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
