"""Per-tool decision plans, compiled once when a ``Policy`` is loaded.

``compile_plans`` turns each tool rule into a ``ToolPlan``: the limits and their rule ids,
the citation gate, the fixed matches (``allowed: false``, ``parameterized_only``, the
approval flag, the "no limit applies" allow) as ready ``(rule_id, effect, reason)`` triples,
and which optional matchers the tool needs at all. ``ToolPlan.decide`` evaluates one action
with exactly the rules, order and reasons of ``tool_rule_result`` and the optional matchers
(see ``tether.guards.policy``); only the work is arranged differently:

- matches are gathered as triples and turned into ``RuleMatch`` values only when the
  combined decision is not already known: decisions are kept per plan, keyed by the exact
  triples in order (a bounded table; a decision is frozen, so sharing one is safe);
- role grants are resolved per (roles, principal) once and kept in a bounded table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tether.guards.citations import CitationGate, citation_gate, gate_failure
from tether.guards.context_rules import context_matches
from tether.guards.decisions import EscalationAction, RuleMatch, combine
from tether.guards.matchers import arg_matches, predicate_matches, sql_matches, sql_scope
from tether.guards.policy_file import PolicyFile, ToolRuleSection
from tether.guards.policy_sections import PrincipalSection
from tether.guards.predicates import PredicateFn
from tether.guards.provenance import provenance_matches
from tether.guards.rbac import role_matches
from tether.guards.sql_safety import SqlScope
from tether.guards.tool_rules import _flag, _Limit, _limit

if TYPE_CHECKING:
    from tether.guards.decisions import Allow, Deny, Escalate, RequireApproval
    from tether.guards.policy import ActionRequest

    AnyDecision = Allow | Deny | RequireApproval | Escalate

__all__ = ["PolicyPlan", "ToolPlan", "compile_plans"]

Triple = tuple[str, str, str]
"""``(rule_id, effect, reason)`` of one matched rule."""
TABLE_SIZE = 4096
"""Entries kept per table (decisions, role grants); a full table is emptied and refilled."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _Amounts:
    cap: _Limit | None
    over: _Limit | None
    source: str
    """Rule id of a missing or NaN amount."""
    within: str
    """The limits, in words, for the "within the limits" allow."""


@dataclass(kw_only=True, slots=True)
class ToolPlan:
    """One tool's rule, compiled. Immutable in behaviour; ``_decisions`` only remembers."""

    tool: str
    rule: ToolRuleSection
    disabled: Triple | None
    amounts: _Amounts | None
    max_total: float | None
    approval_total: float | None
    gate: CitationGate | None
    gate_rule_id: str
    allowed_fields: frozenset[str] | None
    allowed_fields_text: str
    free_sql_refused: Triple | None
    row_level_security: bool
    approval: Triple | None
    no_limit: Triple
    predicates: tuple[tuple[str, str, PredicateFn], ...]
    sql: SqlScope | None
    provenance: bool
    spec: PolicyFile
    _decisions: dict[tuple[Triple, ...], AnyDecision] = field(default_factory=dict)

    def built_in(self, a: ActionRequest) -> list[Triple]:
        """The built-in rules that fired, in ``tool_rule_result`` order."""
        t, out = self.tool, []
        if self.disabled is not None:
            out.append(self.disabled)
        amount = a.amount_usd
        nan = amount is not None and math.isnan(amount)
        if (am := self.amounts) is not None:
            if amount is None:
                out.append((am.source, "deny", "the policy limits amounts but the call states none"))
            elif nan:
                out.append((am.source, "deny", "the amount is not a number"))
            else:
                if am.cap is not None and amount > am.cap.value:
                    out.append(
                        (am.cap.rule_id, "deny", f"${amount:,.2f} is above the ${am.cap.value:,.2f} limit")
                    )
                if am.over is not None and amount > am.over.value:
                    why = f"${amount:,.2f} is over ${am.over.value:,.2f}: a human must approve"
                    out.append((am.over.rule_id, "require_approval", why))
        if amount is not None and not nan and (self.max_total is not None or self.approval_total is not None):
            total = a.run_total_usd + amount
            if self.max_total is not None and total > self.max_total:
                why = (f"this run would move ${total:,.2f} through {t}, above the "
                       f"${self.max_total:,.2f} per-run limit")  # fmt: skip
                out.append((f"tools.{t}.max_total_usd_per_run", "deny", why))
            if self.approval_total is not None and total > self.approval_total:
                why = (f"with earlier calls this run moves ${total:,.2f} through {t}, over "
                       f"${self.approval_total:,.2f}: a human must approve")  # fmt: skip
                out.append((f"tools.{t}.require_approval_over_total_usd", "require_approval", why))
        if self.gate is not None and (failed := gate_failure(a, self.gate)) is not None:
            out.append((self.gate_rule_id, "deny", failed))
        if self.allowed_fields is not None:
            bad = sorted(set(a.fields or ()) - self.allowed_fields)
            if bad:
                why = f"field(s) {', '.join(bad)} not in allowed_fields ({self.allowed_fields_text})"
                out.append((f"tools.{t}.allowed_fields", "deny", why))
            elif not a.fields:
                out.append((f"tools.{t}.allowed_fields", "deny", "the call names no field to change"))
        if self.free_sql_refused is not None and a.free_sql:
            out.append(self.free_sql_refused)
        if self.row_level_security:
            if a.subject_id is None:
                out.append((f"tools.{t}.row_level_security", "deny", "no end user is bound to this run"))
            elif others := sorted(c for c in a.target_subject_ids if c != a.subject_id):
                why = f"the run acts for {a.subject_id}; data of {', '.join(others)} is out of scope"
                out.append((f"tools.{t}.row_level_security", "deny", why))
        if self.approval is not None:
            out.append(self.approval)
        return out

    def fallback(self, a: ActionRequest) -> Triple:
        """``tools.<t>.allowed``: holds only when no other rule fired."""
        if a.amount_usd is not None and self.amounts is not None:
            why = f"${a.amount_usd:,.2f} is within the limits ({self.amounts.within})"
            return (f"tools.{self.tool}.allowed", "allow", why)
        return self.no_limit

    def extra(self, a: ActionRequest, *, include_shadow: bool) -> list[RuleMatch]:
        """The optional matchers this tool uses (args, predicates, context, provenance, SQL)."""
        t, rule, out = self.tool, self.rule, []
        if rule.args:
            out += arg_matches(t, rule.args, a, include_shadow=include_shadow)
        if self.predicates:
            out += predicate_matches(t, self.predicates, a)  # type: ignore[arg-type]
        if rule.context:
            out += context_matches(t, rule.context, a)
        if self.provenance:
            out += provenance_matches(t, rule, a, self.spec)
        if self.sql is not None:
            out += sql_matches(t, self.sql, a)
        return out

    def decision(self, triples: list[Triple]) -> AnyDecision:
        """The combined decision for these matches (remembered; same matches, same value)."""
        key = tuple(triples)
        found = self._decisions.get(key)
        if found is None:
            matches = [RuleMatch(rule_id=r, effect=e, reason=w) for r, e, w in key]  # type: ignore[arg-type]
            found = combine(matches, escalation=EscalationAction.HANDOFF_TO_HUMAN)
            if len(self._decisions) >= TABLE_SIZE:
                self._decisions.clear()
            self._decisions[key] = found
        return found


@dataclass(kw_only=True, slots=True)
class PolicyPlan:
    """Every tool's plan, role grants and principals, compiled from one policy file."""

    spec: PolicyFile
    tools: Mapping[str, ToolPlan]
    principals: Mapping[str, PrincipalSection]
    """By key, and by ``id`` where no key has that name (``rbac.resolve_principal`` order)."""
    _roles: dict[tuple[str, tuple[str, ...], str | None], tuple[Triple, ...]] = field(default_factory=dict)
    _unlisted: dict[str, AnyDecision] = field(default_factory=dict)

    def decide(
        self, a: ActionRequest, *, role: str | None, principal: str | None, include_shadow: bool
    ) -> AnyDecision:
        plan = self.tools.get(a.tool)
        if plan is None:
            return self._unlisted_tool(a.tool)
        triples = plan.built_in(a)
        extra = plan.extra(a, include_shadow=include_shadow)
        if extra:
            triples += [(m.rule_id, m.effect, m.reason) for m in extra]
        if not triples:
            triples.append(plan.fallback(a))
        if self.spec.roles is not None:
            who = principal if principal is not None else a.principal
            roles = (role,) if role is not None else a.roles or self._principal_roles(who)
            triples += self._role_triples(a.tool, roles, who)
        return plan.decision(triples)

    def _principal_roles(self, who: str | None) -> tuple[str, ...]:
        found = self.principals.get(who) if who is not None else None
        return found.roles if found is not None else ()

    def _role_triples(self, tool: str, roles: tuple[str, ...], who: str | None) -> tuple[Triple, ...]:
        key = (tool, roles, None if roles else who)
        found = self._roles.get(key)
        if found is None:
            assert self.spec.roles is not None
            ms = role_matches(tool, self.spec.roles, roles, principal=who)
            found = tuple((m.rule_id, m.effect, m.reason) for m in ms)
            if len(self._roles) >= TABLE_SIZE:
                self._roles.clear()
            self._roles[key] = found
        return found

    def _unlisted_tool(self, tool: str) -> AnyDecision:
        found = self._unlisted.get(tool)
        if found is None:
            reason = f"tool '{tool}' is not listed in the policy; unlisted tools are denied"
            found = combine([RuleMatch(rule_id="default.unlisted_tool", effect="deny", reason=reason)])
            if len(self._unlisted) >= TABLE_SIZE:
                self._unlisted.clear()
            self._unlisted[tool] = found
        return found


def _rid(key: str, tool: str) -> str:
    """The rule id ``tool_rule_result`` gives ``key``."""
    return key.format(tool=tool) if key.startswith(("tools.", "tiers.")) else f"tools.{tool}.{key}"


def _amounts(tool: str, rule: ToolRuleSection, spec: PolicyFile) -> _Amounts | None:
    cap, over = _limit(rule, spec, "max_amount_usd"), _limit(rule, spec, "require_approval_over_usd")
    if cap is None and over is None:
        return None
    cap = _Limit(value=cap.value, rule_id=_rid(cap.rule_id, tool)) if cap is not None else None
    over = _Limit(value=over.value, rule_id=_rid(over.rule_id, tool)) if over is not None else None
    own = any(x is not None and x.rule_id.startswith("tools.") for x in (cap, over))
    source = _rid("max_amount_usd", tool) if own else (cap or over).rule_id  # type: ignore[union-attr]
    within = [f"max ${x.value:,.2f}" for x in (cap,) if x] + [
        f"approval over ${x.value:,.2f}" for x in (over,) if x
    ]
    return _Amounts(cap=cap, over=over, source=source, within=", ".join(within))


def _tool_plan(
    tool: str, rule: ToolRuleSection, spec: PolicyFile, preds: tuple[tuple[str, PredicateFn], ...]
) -> ToolPlan:
    gate = citation_gate(tool, rule, spec)
    appr = _flag(rule, spec, "require_approval")
    return ToolPlan(
        tool=tool,
        rule=rule,
        disabled=None if rule.allowed else
        (f"tools.{tool}.allowed", "deny", f"'{tool}' is disabled by the policy (allowed: false)"),
        amounts=_amounts(tool, rule, spec),
        max_total=rule.max_total_usd_per_run,
        approval_total=rule.require_approval_over_total_usd,
        gate=gate,
        gate_rule_id=_rid(gate.rule_id, tool) if gate is not None else "",
        allowed_fields=frozenset(rule.allowed_fields) if rule.allowed_fields is not None else None,
        allowed_fields_text=", ".join(rule.allowed_fields or ()),
        free_sql_refused=(f"tools.{tool}.mode", "deny", "free-form SQL is refused; pick a named query template")
        if rule.mode == "parameterized_only" else None,
        row_level_security=rule.row_level_security,
        approval=None if appr is None else
        (_rid(appr, tool), "require_approval", f"every '{tool}' call needs a human approval"),
        no_limit=(f"tools.{tool}.allowed", "allow", f"'{tool}' is allowed and no limit applies"),
        predicates=tuple((ref.name, ref.effect, fn) for ref, (_, fn) in zip(rule.predicates, preds, strict=True)),
        sql=sql_scope(rule.sql) if rule.mode == "read_only_sql" and rule.sql is not None else None,
        provenance=bool(rule.provenance or rule.external),
        spec=spec,
    )  # fmt: skip


def compile_plans(
    spec: PolicyFile, predicates: Mapping[str, tuple[tuple[str, PredicateFn], ...]]
) -> PolicyPlan:
    """Compile every tool of ``spec`` (``predicates``: the resolved functions per tool)."""
    tools = {t: _tool_plan(t, r, spec, predicates.get(t, ())) for t, r in spec.tools.items()}
    principals: dict[str, PrincipalSection] = {}
    for p in (spec.principals or {}).values():
        if p.id is not None:
            principals.setdefault(p.id, p)
    principals.update(spec.principals or {})
    return PolicyPlan(spec=spec, tools=tools, principals=principals)
