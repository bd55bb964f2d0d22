"""The loaded, frozen ``Policy`` and its decision function.

``Policy.from_yaml(path)`` reads an ``agent-policy.yaml`` (see ``policy_file``), validates it
strictly and returns an immutable value versioned by the hash of its canonical content.
``Policy.evaluate(action)`` returns a ``Decision``. A tool the policy does not list is denied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict
from tether.guards.budgets import Budgets
from tether.guards.decisions import (
    Allow,
    Deny,
    Escalate,
    EscalationAction,
    RequireApproval,
    RuleMatch,
    combine,
)
from tether.guards.policy_file import (
    EscalationSection,
    PolicyFile,
    ToolRuleSection,
    parse_policy,
    read_policy_file,
)

__all__ = ["ActionRequest", "Policy", "ToolRule"]

ToolRule = ToolRuleSection
"""The rule for one tool (same shape as the file section; frozen)."""


class ActionRequest(BaseModel):
    """What the policy needs to know about one proposed tool call.

    Built by the tool's contract from the *validated* arguments and the run's context,
    never from free text: the principal comes from the run configuration.
    """

    model_config = ConfigDict(frozen=True)

    tool: str
    amount_usd: float | None = None
    """The money the call moves, when the tool declares an amount argument."""
    fields: tuple[str, ...] | None = None
    """Record fields the call writes, when the tool declares a fields argument."""
    free_sql: bool = False
    """True when the model supplied SQL text instead of a named template."""
    target_customer_ids: tuple[str, ...] = ()
    """Customers whose data the call reads or writes."""
    principal_customer_id: str | None = None
    """The end user this run acts for (from configuration)."""
    citations: tuple[str, ...] = ()
    """Evidence ids the model cited."""
    retrieved_evidence: frozenset[str] = frozenset()
    """Evidence ids actually retrieved in this run."""


class Policy:
    """An immutable, content-versioned policy. Build with ``from_yaml`` or ``from_text``."""

    __slots__ = ("_spec", "budgets", "escalation", "source", "tools", "version")

    def __init__(self, spec: PolicyFile, *, source: str) -> None:
        canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        a = spec.agent
        values: dict[str, object] = {
            "_spec": spec,
            "source": source,
            "version": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16],
            "budgets": Budgets(
                max_wall_clock_seconds=a.max_wall_clock_seconds,
                max_tool_calls=a.max_tool_calls,
                max_model_spend_usd=a.max_model_spend_usd,
            ),
            "escalation": a.escalation,
            "tools": MappingProxyType(dict(spec.tools)),
        }
        for k, v in values.items():
            object.__setattr__(self, k, v)

    _spec: PolicyFile
    source: str
    version: str
    """``sha256:`` + 16 hex digits of the canonical content; formatting does not change it."""
    budgets: Budgets
    escalation: EscalationSection
    tools: Mapping[str, ToolRule]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Policy is frozen; load a new one instead")

    def __repr__(self) -> str:
        return f"Policy(source={self.source!r}, version={self.version!r}, tools={list(self.tools)})"

    @classmethod
    def from_yaml(cls, path: str | Path) -> Policy:
        spec, _ = read_policy_file(path)
        return cls(spec, source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<string>") -> Policy:
        return cls(parse_policy(text, source=source), source=source)

    @property
    def spec(self) -> PolicyFile:
        return self._spec

    @property
    def max_tool_error_retries(self) -> int:
        return self._spec.agent.max_tool_error_retries

    def to_dict(self) -> dict[str, object]:
        return self._spec.model_dump(mode="json")

    # ------------------------------------------------------------------ decisions

    def evaluate(self, action: ActionRequest) -> Allow | Deny | RequireApproval | Escalate:
        """Decide one proposed action. Pure: same policy and action, same decision."""
        rule = self.tools.get(action.tool)
        if rule is None:
            return Deny(
                rule_id="default.unlisted_tool",
                reason=f"tool '{action.tool}' is not listed in the policy; unlisted tools are denied",
                matched=(
                    RuleMatch(
                        rule_id="default.unlisted_tool",
                        effect="deny",
                        reason=f"'{action.tool}' is not in tools:",
                    ),
                ),
            )
        return combine(_matches(action, rule), escalation=EscalationAction.HANDOFF_TO_HUMAN)


def _matches(a: ActionRequest, rule: ToolRule) -> list[RuleMatch]:
    t = f"tools.{a.tool}"
    out: list[RuleMatch] = []

    def add(key: str, effect: str, reason: str) -> None:
        out.append(RuleMatch(rule_id=f"{t}.{key}", effect=effect, reason=reason))  # type: ignore[arg-type]

    if not rule.allowed:
        add("allowed", "deny", f"'{a.tool}' is disabled by the policy (allowed: false)")
    if rule.max_amount_usd is not None or rule.require_approval_over_usd is not None:
        if a.amount_usd is None:
            add("max_amount_usd", "deny", "the policy limits amounts but the call states none")
        else:
            if rule.max_amount_usd is not None and a.amount_usd > rule.max_amount_usd:
                add(
                    "max_amount_usd",
                    "deny",
                    f"${a.amount_usd:,.2f} is above the ${rule.max_amount_usd:,.2f} limit",
                )
            if rule.require_approval_over_usd is not None and a.amount_usd > rule.require_approval_over_usd:
                add(
                    "require_approval_over_usd",
                    "require_approval",
                    f"${a.amount_usd:,.2f} is over ${rule.require_approval_over_usd:,.2f}: "
                    "a human must approve",
                )
    if rule.require_citation:
        if not a.citations:
            add("require_citation", "deny", "the call cites no evidence; cite a retrieved policy")
        else:
            unknown = sorted(set(a.citations) - a.retrieved_evidence)
            if unknown:
                add(
                    "require_citation",
                    "deny",
                    f"cited evidence was not retrieved in this run: {', '.join(unknown)}",
                )
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
        others = sorted(c for c in a.target_customer_ids if c != a.principal_customer_id)
        if a.principal_customer_id is None:
            add("row_level_security", "deny", "no end user is bound to this run")
        elif others:
            add(
                "row_level_security",
                "deny",
                f"the run acts for {a.principal_customer_id}; data of {', '.join(others)} is out of scope",
            )
    if not out:
        add("allowed", "allow", f"'{a.tool}' is allowed and no limit applies")
    return out
