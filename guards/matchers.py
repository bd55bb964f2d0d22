"""Rule matchers for the optional per-tool rules: ``args``, ``predicates`` and ``read_only_sql``.

Each returns the ``RuleMatch`` values that fired (violations only; a rule that passes adds
nothing), with the rule's own ``effect``. Rule ids: ``tools.<t>.args.<field>``,
``tools.<t>.predicates.<name>``, ``tools.<t>.sql.<sql rule>`` (the ``UnsafeSql.rule`` of
``tether.guards.sql_safety``). Context rules are in ``tether.guards.context_rules``.

An argument rule checks each element of a list value, passes a missing argument unless
``required: true``, and with ``find: KIND`` checks every value of that kind found inside the
text (``FIND_PATTERNS``; text without one passes). The patterns are deliberately simple:

- ``email``: ``local@domain.tld`` (letters, digits, ``._%+-`` before the ``@``);
- ``url``: starts with ``http://``, ``https://`` or ``www.``, runs to the next space or quote
  (trailing ``.,;:!?)]}`` dropped);
- ``iban``: two capital letters, two digits, then 8 to 31 capitals/digits, optionally in
  groups of four separated by single spaces;
- ``account_number``: a run of 8 to 18 digits that is not part of a longer word or number;
- ``phone``: an optional ``+``, then 7 to 15 digits, optionally separated by spaces, dots,
  dashes or parentheses.

Found values and values checked by ``pattern`` or ``from`` are never echoed in a reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tether.guards.context import RunContext
from tether.guards.context_rules import comes_from, describe_sources
from tether.guards.decisions import RuleMatch
from tether.guards.policy_sections import ArgRule, RuleEffect, SqlScopeSection
from tether.guards.predicates import PredicateFn
from tether.guards.sql_safety import SqlScope, UnsafeSql, check_select

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest

__all__ = ["FIND_PATTERNS", "arg_matches", "find_values", "predicate_matches", "sql_matches", "sql_scope"]

FIND_PATTERNS: Mapping[str, re.Pattern[str]] = MappingProxyType(
    {
        "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        "url": re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE),
        "iban": re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        "account_number": re.compile(r"(?<![\w.-])[0-9]{8,18}(?![\w-]|\.[0-9])"),
        "phone": re.compile(r"(?<![\w+])\+?[0-9](?:[ .()-]{0,2}[0-9]){6,14}(?![\w])"),
    }
)
"""The ``find:`` kinds and the regular expression that finds each one in text."""
_KIND_WORDS = {
    "email": "email address",
    "url": "URL",
    "iban": "IBAN",
    "account_number": "account number",
    "phone": "phone number",
}


def find_values(kind: str, text: str) -> list[str]:
    """Every value of ``kind`` (a ``FIND_PATTERNS`` key) found in ``text``, in order."""
    out = [m.group(0) for m in FIND_PATTERNS[kind].finditer(text)]
    return [v.rstrip(".,;:!?)]}") for v in out] if kind == "url" else out


def _match(rule_id: str, effect: RuleEffect, reason: str) -> RuleMatch:
    return RuleMatch(rule_id=rule_id, effect=effect, reason=reason)


def _deny(rule_id: str, reason: str) -> RuleMatch:
    return _match(rule_id, "deny", reason)


def _check_value(label: str, rule: ArgRule, value: Any, ctx: RunContext, *, echo: bool = True) -> str | None:
    """Why one value (an argument, a list element or a found value) fails ``rule``, or None."""
    if rule.enum is not None and value not in rule.enum:
        shown = f"{label}={value!r}" if echo else label
        return f"{shown} is not one of {', '.join(repr(v) for v in rule.enum)}"
    if rule.min is not None or rule.max is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{label} must be a number"
        if rule.min is not None and value < rule.min:
            return f"{label}={value:g} is below the minimum {rule.min:g}"
        if rule.max is not None and value > rule.max:
            return f"{label}={value:g} is above the maximum {rule.max:g}"
    if rule.pattern is not None:
        if not isinstance(value, str):
            return f"{label} must be text"
        if re.fullmatch(rule.pattern, value) is None:
            return f"{label} does not match the required pattern"  # value may be sensitive
    if rule.from_ is not None and not comes_from(value, rule.from_, ctx):
        return f"{label} does not come from {describe_sources(rule.from_)}"
    return None


def _check_found(label: str, rule: ArgRule, value: Any, ctx: RunContext) -> str | None:
    kind = rule.find or ""
    if kind not in FIND_PATTERNS:
        return f"the policy asks to find '{kind}' values, which is not a known kind; denied to be safe"
    if not isinstance(value, str):
        return f"{label} must be text"
    for n, found in enumerate(find_values(kind, value), 1):
        reason = _check_value(f"{_KIND_WORDS[kind]} #{n} in {label}", rule, found, ctx, echo=False)
        if reason is not None:
            return reason
    return None


def _check_arg(name: str, rule: ArgRule, value: Any, ctx: RunContext) -> str | None:
    if value is None:
        if rule.required:
            return f"argument '{name}' is required by the policy but the call does not give it"
        return None
    items = list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
    for i, item in items:
        label = f"argument '{name}'" if i is None else f"element {i} of argument '{name}'"
        if rule.find is not None:
            reason = _check_found(label, rule, item, ctx)
        else:
            reason = _check_value(label, rule, item, ctx)
        if reason is not None:
            return reason
    return None


def arg_matches(
    tool: str, rules: Mapping[str, ArgRule], action: ActionRequest, *, include_shadow: bool
) -> list[RuleMatch]:
    out: list[RuleMatch] = []
    for name, rule in rules.items():
        if rule.shadow and not include_shadow:
            continue
        reason = _check_arg(name, rule, action.args.get(name), action.context)
        if reason is not None:
            out.append(_match(f"tools.{tool}.args.{name}", rule.effect, reason))
    return out


def predicate_matches(
    tool: str, predicates: tuple[tuple[str, RuleEffect, PredicateFn], ...], action: ActionRequest
) -> list[RuleMatch]:
    """Each predicate's reason (or exception: fail closed, deny) becomes a match."""
    out: list[RuleMatch] = []
    for name, effect, fn in predicates:
        rid = f"tools.{tool}.predicates.{name}"
        try:
            reason = fn(action)
        except Exception as exc:  # fail closed: a broken predicate denies
            out.append(_deny(rid, f"predicate raised {type(exc).__name__}; denied to be safe"))
            continue
        if reason is not None:
            out.append(_match(rid, effect, str(reason)))
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
    if scope.row_filters and not action.subject_id:
        return [_deny(f"tools.{tool}.sql.row_level_security", "no end user is bound to this run")]
    try:
        q = check_select(action.sql, scope=scope, principal=action.subject_id or "")
    except UnsafeSql as exc:
        return [_deny(f"tools.{tool}.{exc.rule}", exc.reason)]
    return [
        RuleMatch(
            rule_id=f"tools.{tool}.sql",
            effect="allow",
            reason=f"read-only SELECT over {', '.join(q.tables) or 'no table'}, row filters applied",
        )
    ]
