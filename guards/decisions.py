"""Policy decisions: a discriminated union, never a string to match.

A decision is a normal outcome. ``Deny`` is recorded in the ledger and shown to the model;
it does not raise. Several rules may match one action; they combine deterministically:
deny wins, then escalate, then approval, then allow. Every decision lists all matched rules.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Allow",
    "Decision",
    "Deny",
    "Escalate",
    "EscalationAction",
    "RequireApproval",
    "RuleMatch",
    "combine",
]


class EscalationAction(StrEnum):
    """What happens when a budget or the tool-error retries run out."""

    HANDOFF_TO_HUMAN = "handoff_to_human"
    HALT = "halt"
    ASK_USER = "ask_user"


Effect = Literal["allow", "require_approval", "escalate", "deny"]
_RANK: dict[str, int] = {"allow": 0, "require_approval": 1, "escalate": 2, "deny": 3}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RuleMatch(_Frozen):
    """One policy rule that matched an action."""

    rule_id: str
    """Stable id of the rule, e.g. ``tools.issue_refund.max_amount_usd``."""
    effect: Effect
    """What the rule asks for."""
    reason: str
    """Why it matched, in words a reviewer understands."""


class _DecisionBase(_Frozen):
    rule_id: str
    """The rule that decided (the strongest match)."""
    reason: str
    """Human-readable reason."""
    matched: tuple[RuleMatch, ...] = ()
    """Every rule that matched, strongest first."""


class Allow(_DecisionBase):
    """The action may run now."""

    kind: Literal["allow"] = "allow"


class Deny(_DecisionBase):
    """The action must not run. The model is told why."""

    kind: Literal["deny"] = "deny"


class RequireApproval(_DecisionBase):
    """The action may run only after a human approves it."""

    kind: Literal["require_approval"] = "require_approval"


class Escalate(_DecisionBase):
    """The run stops and the policy's escalation action applies."""

    kind: Literal["escalate"] = "escalate"
    action: EscalationAction = EscalationAction.HANDOFF_TO_HUMAN


Decision = Annotated[Allow | Deny | RequireApproval | Escalate, Field(discriminator="kind")]


def combine(
    matches: list[RuleMatch],
    *,
    escalation: EscalationAction = EscalationAction.HANDOFF_TO_HUMAN,
) -> Allow | Deny | RequireApproval | Escalate:
    """Fold matched rules into one decision: deny > escalate > require_approval > allow.

    Ties keep file order, so the same policy and action always give the same decision.
    """
    if not matches:
        raise ValueError("combine() needs at least one matched rule")
    ordered = tuple(sorted(matches, key=lambda m: -_RANK[m.effect]))
    top = ordered[0]
    common = {"rule_id": top.rule_id, "reason": top.reason, "matched": ordered}
    if top.effect == "deny":
        return Deny(**common)
    if top.effect == "escalate":
        return Escalate(action=escalation, **common)
    if top.effect == "require_approval":
        return RequireApproval(**common)
    return Allow(**common)
