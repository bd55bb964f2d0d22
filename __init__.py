"""tether: bounded-autonomy LLM agents that write to real systems.

Every proposed action passes a policy check, stays inside hard budgets, stops for a human where
the policy requires it, and leaves a row in the action ledger. Names are imported lazily so that
``import tether`` (and the command line) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Allow": "tether.guards.decisions",
    "Approve": "tether.graphs.state",
    "ApprovalRequest": "tether.graphs.state",
    "Budgets": "tether.guards.budgets",
    "Deny": "tether.guards.decisions",
    "Edit": "tether.graphs.state",
    "Escalate": "tether.guards.decisions",
    "Escalated": "tether.graphs.state",
    "Home": "tether.config",
    "Ledger": "tether.checkpoints.ledger",
    "ModelConfig": "tether.agents.models",
    "Policy": "tether.guards.policy",
    "Reject": "tether.graphs.state",
    "RequireApproval": "tether.guards.decisions",
    "Resolved": "tether.graphs.state",
    "SupportDesk": "tether.agents.support.desk",
    "ToolContext": "tether.tools.base",
    "Toolset": "tether.tools.base",
    "Workflow": "tether.graphs.workflow",
    "open_checkpointer": "tether.checkpoints.checkpointer",
    "support_workflow": "tether.agents.support.desk",
    "tool": "tether.tools.base",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from tether.agents.models import ModelConfig
    from tether.agents.support.desk import SupportDesk, support_workflow
    from tether.checkpoints.checkpointer import open_checkpointer
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home
    from tether.graphs.state import ApprovalRequest, Approve, Edit, Escalated, Reject, Resolved
    from tether.graphs.workflow import Workflow
    from tether.guards.budgets import Budgets
    from tether.guards.decisions import Allow, Deny, Escalate, RequireApproval
    from tether.guards.policy import Policy
    from tether.tools.base import ToolContext, Toolset, tool
