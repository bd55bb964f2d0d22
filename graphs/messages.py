"""Small helpers shared by the workflow's nodes: tool replies, decisions, action ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import ToolMessage
from pydantic import TypeAdapter

from tether.checkpoints.ledger import ApprovalStatus
from tether.graphs.state import Approve, Edit, HumanDecision, Reject, checkpoint_safe

__all__ = [
    "DECISION_SHAPES",
    "DECISION_STATUS",
    "action_id",
    "checkpoint_safe",
    "dumps",
    "jsonable",
    "parse_decision",
    "route_tool",
    "tool_reply",
]

_DECISION: TypeAdapter[Approve | Reject | Edit] = TypeAdapter(HumanDecision)

DECISION_STATUS: dict[str, ApprovalStatus] = {"approve": "approved", "reject": "rejected", "edit": "edited"}
"""Approval status recorded for each kind of human decision."""

def route_tool(routes: Mapping[str, str]) -> dict[str, Any]:
    """The router's one tool: ``route`` with the route names as an enum, described one by one."""
    described = "; ".join(f"{name}: {desc}" for name, desc in routes.items())
    return {
        "type": "function",
        "function": {
            "name": "route",
            "description": f"Pick the route for the user's request. Routes: {described}",
            "parameters": {
                "type": "object",
                "properties": {"route": {"type": "string", "enum": list(routes)}},
                "required": ["route"],
            },
        },
    }


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def jsonable(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(dict(raw), default=str))
    return out


def tool_reply(call_id: str, name: str, payload: Mapping[str, Any]) -> ToolMessage:
    """The message the model sees for one of its tool calls."""
    status = "success" if payload.get("status") == "ok" else "error"
    return ToolMessage(content=dumps(payload), tool_call_id=call_id, name=name, status=status)


def action_id(message_id: str | None, index: int, tool_call_id: str) -> str:
    """A per-thread unique id for one proposed call.

    Providers do not promise unique tool-call ids across turns (some restart at ``call_0``),
    so idempotency keys and approvals are keyed by the proposing message, the call's position
    in it and its id: stable across resumes (the message id is checkpointed), never shared.
    """
    raw = f"{message_id}\0{index}\0{tool_call_id}"
    return "act-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


DECISION_SHAPES = (
    '{"kind": "approve", "approver": "NAME"}, '
    '{"kind": "reject", "approver": "NAME", "reason": "WHY"} or '
    '{"kind": "edit", "approver": "NAME", "args": {...}}'
)


def parse_decision(raw: object, *, approval_id: str = "?") -> Approve | Reject | Edit:
    """Validate a resume payload (a decision object or its JSON form).

    Raises ``InvalidDecision`` naming the accepted shapes; nothing is ever guessed from it.
    """
    from pydantic import ValidationError

    from tether.errors import InvalidDecision

    try:
        return _DECISION.validate_python(raw.model_dump() if hasattr(raw, "model_dump") else raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '<payload>'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidDecision(
            payload=repr(raw)[:200], reason=problems, accepted=DECISION_SHAPES, approval_id=approval_id
        ) from None
