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
    "LeaseLost": "tether.checkpoints.queue_postgres",
    "LimitStore": "tether.guards.ratelimit",
    "RunJob": "tether.checkpoints.queue_postgres",
    "RunQueue": "tether.checkpoints.queue_postgres",
    "call_with_fallback": "tether.graphs.fallback",
    "load_prices": "tether.models",
    "PriceFileError": "tether.models",
    "PriceTable": "tether.models",
    "RoutingDecision": "tether.graphs.routing",
    "CentroidRouter": "tether.graphs.routing",
    "with_routing": "tether.graphs.routing",
    "Suite": "tether.evals.suite",
    "SuiteFileError": "tether.evals.suite",
    "load_suite": "tether.evals.suite",
    "resolve_suite": "tether.evals.suite",
    "run_suite": "tether.evals.run",
    "SuiteResults": "tether.evals.run",
    "TaskResult": "tether.evals.metrics",
    "Metric": "tether.evals.metrics",
    "FaultProfile": "tether.evals.faults",
    "FaultSpec": "tether.evals.faults",
    "apply_faults": "tether.evals.faults",
    "RecordingChatModel": "tether.evals.cassette",
    "ReplayChatModel": "tether.evals.cassette",
    "CassetteMiss": "tether.evals.cassette",
    "load_results": "tether.evals.compare",
    "Comparison": "tether.evals.compare",
    "OpsReport": "tether.evals.ops",
    "OtelExporter": "tether.graphs.otel",
    "TraceLabels": "tether.graphs.tracing",
    "TetherMiddleware": "tether.graphs.middleware",
    "ActionRequest": "tether.guards.policy",
    "Allow": "tether.guards.decisions",
    "Approval": "tether.checkpoints.ledger",
    "ApprovalError": "tether.errors",
    "ApprovalRequest": "tether.graphs.state",
    "Approve": "tether.graphs.state",
    "Budgets": "tether.guards.budgets",
    "CitationFact": "tether.guards.citations",
    "BuildContext": "tether.graphs.registry",
    "CompromisedChatModel": "tether.models",
    "CorpusReport": "tether.evals.injection",
    "ConfigError": "tether.errors",
    "DecisionConflict": "tether.errors",
    "Deny": "tether.guards.decisions",
    "DocumentInfo": "tether.retrieval",
    "Edit": "tether.graphs.state",
    "EmbeddingRelevance": "tether.guards.relevance",
    "Escalate": "tether.guards.decisions",
    "Escalated": "tether.graphs.state",
    "EscalationAction": "tether.guards.decisions",
    "Evidence": "tether.retrieval",
    "EvidenceSearch": "tether.retrieval",
    "HandOff": "tether.tools.base",
    "Home": "tether.config",
    "HybridKnowledgeBase": "tether.retrieval",
    "IngestReport": "tether.retrieval",
    "InjectionCase": "tether.evals.injection",
    "InvalidDecision": "tether.errors",
    "KeywordRouter": "tether.models",
    "LexicalRelevance": "tether.guards.relevance",
    "KnowledgeBase": "tether.retrieval",
    "KnowledgeStore": "tether.retrieval",
    "Ledger": "tether.checkpoints.ledger",
    "LedgerRow": "tether.checkpoints.ledger",
    "Attempts": "tether.checkpoints.ledger",
    "ModelConfig": "tether.models",
    "ModelPrice": "tether.models",
    "OfflineChatModel": "tether.models",
    "Passage": "tether.retrieval",
    "PendingApproval": "tether.graphs.session",
    "Policy": "tether.guards.policy",
    "PolicyFileError": "tether.errors",
    "PredicateRegistry": "tether.guards.predicates",
    "PriorAction": "tether.guards.context",
    "ProvenanceFinding": "tether.guards.provenance",
    "Reject": "tether.graphs.state",
    "RelevanceScorer": "tether.guards.relevance",
    "RequireApproval": "tether.guards.decisions",
    "Resolved": "tether.graphs.state",
    "Route": "tether.graphs.base",
    "RunContext": "tether.guards.context",
    "Scenario": "tether.graphs.registry",
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
    "load_prompt": "tether.graphs.prompts",
    "Prompt": "tether.graphs.prompts",
    "open_checkpointer": "tether.checkpoints.checkpointer",
    "policy_predicate": "tether.guards.predicates",
    "register_model": "tether.models",
    "register_workflow": "tether.graphs.registry",
    "run_corpus": "tether.evals.injection",
    "studio_factory": "tether.graphs.studio",
    "open_database": "tether.tools.sqlite",
    "tool": "tether.tools.base",
    "write_transaction": "tether.tools.sqlite",
    "ToolOutput": "tether.tools.adapters",
    "from_langchain": "tether.tools.adapters",
    "toolset_from_langchain": "tether.tools.adapters",
    "mcp_toolset": "tether.tools.mcp",
}

__all__ = [
    "ActionRequest",
    "Allow",
    "Approval",
    "ApprovalError",
    "ApprovalRequest",
    "Approve",
    "Attempts",
    "Budgets",
    "BuildContext",
    "CassetteMiss",
    "CentroidRouter",
    "CitationFact",
    "Comparison",
    "CompromisedChatModel",
    "ConfigError",
    "CorpusReport",
    "DecisionConflict",
    "Deny",
    "DocumentInfo",
    "Edit",
    "EmbeddingRelevance",
    "Escalate",
    "Escalated",
    "EscalationAction",
    "Evidence",
    "EvidenceSearch",
    "FaultProfile",
    "FaultSpec",
    "HandOff",
    "Home",
    "HybridKnowledgeBase",
    "IngestReport",
    "InjectionCase",
    "InvalidDecision",
    "KeywordRouter",
    "KnowledgeBase",
    "KnowledgeStore",
    "LeaseLost",
    "Ledger",
    "LedgerRow",
    "LexicalRelevance",
    "LimitStore",
    "Metric",
    "ModelConfig",
    "ModelPrice",
    "OfflineChatModel",
    "OpsReport",
    "OtelExporter",
    "Passage",
    "PendingApproval",
    "Policy",
    "PolicyFileError",
    "PredicateRegistry",
    "PriceFileError",
    "PriceTable",
    "PriorAction",
    "Prompt",
    "ProvenanceFinding",
    "RecordingChatModel",
    "Reject",
    "RelevanceScorer",
    "ReplayChatModel",
    "RequireApproval",
    "Resolved",
    "Route",
    "RoutingDecision",
    "RunContext",
    "RunJob",
    "RunQueue",
    "RunResult",
    "RuntimeLimits",
    "Scenario",
    "ScriptedChatModel",
    "SecretResolver",
    "Session",
    "Subject",
    "Suite",
    "SuiteFileError",
    "SuiteResults",
    "TaskResult",
    "TetherError",
    "TetherMiddleware",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "ToolSpec",
    "ToolTraits",
    "Toolset",
    "TraceLabels",
    "VectorKnowledgeBase",
    "Workflow",
    "WorkflowError",
    "WorkflowSpec",
    "__version__",
    "apply_faults",
    "call_with_fallback",
    "executed",
    "find_workflow",
    "from_langchain",
    "list_workflows",
    "load_chat_model",
    "load_prices",
    "load_prompt",
    "load_results",
    "load_suite",
    "mcp_toolset",
    "open_checkpointer",
    "open_database",
    "policy_predicate",
    "proposed_rules",
    "register_model",
    "register_workflow",
    "resolve_suite",
    "run_corpus",
    "run_suite",
    "studio_factory",
    "tool",
    "toolset_from_langchain",
    "with_routing",
    "write_transaction",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from tether.checkpoints.checkpointer import open_checkpointer as open_checkpointer
    from tether.checkpoints.ledger import Approval as Approval
    from tether.checkpoints.ledger import Attempts as Attempts
    from tether.checkpoints.ledger import Ledger as Ledger
    from tether.checkpoints.ledger import LedgerRow as LedgerRow
    from tether.checkpoints.queue_postgres import LeaseLost as LeaseLost
    from tether.checkpoints.queue_postgres import RunJob as RunJob
    from tether.checkpoints.queue_postgres import RunQueue as RunQueue
    from tether.config import Home as Home
    from tether.errors import ApprovalError as ApprovalError
    from tether.errors import ConfigError as ConfigError
    from tether.errors import DecisionConflict as DecisionConflict
    from tether.errors import InvalidDecision as InvalidDecision
    from tether.errors import PolicyFileError as PolicyFileError
    from tether.errors import TetherError as TetherError
    from tether.errors import ToolError as ToolError
    from tether.errors import WorkflowError as WorkflowError
    from tether.evals.injection import CorpusReport as CorpusReport
    from tether.evals.injection import InjectionCase as InjectionCase
    from tether.evals.injection import run_corpus as run_corpus
    from tether.evals.scenarios import executed as executed
    from tether.evals.scenarios import proposed_rules as proposed_rules
    from tether.graphs.base import Route as Route
    from tether.graphs.fallback import call_with_fallback as call_with_fallback
    from tether.graphs.otel import OtelExporter as OtelExporter
    from tether.graphs.prompts import Prompt as Prompt
    from tether.graphs.prompts import load_prompt as load_prompt
    from tether.graphs.registry import BuildContext as BuildContext
    from tether.graphs.registry import Scenario as Scenario
    from tether.graphs.registry import WorkflowSpec as WorkflowSpec
    from tether.graphs.registry import find_workflow as find_workflow
    from tether.graphs.registry import list_workflows as list_workflows
    from tether.graphs.registry import register_workflow as register_workflow
    from tether.graphs.routing import CentroidRouter as CentroidRouter
    from tether.graphs.routing import RoutingDecision as RoutingDecision
    from tether.graphs.routing import with_routing as with_routing
    from tether.graphs.session import PendingApproval as PendingApproval
    from tether.graphs.session import RunResult as RunResult
    from tether.graphs.session import Session as Session
    from tether.graphs.state import ApprovalRequest as ApprovalRequest
    from tether.graphs.state import Approve as Approve
    from tether.graphs.state import Edit as Edit
    from tether.graphs.state import Escalated as Escalated
    from tether.graphs.state import Reject as Reject
    from tether.graphs.state import Resolved as Resolved
    from tether.graphs.studio import studio_factory as studio_factory
    from tether.graphs.tracing import TraceLabels as TraceLabels
    from tether.graphs.workflow import Workflow as Workflow
    from tether.guards.budgets import Budgets as Budgets
    from tether.guards.citations import CitationFact as CitationFact
    from tether.guards.context import PriorAction as PriorAction
    from tether.guards.context import RunContext as RunContext
    from tether.guards.context import Subject as Subject
    from tether.guards.decisions import Allow as Allow
    from tether.guards.decisions import Deny as Deny
    from tether.guards.decisions import Escalate as Escalate
    from tether.guards.decisions import EscalationAction as EscalationAction
    from tether.guards.decisions import RequireApproval as RequireApproval
    from tether.guards.policy import ActionRequest as ActionRequest
    from tether.guards.policy import Policy as Policy
    from tether.guards.predicates import PredicateRegistry as PredicateRegistry
    from tether.guards.predicates import policy_predicate as policy_predicate
    from tether.guards.provenance import ProvenanceFinding as ProvenanceFinding
    from tether.guards.ratelimit import LimitStore as LimitStore
    from tether.guards.ratelimit import RuntimeLimits as RuntimeLimits
    from tether.guards.relevance import EmbeddingRelevance as EmbeddingRelevance
    from tether.guards.relevance import LexicalRelevance as LexicalRelevance
    from tether.guards.relevance import RelevanceScorer as RelevanceScorer
    from tether.guards.secret_refs import SecretResolver as SecretResolver
    from tether.models import CompromisedChatModel as CompromisedChatModel
    from tether.models import KeywordRouter as KeywordRouter
    from tether.models import ModelConfig as ModelConfig
    from tether.models import ModelPrice as ModelPrice
    from tether.models import OfflineChatModel as OfflineChatModel
    from tether.models import PriceFileError as PriceFileError
    from tether.models import PriceTable as PriceTable
    from tether.models import ScriptedChatModel as ScriptedChatModel
    from tether.models import load_chat_model as load_chat_model
    from tether.models import load_prices as load_prices
    from tether.models import register_model as register_model
    from tether.retrieval import DocumentInfo as DocumentInfo
    from tether.retrieval import Evidence as Evidence
    from tether.retrieval import EvidenceSearch as EvidenceSearch
    from tether.retrieval import HybridKnowledgeBase as HybridKnowledgeBase
    from tether.retrieval import IngestReport as IngestReport
    from tether.retrieval import KnowledgeBase as KnowledgeBase
    from tether.retrieval import KnowledgeStore as KnowledgeStore
    from tether.retrieval import Passage as Passage
    from tether.retrieval import VectorKnowledgeBase as VectorKnowledgeBase
    from tether.tools.adapters import ToolOutput as ToolOutput
    from tether.tools.adapters import from_langchain as from_langchain
    from tether.tools.adapters import toolset_from_langchain as toolset_from_langchain
    from tether.tools.base import HandOff as HandOff
    from tether.tools.base import ToolContext as ToolContext
    from tether.tools.base import Toolset as Toolset
    from tether.tools.base import ToolSpec as ToolSpec
    from tether.tools.base import ToolTraits as ToolTraits
    from tether.tools.base import tool as tool
    from tether.tools.mcp import mcp_toolset as mcp_toolset
    from tether.tools.sqlite import open_database as open_database
    from tether.tools.sqlite import write_transaction as write_transaction
