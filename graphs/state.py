"""Typed state of a governed workflow, and the typed values that cross an interrupt.

Everything in the state is a frozen pydantic value or a LangChain message; there is no
``dict[str, Any]`` bag. ``SERDE_ALLOWLIST`` names these types for LangGraph's checkpoint
serializer so they are restored as themselves (registered on import).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypedDict, get_origin, get_type_hints

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from tether.checkpoints.checkpointer import allow_in_checkpoints
from tether.guards.budgets import BudgetExceeded, Usage
from tether.guards.context import PriorAction, Subject
from tether.guards.decisions import Allow, Deny, Escalate, EscalationAction, RequireApproval, RuleMatch
from tether.retrieval.knowledge import Evidence
from tether.tools.base import ArgumentProblem

__all__ = [
    "SERDE_ALLOWLIST",
    "ApprovalRequest",
    "Approve",
    "CheckedView",
    "Edit",
    "Escalated",
    "HaltView",
    "HumanDecision",
    "Memory",
    "Outcome",
    "Proposal",
    "ReasonedView",
    "Reject",
    "Resolved",
    "TurnSummary",
    "WorkflowState",
    "checkpoint_safe",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------- human decisions


class Approve(_Frozen):
    """Run the action exactly as proposed."""

    kind: Literal["approve"] = "approve"
    approver: str
    comment: str = ""


class Reject(_Frozen):
    """Do not run the action; the model is told the reason."""

    kind: Literal["reject"] = "reject"
    approver: str
    reason: str


def checkpoint_safe(value: Any) -> Any:
    """Model output made storable: integers outside 64 bits become strings (which the tool's
    schema then refuses with a clear error) instead of breaking the checkpoint."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {str(k): checkpoint_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [checkpoint_safe(v) for v in value]
    return value


class Edit(_Frozen):
    """Run the action with these argument changes (merged over the proposal), after a new policy check."""

    kind: Literal["edit"] = "edit"
    approver: str
    args: dict[str, JsonValue]
    comment: str = ""
    tool: str | None = None
    """Run a different tool instead (``args`` are then its complete arguments); the new
    tool's own rules decide, and it must be offered on the run's route."""

    @field_validator("args", mode="after")
    @classmethod
    def _storable(cls, v: dict[str, JsonValue]) -> dict[str, JsonValue]:
        # an integer beyond 64 bits cannot be checkpointed; as text, the tool schema refuses it
        out: dict[str, JsonValue] = checkpoint_safe(v)
        return out


HumanDecision = Annotated[Approve | Reject | Edit, Field(discriminator="kind")]


class ApprovalRequest(_Frozen):
    """What ``interrupt()`` hands to the human: enough to decide without reading code."""

    approval_id: str
    thread_id: str
    tool_call_id: str
    tool: str
    args: dict[str, JsonValue]
    args_hash: str
    preview: str
    rule_id: str
    reason: str
    policy_version: str
    expires_at: str | None = None
    """After this instant (ISO 8601, UTC) the approval can no longer be granted."""
    refused: str | None = None
    """Why the last decision sent for it was refused (not a decision, invalid edit, conflict)."""


# ---------------------------------------------------------------- proposals and outcomes

ProposalStatus = Literal[
    "invalid",
    "denied",
    "awaiting_approval",
    "allowed",
    "approved",
    "rejected",
    "executed",
    "failed",
    "skipped",
]


class Proposal(_Frozen):
    """One tool call the model proposed, and what became of it so far."""

    action_id: str
    """Unique per thread (see ``graphs.messages.action_id``): keys idempotency and approvals."""
    tool_call_id: str
    tool: str
    args: dict[str, JsonValue]
    status: ProposalStatus
    decision: Allow | Deny | RequireApproval | Escalate | None = Field(default=None, discriminator="kind")
    problem: ArgumentProblem | None = None
    approval_id: str | None = None
    approver: str | None = None
    preview: str | None = None


class Resolved(_Frozen):
    """The run answered the user."""

    kind: Literal["resolved"] = "resolved"
    answer: str


class Escalated(_Frozen):
    """The run stopped and was handed on (to a human, halted, or back to the user)."""

    kind: Literal["escalated"] = "escalated"
    action: EscalationAction
    rule_id: str
    reason: str
    summary: str
    ticket_id: str | None = None


Outcome = Annotated[Resolved | Escalated, Field(discriminator="kind")]


class TurnSummary(_Frozen):
    """A finished run, folded out of the message history."""

    request: str
    route: str
    actions: tuple[str, ...]
    """``tool:status`` for each proposal, in order."""
    outcome: str


class Memory(_Frozen):
    """Structured memory of earlier runs on the thread; replaces their messages."""

    turns: tuple[TurnSummary, ...] = ()
    dropped_turns: int = 0
    """Turns older than the memory window, counted but no longer kept."""
    evidence_seen: tuple[str, ...] = ()

    def render(self) -> str:
        if not self.turns:
            return ""
        lines = [
            f"- asked {t.request!r} -> {t.route}; {', '.join(t.actions) or 'no actions'}; {t.outcome}"
            for t in self.turns
        ]
        head = (
            f"Earlier in this conversation ({self.dropped_turns} older turns omitted):"
            if self.dropped_turns
            else "Earlier in this conversation:"
        )
        return head + "\n" + "\n".join(lines)


class Halt(_Frozen):
    """Why the run must stop now (set by a guard, read by the escalate node)."""

    rule_id: str
    reason: str
    action: EscalationAction
    budget: BudgetExceeded | None = None


class WorkflowState(TypedDict, total=False):
    """The state LangGraph checkpoints for a governed workflow."""

    messages: Annotated[list[AnyMessage], add_messages]
    subject: Subject | None
    """The party the run acts for (set by the caller, never by the model)."""
    thread_subject: str | None
    """Id of the subject the thread was started for; a thread never changes subject."""
    run_id: str
    agent: str
    """The agent principal the run started under (recorded in every ledger row)."""
    agent_roles: tuple[str, ...]
    request: str
    """The user's text that started the current run."""
    designate: tuple[str, ...] | None
    """Input only: ids of the documents the user designates for the run being started."""
    designated: tuple[str, ...]
    """Ids of the documents the user designated for the current run (from ``designate``;
    never from the model; a run started without it designates nothing)."""
    route: str
    usage: Usage
    proposals: list[Proposal]
    evidence: list[Evidence]
    error_streak: int
    halt: Halt | None
    moved_usd: dict[str, float]
    """USD each amount-bearing tool has moved in the current run (per-run totals)."""
    history: list[PriorAction]
    """Every proposal of the current run that reached a final status, with its result."""
    outcome: Resolved | Escalated | None
    memory: Memory


class HaltView(TypedDict, total=False):
    """What the routing after ``router`` or ``act`` reads (each node names the node after it
    from these keys of the state its update leaves, not from the whole state)."""

    halt: Halt | None


class ReasonedView(HaltView, total=False):
    """What the routing after ``reasoning`` reads (the last message is enough)."""

    messages: Annotated[list[AnyMessage], add_messages]


class CheckedView(HaltView, total=False):
    """What the routing after ``policy_check`` and ``human_interrupt`` reads."""

    proposals: list[Proposal]


_REDUCED = frozenset(k for k, hint in get_type_hints(WorkflowState, include_extras=True).items()
                     if get_origin(hint) is Annotated)
"""State keys whose channel has a reducer (``messages``)."""


def unchanged_dropped(out: dict[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """A node's update without the values it hands back unchanged: writing a value equal to the
    one in the state changes nothing but costs a checkpoint write and a channel update (and, on
    PostgreSQL, a new copy of the channel). On a channel with a reducer (``messages``) a write is
    an instruction, not a value: it is kept unless it adds nothing (an empty list)."""
    for key in [k for k, v in out.items() if _unchanged(k, v, state)]:
        del out[key]
    return out


def _unchanged(key: str, value: Any, state: Mapping[str, Any]) -> bool:
    if key in _REDUCED:
        return isinstance(value, list | tuple) and not value  # add_messages of nothing changes nothing
    return key in state and _same(value, state[key])


def _same(a: Any, b: Any) -> bool:
    """``a`` is ``b``, or the same plain value of the same types all the way down (``1`` is not
    ``1.0``, ``-0.0`` is not ``0.0``, NaN is never the same); pydantic values by their fields."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is float:
        return bool(a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b)))
    if kind in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if kind is dict:
        return list(a) == list(b) and all(_same(v, b[k]) for k, v in a.items())
    if kind in (str, int, bool) or isinstance(a, BaseModel):
        return bool(a == b)
    return False


_SERDE_TYPES: tuple[type, ...] = (
    Approve,
    Reject,
    Edit,
    ApprovalRequest,
    Proposal,
    Resolved,
    Escalated,
    TurnSummary,
    Memory,
    Halt,
    Usage,
    BudgetExceeded,
    Allow,
    Deny,
    RequireApproval,
    Escalate,
    RuleMatch,
    Evidence,
    ArgumentProblem,
    EscalationAction,
    Subject,
    PriorAction,
)
SERDE_ALLOWLIST: list[tuple[str, str]] = [(c.__module__, c.__name__) for c in _SERDE_TYPES]
allow_in_checkpoints(*_SERDE_TYPES)
