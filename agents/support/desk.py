"""The governed support desk, written only with tether's public names.

``WORKFLOW`` is its ``WorkflowSpec`` (installed under the entry point name ``support``);
``support_workflow(...)`` builds the ``Workflow``; ``SupportDesk`` is a thin ``Session`` over
``$TETHER_HOME`` with the desk's vocabulary (``customer_id``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from tether import (
    Approval,
    BuildContext,
    ConfigError,
    EscalationAction,
    EvidenceSearch,
    Home,
    KnowledgeStore,
    Ledger,
    ModelConfig,
    Policy,
    Route,
    RunResult,
    RuntimeLimits,
    SecretResolver,
    Session,
    Workflow,
    WorkflowSpec,
    load_chat_model,
    load_prompt,
    with_routing,
)
from tether.agents.support.corpus import support_corpus
from tether.agents.support.demo import SCENARIOS
from tether.agents.support.models import REASONING_ID, ROUTER_ID, register_offline_models
from tether.agents.support.tools import SupportResources, build_support_tools
from tether.agents.support.world import connect_world

__all__ = [
    "POLICY_PATH",
    "SUPPORT_ROUTES",
    "WORKFLOW",
    "Retrieval",
    "RunResult",
    "SupportDesk",
    "open_knowledge_base",
    "support_workflow",
    "world_path",
]

_HERE = Path(__file__).parent
POLICY_PATH = _HERE / "agent-policy.yaml"
ROUTING_EXAMPLES = _HERE / "routing-examples.yaml"
KB_DIR = _HERE / "kb"
PROMPT = load_prompt(_HERE / "prompts" / "system.md")
PROMPT_VERSION = PROMPT.version
SYSTEM_PROMPT = PROMPT.text
SUPPORT_ROUTES: tuple[Route, ...] = (
    Route(name="refund", description="the customer wants money back for an order",
          tools=("lookup_customer", "lookup_order", "search_policy", "issue_refund", "handoff_to_human")),
    Route(name="account_update", description="change the customer's contact details",
          tools=("lookup_customer", "update_crm_record", "handoff_to_human")),
    Route(name="order_history", description="questions about the customer's own orders",
          tools=("lookup_order", "run_sql_query", "handoff_to_human")),
    Route(name="policy_question", description="questions about shop policies (refunds, shipping, warranty)",
          tools=("search_policy", "handoff_to_human")),
    Route(name="inbox", description="the customer's mail, tickets and account: read them and do what "
          "the customer asks", tools=("read_messages", "get_ticket", "lookup_customer", "lookup_order",
                                      "search_policy", "run_sql_query", "issue_refund", "update_crm_record",
                                      "send_email", "handoff_to_human")),
    Route(name="other", description="anything else", tools=("search_policy", "handoff_to_human")),
)
CLOSINGS = {
    EscalationAction.HANDOFF_TO_HUMAN: "I've handed this to a colleague who will follow up.",
    EscalationAction.HALT: "I had to stop here.",
    EscalationAction.ASK_USER: "I need more information from you to continue.",
}


def world_path(home: Home) -> Path:
    """The desk's business database copy inside the data directory."""
    return home.root / "world" / "support.sqlite"


def support_workflow(
    *,
    home: Home,
    ledger: Ledger,
    policy: Policy | None = None,
    models: ModelConfig | None = None,
    world: Path | None = None,
    retrieval: Retrieval | None = None,
) -> Workflow:
    """The support desk as a ``Workflow``. Compile it with any LangGraph checkpointer.

    Rate-limit and circuit-breaker state lives at ``home.limits_url`` (``limits.sqlite`` by default); call
    ``Workflow.close()`` when done (``Session`` does).
    """
    register_offline_models()
    models = models or ModelConfig()
    policy = policy or Policy.from_yaml(POLICY_PATH)
    router, reasoning = models.router or ROUTER_ID, models.reasoning or REASONING_ID
    kb = open_knowledge_base(retrieval or _retrieval_from_env(), home)
    return with_routing(Workflow(
        name="support",
        description="Customer support desk: refunds, contact updates, order history, policy answers",
        policy=policy,
        tools=build_support_tools(),
        routes=SUPPORT_ROUTES,
        router_model=load_chat_model(router, base_url=models.base_url),
        router_model_id=router,
        model=load_chat_model(reasoning, base_url=models.base_url),
        model_id=reasoning,
        ledger=ledger,
        resources=SupportResources(db=connect_world(world or world_path(home)), kb=kb),
        requires_subject=True,
        closings=CLOSINGS,
        system_prompt=SYSTEM_PROMPT,
        prompt_version=PROMPT_VERSION,
        prices=models.prices,
        limits=RuntimeLimits.open(policy, home.limits_url),
        secrets=SecretResolver(),
    ), models, examples=ROUTING_EXAMPLES)


def _build(ctx: BuildContext) -> Workflow:
    return support_workflow(home=ctx.home, ledger=ctx.ledger, policy=ctx.policy, models=ctx.models)


WORKFLOW = WorkflowSpec(
    name="support",
    description="Customer support desk: refunds, contact updates, order history, policy answers",
    build=_build,
    policy_path=POLICY_PATH,
    scenarios=SCENARIOS,
    corpus=support_corpus,
    reasoning_model=REASONING_ID,
    suite=_HERE / "suite.yaml",
)


Retrieval = Literal["bm25", "vector", "hybrid"]


def _retrieval_from_env() -> Retrieval:
    value = os.environ.get("TETHER_RETRIEVAL", "bm25")
    if value not in ("bm25", "vector", "hybrid"):
        raise ConfigError(setting="TETHER_RETRIEVAL", reason=f"{value!r}: use bm25, vector or hybrid")
    return value  # type: ignore[return-value]


def open_knowledge_base(kind: Retrieval, home: Home) -> EvidenceSearch:
    """The policy KB: the shipped ``kb/`` files in the knowledge base ``$TETHER_HOME/kb/support/``,
    ingested on first use and brought up to date on every open (only changed files are re-read).
    ``vector`` and ``hybrid`` need the ``embeddings`` extra; without it the KB serves BM25."""
    return KnowledgeStore.open(home, "support", source=KB_DIR, retrieval=kind)


class SupportDesk(Session):
    """A ``Session`` of the support desk over ``$TETHER_HOME``, speaking of customers."""

    def __init__(
        self,
        *,
        home: Home | None = None,
        policy: Policy | None = None,
        models: ModelConfig | None = None,
        principal: str | None = None,
        roles: tuple[str, ...] = (),
    ) -> None:
        """``principal`` and ``roles`` identify the agent to the policy (never the model)."""
        self.home = (home or Home.from_env()).ensure()
        opened = Session.open(WORKFLOW, home=self.home, policy=policy, models=models,
                              principal=principal, roles=roles)
        self.__dict__.update(opened.__dict__)

    def run(self, text: str, *, thread_id: str, subject: object = None, customer_id: str | None = None) -> RunResult:  # type: ignore[override]
        """Start a request for ``customer_id`` on a thread."""
        return super().run(text, thread_id=thread_id, subject=customer_id or subject)  # type: ignore[arg-type]

    def record(self, approval_id: str, decision: object) -> Approval:
        """Validate and record a decision without resuming (``resume`` applies it)."""
        super().decide(approval_id, decision, resume=False)  # type: ignore[arg-type]
        return self.ledger.approval(approval_id)
