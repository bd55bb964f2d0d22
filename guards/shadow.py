"""Shadow evaluation: what a candidate policy would decide, beside the enforced decision.

A candidate comes from ``Policy.with_candidate(other)`` or from rules marked ``shadow: true``
in the enforced file. The candidate never changes what happens; the workflow records the
``ShadowResult`` in the ledger so a policy change can be judged on real traffic first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from tether.guards.decisions import Decision

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest, Policy

__all__ = ["ShadowResult", "shadow_evaluate"]


class ShadowResult(BaseModel):
    """The enforced decision and the candidate's, for one action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enforced: Decision
    """What was enforced."""
    candidate: Decision
    """What the candidate would have decided (not enforced)."""
    enforced_version: str
    candidate_version: str
    """The candidate policy's version; the enforced one's plus ``+shadow`` for shadow rules."""
    flipped: bool = Field(default=False)
    """The decision kind differs (e.g. allow -> deny)."""

    @property
    def changed_rules(self) -> tuple[str, ...]:
        """Rule ids matched by only one of the two decisions."""
        a = {m.rule_id for m in self.enforced.matched}
        b = {m.rule_id for m in self.candidate.matched}
        return tuple(sorted(a ^ b))


def shadow_evaluate(
    policy: Policy, action: ActionRequest, *, role: str | None = None, principal: str | None = None
) -> ShadowResult | None:
    """``None`` when the policy has nothing in shadow."""
    enforced, candidate = policy.evaluate_with_shadow(action, role=role, principal=principal)
    if candidate is None:
        return None
    version = policy.candidate.version if policy.candidate is not None else policy.version + "+shadow"
    return ShadowResult(
        enforced=enforced,
        candidate=candidate,
        enforced_version=policy.version,
        candidate_version=version,
        flipped=enforced.kind != candidate.kind,
    )
