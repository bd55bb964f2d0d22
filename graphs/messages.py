"""Small helpers shared by the workflow's nodes: tool replies, decisions, action ids."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import ToolMessage
from pydantic import TypeAdapter

from tether.checkpoints.ledger import ApprovalStatus
from tether.graphs.state import Approve, Edit, HumanDecision, Reject, checkpoint_safe

__all__ = [
    "DECISION_STATUS",
    "ROUTE_TOOL",
    "action_id",
    "checkpoint_safe",
    "crash_point",
    "dumps",
    "jsonable",
    "parse_decision",
    "tool_reply",
]

_DECISION: TypeAdapter[Approve | Reject | Edit] = TypeAdapter(HumanDecision)

DECISION_STATUS: dict[str, ApprovalStatus] = {"approve": "approved", "reject": "rejected", "edit": "edited"}
"""Approval status recorded for each kind of human decision."""

ROUTE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "route",
        "description": "Pick the route for the user's request.",
        "parameters": {"type": "object", "properties": {"route": {"type": "string"}}, "required": ["route"]},
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


def parse_decision(raw: object) -> Approve | Reject | Edit:
    """Validate a resume payload (a decision object or its JSON form)."""
    return _DECISION.validate_python(raw.model_dump() if hasattr(raw, "model_dump") else raw)


def crash_point(name: str, tool: str = "") -> None:
    """Kill the process here when ``TETHER_CRASH_AT`` names this point and, if set,
    ``TETHER_CRASH_TOOL`` names the tool being run (crash tests only)."""
    if os.environ.get("TETHER_CRASH_AT") == name and os.environ.get("TETHER_CRASH_TOOL", tool) == tool:
        os.kill(os.getpid(), signal.SIGKILL)
