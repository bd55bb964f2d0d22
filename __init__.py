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
    "ActionRequest": "tether.guards.policy",
    "Allow": "tether.guards.decisions",
    "Approval": "tether.checkpoints.ledger",
    "ApprovalError": "tether.errors",
    "ApprovalRequest": "tether.graphs.state",
    "Approve": "tether.graphs.state",
    "Budgets": "tether.guards.budgets",
    "BuildContext": "tether.graphs.registry",
    "ConfigError": "tether.errors",
    "DecisionConflict": "tether.errors",
    "Deny": "tether.guards.decisions",
    "Edit": "tether.graphs.state",
    "Escalate": "tether.guards.decisions",
    "Escalated": "tether.graphs.state",
    "EscalationAction": "tether.guards.decisions",
    "Evidence": "tether.retrieval",
    "EvidenceSearch": "tether.retrieval",
    "HandOff": "tether.tools.base",
    "Home": "tether.config",
    "HybridKnowledgeBase": "tether.retrieval",
    "InvalidDecision": "tether.errors",
    "KeywordRouter": "tether.models",
    "KnowledgeBase": "tether.retrieval",
    "Ledger": "tether.checkpoints.ledger",
    "LedgerRow": "tether.checkpoints.ledger",
    "ModelConfig": "tether.models",
    "ModelPrice": "tether.models",
    "OfflineChatModel": "tether.models",
    "PendingApproval": "tether.graphs.session",
    "Policy": "tether.guards.policy",
    "PolicyFileError": "tether.errors",
    "PredicateRegistry": "tether.guards.predicates",
    "PriorAction": "tether.guards.context",
    "Reject": "tether.graphs.state",
    "RequireApproval": "tether.guards.decisions",
    "Resolved": "tether.graphs.state",
    "Route": "tether.graphs.base",
    "RunContext": "tether.guards.context",
    "Scenario": "tether.evals.scenarios",
    "RunResult": "tether.graphs.session",
    "RuntimeLimits": "tether.guards.ratelimit",
    "ScriptedChatModel": "tether.models",
    "SecretResolver": "tether.guards.secret_refs",
    "Session": "tether.graphs.session",
    "Subject": "tether.guards.context",
    "TetherError": "tether.errors",
    "ToolContext": "tether.tools.base",
    "ToolError": "tether.errors",
    "ToolSpec": "tether.tools.base",
    "ToolTraits": "tether.tools.base",
    "Toolset": "tether.tools.base",
    "VectorKnowledgeBase": "tether.retrieval",
    "Workflow": "tether.graphs.workflow",
    "WorkflowError": "tether.errors",
    "WorkflowSpec": "tether.graphs.registry",
    "executed": "tether.evals.scenarios",
    "find_workflow": "tether.graphs.registry",
    "proposed_rules": "tether.evals.scenarios",
    "list_workflows": "tether.graphs.registry",
    "load_chat_model": "tether.models",
    "open_checkpointer": "tether.checkpoints.checkpointer",
    "policy_predicate": "tether.guards.predicates",
    "register_model": "tether.models",
    "register_workflow": "tether.graphs.registry",
    "studio_factory": "tether.graphs.studio",
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
    from tether.checkpoints.checkpointer import open_checkpointer
    from tether.checkpoints.ledger import Approval, Ledger, LedgerRow
    from tether.config import Home
    from tether.errors import ApprovalError, ConfigError, DecisionConflict, InvalidDecision, PolicyFileError, TetherError, ToolError, WorkflowError
    from tether.evals.scenarios import Scenario, executed, proposed_rules
    from tether.graphs.base import Route
    from tether.graphs.registry import BuildContext, WorkflowSpec, find_workflow, list_workflows, register_workflow
    from tether.graphs.session import PendingApproval, RunResult, Session
    from tether.graphs.studio import studio_factory
    from tether.graphs.state import ApprovalRequest, Approve, Edit, Escalated, Reject, Resolved
    from tether.graphs.workflow import Workflow
    from tether.guards.budgets import Budgets
    from tether.guards.context import PriorAction, RunContext, Subject
    from tether.guards.decisions import Allow, Deny, Escalate, EscalationAction, RequireApproval
    from tether.guards.policy import ActionRequest, Policy
    from tether.guards.predicates import PredicateRegistry, policy_predicate
    from tether.guards.ratelimit import RuntimeLimits
    from tether.guards.secret_refs import SecretResolver
    from tether.models import KeywordRouter, ModelConfig, ModelPrice, OfflineChatModel, ScriptedChatModel, load_chat_model, register_model
    from tether.retrieval import Evidence, EvidenceSearch, HybridKnowledgeBase, KnowledgeBase, VectorKnowledgeBase
    from tether.tools.base import HandOff, ToolContext, ToolSpec, ToolTraits, Toolset, tool
