"""The built-in per-tool rules: the article's keys, plus risk-tier defaults.

``tool_rule_result`` returns every ``RuleMatch`` that fired for one action, in file order
(``allowed``, amounts, citation gate, fields, SQL mode, row-level security, approval), and,
separately, the fallback ``tools.<t>.allowed`` allow that holds when none did (and no other
rule fires either). ``tool_rule_matches`` is the two together, as before. A limit that comes from the tool's risk
tier carries the tier's rule id (``tiers.<tier>.<key>``); the tool's own carries
``tools.<t>.<key>``. The citation gate (``guards.citations``) answers to
``tools.<t>.require_citation`` or ``tiers.<tier>.require_citation`` when the flag turns it on,
else to ``tools.<t>.citation``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.guards.citations import citation_gate, gate_failure
from tether.guards.decisions import RuleMatch
from tether.guards.policy_file import PolicyFile, ToolRuleSection

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest

__all__ = ["ToolRuleResult", "tool_rule_matches", "tool_rule_result"]

ToolRule = ToolRuleSection
_Add = Callable[[str, str, str], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Limit:
    value: float
    rule_id: str


def _limit(rule: ToolRule, spec: PolicyFile, key: str) -> _Limit | None:
    mine = getattr(rule, key)
    if mine is not None:
        return _Limit(value=mine, rule_id=f"tools.{{tool}}.{key}")
    tier = (spec.tiers or {}).get(rule.risk) if rule.risk is not None else None
    theirs = getattr(tier, key) if tier is not None else None
    return _Limit(value=theirs, rule_id=f"tiers.{rule.risk}.{key}") if theirs is not None else None


def _flag(rule: ToolRule, spec: PolicyFile, key: str) -> str | None:
    """The rule id that turns ``key`` on (the tool's own, else its tier's), or None."""
    if getattr(rule, key):
        return f"tools.{{tool}}.{key}"
    tier = (spec.tiers or {}).get(rule.risk) if rule.risk is not None else None
    return f"tiers.{rule.risk}.{key}" if tier is not None and getattr(tier, key) else None


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolRuleResult:
    """The built-in rules that fired, and the allow that applies only when nothing fired."""

    matches: tuple[RuleMatch, ...]
    fallback: RuleMatch | None
    """``tools.<t>.allowed`` (allow), set only when ``matches`` is empty."""


def tool_rule_matches(a: ActionRequest, rule: ToolRule, spec: PolicyFile) -> list[RuleMatch]:
    """The matches, or the fallback allow when none fired."""
    r = tool_rule_result(a, rule, spec)
    return list(r.matches) if r.fallback is None else [r.fallback]


def tool_rule_result(a: ActionRequest, rule: ToolRule, spec: PolicyFile) -> ToolRuleResult:
    t = f"tools.{a.tool}"
    out: list[RuleMatch] = []

    def add(key: str, effect: str, reason: str) -> None:
        rid = key.format(tool=a.tool) if key.startswith(("tools.", "tiers.")) else f"{t}.{key}"
        out.append(RuleMatch(rule_id=rid, effect=effect, reason=reason))  # type: ignore[arg-type]

    if not rule.allowed:
        add("allowed", "deny", f"'{a.tool}' is disabled by the policy (allowed: false)")
    cap, over = _limit(rule, spec, "max_amount_usd"), _limit(rule, spec, "require_approval_over_usd")
    _amount_rules(a, rule, cap, over, add)
    gate = citation_gate(a.tool, rule, spec)
    if gate is not None and (why := gate_failure(a, gate)) is not None:
        add(gate.rule_id, "deny", why)
    if rule.allowed_fields is not None:
        bad = sorted(set(a.fields or ()) - set(rule.allowed_fields))
        if bad:
            add(
                "allowed_fields",
                "deny",
                f"field(s) {', '.join(bad)} not in allowed_fields ({', '.join(rule.allowed_fields)})",
            )
        elif not a.fields:
            add("allowed_fields", "deny", "the call names no field to change")
    if rule.mode == "parameterized_only" and a.free_sql:
        add("mode", "deny", "free-form SQL is refused; pick a named query template")
    if rule.row_level_security:
        others = sorted(c for c in a.target_subject_ids if c != a.subject_id)
        if a.subject_id is None:
            add("row_level_security", "deny", "no end user is bound to this run")
        elif others:
            add(
                "row_level_security",
                "deny",
                f"the run acts for {a.subject_id}; data of {', '.join(others)} is out of scope",
            )
    if (appr := _flag(rule, spec, "require_approval")) is not None:
        add(appr, "require_approval", f"every '{a.tool}' call needs a human approval")
    return ToolRuleResult(matches=tuple(out), fallback=None) if out else ToolRuleResult(matches=(), fallback=_fallback(a, cap, over))


def _fallback(a: ActionRequest, cap: _Limit | None, over: _Limit | None) -> RuleMatch:
    if a.amount_usd is not None and (cap is not None or over is not None):
        limits = [f"max ${x.value:,.2f}" for x in (cap,) if x] + [
            f"approval over ${x.value:,.2f}" for x in (over,) if x
        ]
        why = f"${a.amount_usd:,.2f} is within the limits ({', '.join(limits)})"
    else:
        why = f"'{a.tool}' is allowed and no limit applies"
    return RuleMatch(rule_id=f"tools.{a.tool}.allowed", effect="allow", reason=why)


def _amount_rules(
    a: ActionRequest, rule: ToolRule, cap: _Limit | None, over: _Limit | None, add: _Add
) -> None:
    """Per-call amount limits (``max_amount_usd``, approval threshold) and per-run totals."""
    if cap is not None or over is not None:
        own = any(x is not None and x.rule_id.startswith("tools.") for x in (cap, over))
        source = "max_amount_usd" if own else (cap or over).rule_id  # type: ignore[union-attr]
        if a.amount_usd is None:
            add(source, "deny", "the policy limits amounts but the call states none")
        elif math.isnan(a.amount_usd):  # NaN compares false with every limit: fail closed
            add(source, "deny", "the amount is not a number")
        else:
            if cap is not None and a.amount_usd > cap.value:
                add(cap.rule_id, "deny", f"${a.amount_usd:,.2f} is above the ${cap.value:,.2f} limit")
            if over is not None and a.amount_usd > over.value:
                add(
                    over.rule_id,
                    "require_approval",
                    f"${a.amount_usd:,.2f} is over ${over.value:,.2f}: a human must approve",
                )
    if a.amount_usd is not None and not math.isnan(a.amount_usd):
        total = a.run_total_usd + a.amount_usd
        if rule.max_total_usd_per_run is not None and total > rule.max_total_usd_per_run:
            add(
                "max_total_usd_per_run",
                "deny",
                f"this run would move ${total:,.2f} through {a.tool}, above the "
                f"${rule.max_total_usd_per_run:,.2f} per-run limit",
            )
        if rule.require_approval_over_total_usd is not None and total > rule.require_approval_over_total_usd:
            add(
                "require_approval_over_total_usd",
                "require_approval",
                f"with earlier calls this run moves ${total:,.2f} through {a.tool}, over "
                f"${rule.require_approval_over_total_usd:,.2f}: a human must approve",
            )
