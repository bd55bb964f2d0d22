"""Rule matchers for the optional per-tool rules: ``args``, ``predicates`` and ``read_only_sql``.

Each returns the ``RuleMatch`` values that fired (violations only; a rule that passes adds
nothing). Rule ids: ``tools.<t>.args.<field>``, ``tools.<t>.predicates.<name>``,
``tools.<t>.sql.<sql rule>`` (the ``UnsafeSql.rule`` of ``tether.guards.sql_safety``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tether.guards.decisions import RuleMatch
from tether.guards.policy_sections import ArgRule, SqlScopeSection
from tether.guards.predicates import PredicateFn
from tether.guards.sql_safety import SqlScope, UnsafeSql, check_select

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest

__all__ = ["arg_matches", "predicate_matches", "sql_matches", "sql_scope"]


def _deny(rule_id: str, reason: str) -> RuleMatch:
    return RuleMatch(rule_id=rule_id, effect="deny", reason=reason)


def _check_arg(name: str, rule: ArgRule, value: Any) -> str | None:
    if value is None:
        return f"argument '{name}' is constrained by the policy but the call does not give it"
    if rule.enum is not None and value not in rule.enum:
        return f"{name}={value!r} is not one of {', '.join(repr(v) for v in rule.enum)}"
    if rule.min is not None or rule.max is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"argument '{name}' must be a number"
        if rule.min is not None and value < rule.min:
            return f"{name}={value:g} is below the minimum {rule.min:g}"
        if rule.max is not None and value > rule.max:
            return f"{name}={value:g} is above the maximum {rule.max:g}"
    if rule.pattern is not None:
        if not isinstance(value, str):
            return f"argument '{name}' must be text"
        if re.fullmatch(rule.pattern, value) is None:
            return f"argument '{name}' does not match the required pattern"  # value may be sensitive
    return None


def arg_matches(
    tool: str, rules: Mapping[str, ArgRule], args: Mapping[str, Any], *, include_shadow: bool
) -> list[RuleMatch]:
    out: list[RuleMatch] = []
    for name, rule in rules.items():
        if rule.shadow and not include_shadow:
            continue
        reason = _check_arg(name, rule, args.get(name))
        if reason is not None:
            out.append(_deny(f"tools.{tool}.args.{name}", reason))
    return out


def predicate_matches(
    tool: str, predicates: tuple[tuple[str, PredicateFn], ...], action: ActionRequest
) -> list[RuleMatch]:
    out: list[RuleMatch] = []
    for name, fn in predicates:
        try:
            reason = fn(action)
        except Exception as exc:  # fail closed: a broken predicate denies
            reason = f"predicate raised {type(exc).__name__}; denied to be safe"
        if reason is not None:
            out.append(_deny(f"tools.{tool}.predicates.{name}", str(reason)))
    return out


def sql_scope(section: SqlScopeSection) -> SqlScope:
    return SqlScope(
        tables={t: frozenset(cols) for t, cols in section.tables.items()},
        row_filters=dict(section.row_filters),
    )


def sql_matches(tool: str, scope: SqlScope, action: ActionRequest) -> list[RuleMatch]:
    """``mode: read_only_sql``: a free-form statement must pass ``check_select``."""
    if not action.free_sql:
        return []
    if not action.sql:
        return [
            _deny(f"tools.{tool}.mode", "free-form SQL was proposed but its text was not given to the policy")
        ]
    if scope.row_filters and not action.principal_customer_id:
        return [_deny(f"tools.{tool}.sql.row_level_security", "no end user is bound to this run")]
    try:
        q = check_select(action.sql, scope=scope, principal=action.principal_customer_id or "")
    except UnsafeSql as exc:
        return [_deny(f"tools.{tool}.{exc.rule}", exc.reason)]
    return [
        RuleMatch(
            rule_id=f"tools.{tool}.sql",
            effect="allow",
            reason=f"read-only SELECT over {', '.join(q.tables) or 'no table'}, row filters applied",
        )
    ]
