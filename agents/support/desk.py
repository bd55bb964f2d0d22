"""The governed support desk: policy, tools, models and graph wired together.

``support_workflow(...)`` returns the ``Workflow`` (a plain LangGraph graph underneath).
``SupportDesk`` is the session object behind the CLI and the demo: it owns the data
directory, the ledger, the business database and the checkpointer, and runs, pauses and
resumes threads across processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from tether.agents.models import ModelConfig, load_chat_model
from tether.agents.support.tools import build_support_tools
from tether.agents.support.world import connect_world
from tether.checkpoints.checkpointer import open_checkpointer
from tether.checkpoints.ledger import Approval, Ledger
from tether.config import Home
from tether.errors import ApprovalError, ConfigError, TetherError
from tether.graphs.state import ApprovalRequest, Approve, Edit, Escalated, Reject, Resolved
from tether.graphs.workflow import DECISION_STATUS, Workflow, parse_decision
from tether.guards.policy import Policy
from tether.guards.ratelimit import RuntimeLimits
from tether.guards.secret_refs import SecretResolver
from tether.retrieval import EvidenceSearch, HybridKnowledgeBase, KnowledgeBase, VectorKnowledgeBase

__all__ = [
    "POLICY_PATH",
    "SUPPORT_ROUTES",
    "Retrieval",
    "RunResult",
    "SupportDesk",
    "open_knowledge_base",
    "support_workflow",
]

_HERE = Path(__file__).parent
POLICY_PATH = _HERE / "agent-policy.yaml"
KB_DIR = _HERE / "kb"
PROMPT_VERSION = "support-v1"
SYSTEM_PROMPT = (
    "You are a customer-support agent for a coffee-equipment shop. You act for one customer only. "
    "Use tools to look things up before acting; cite policy evidence ids when issuing refunds; "
    "never change credit limits; hand off to a human when you cannot help."
)
SUPPORT_ROUTES: dict[str, tuple[str, ...]] = {
    "refund": ("lookup_customer", "lookup_order", "search_policy", "issue_refund", "handoff_to_human"),
    "account_update": ("lookup_customer", "update_crm_record", "handoff_to_human"),
    "order_history": ("lookup_order", "run_sql_query", "handoff_to_human"),
    "policy_question": ("search_policy", "handoff_to_human"),
    "other": ("search_policy", "handoff_to_human"),
}


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

    Rate-limit and circuit-breaker state lives in ``$TETHER_HOME/limits.sqlite``; call
    ``Workflow.close()`` when done (``SupportDesk`` does).
    """
    models = models or ModelConfig()
    policy = policy or Policy.from_yaml(POLICY_PATH)
    kb = open_knowledge_base(retrieval or _retrieval_from_env(), home)
    return Workflow(
        name="support",
        policy=policy,
        tools=build_support_tools(kb),
        routes=SUPPORT_ROUTES,
        router_model=load_chat_model(models.router, base_url=models.base_url),
        router_model_id=models.router,
        model=load_chat_model(models.reasoning, base_url=models.base_url),
        model_id=models.reasoning,
        ledger=ledger,
        db=connect_world(world or home.world),
        system_prompt=SYSTEM_PROMPT,
        prompt_version=PROMPT_VERSION,
        prices=models.prices,
        limits=RuntimeLimits.open(policy, home.root / "limits.sqlite"),
        secrets=SecretResolver(),
    )


Retrieval = Literal["bm25", "vector", "hybrid"]


def _retrieval_from_env() -> Retrieval:
    value = os.environ.get("TETHER_RETRIEVAL", "bm25")
    if value not in ("bm25", "vector", "hybrid"):
        raise ConfigError(setting="TETHER_RETRIEVAL", reason=f"{value!r}: use bm25, vector or hybrid")
    return value  # type: ignore[return-value]


def open_knowledge_base(kind: Retrieval, home: Home) -> EvidenceSearch:
    """The policy KB: BM25 (no extra), or LlamaIndex over an embedded Chroma index in
    ``$TETHER_HOME/index`` (``vector``, ``hybrid``; needs the ``embeddings`` extra)."""
    if kind == "bm25":
        return KnowledgeBase.from_dir(KB_DIR)
    persist = home.root / "index"
    if kind == "vector":
        return VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=persist)
    return HybridKnowledgeBase.from_dir(KB_DIR, persist_dir=persist)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """Where a thread stands after a call: finished (with an outcome) or waiting for a human."""

    thread_id: str
    outcome: Resolved | Escalated | None
    waiting_for: tuple[ApprovalRequest, ...] = ()
    route: str | None = None

    @property
    def status(self) -> str:
        if self.waiting_for:
            return "awaiting_approval"
        return self.outcome.kind if self.outcome is not None else "unfinished"


class SupportDesk:
    """A session over ``$TETHER_HOME``. Use as a context manager."""

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
        self._identity: dict[str, Any] = {}
        if principal:
            self._identity["principal"] = principal
        if roles:
            self._identity["roles"] = list(roles)
        self.home = (home or Home.from_env()).ensure()
        with ExitStack() as stack:  # on any error below, what was opened is closed again
            self.ledger = stack.enter_context(Ledger.open(self.home.ledger_url))
            self.workflow = support_workflow(
                home=self.home, ledger=self.ledger, policy=policy, models=models or ModelConfig.from_env()
            )
            stack.callback(self.workflow.close)
            self._saver = stack.enter_context(open_checkpointer(self.home.checkpoint_url))
            self.app = self.workflow.compile(checkpointer=self._saver)
            self._stack = stack.pop_all()

    def __enter__(self) -> SupportDesk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    @property
    def policy(self) -> Policy:
        return self.workflow.policy

    def _config(self, thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id, **self._identity}, "recursion_limit": 100}

    def run(self, text: str, *, customer_id: str, thread_id: str) -> RunResult:
        """Start a new request on a thread (the thread may hold earlier requests)."""
        if self.waiting(thread_id):
            raise ApprovalError(
                approval_id=self.waiting(thread_id)[0].approval_id,
                reason=f"thread {thread_id} is waiting for this approval; decide it or resume first",
            )
        start: dict[str, Any] = {"messages": [HumanMessage(content=text)], "customer_id": customer_id}
        self.app.invoke(
            start,
            self._config(thread_id),
            durability="sync",
        )
        return self.result(thread_id)

    def stream(self, text: str, *, customer_id: str, thread_id: str) -> Iterator[dict[str, Any]]:
        """Like ``run``, yielding each node's update as it happens."""
        start: dict[str, Any] = {"messages": [HumanMessage(content=text)], "customer_id": customer_id}
        yield from self.app.stream(
            start,
            self._config(thread_id),
            stream_mode="updates",
        )

    def waiting(self, thread_id: str) -> tuple[ApprovalRequest, ...]:
        snap = self.app.get_state(self._config(thread_id))
        out: list[ApprovalRequest] = []
        for task in snap.tasks:
            for intr in task.interrupts:
                if isinstance(intr.value, ApprovalRequest):
                    out.append(intr.value)
        return tuple(out)

    def result(self, thread_id: str) -> RunResult:
        snap = self.app.get_state(self._config(thread_id))
        values = snap.values or {}
        waiting = self.waiting(thread_id)
        return RunResult(
            thread_id=thread_id,
            outcome=None if waiting else values.get("outcome"),
            waiting_for=waiting,
            route=values.get("route"),
        )

    def decide(self, approval_id: str, decision: Approve | Reject | Edit) -> Approval:
        """Record a human decision (any process); ``resume`` then applies it."""
        status = DECISION_STATUS[decision.kind]
        return self.ledger.decide(
            approval_id,
            status=status,
            decided_by=decision.approver,  # type: ignore[arg-type]
            decision=decision.model_dump(mode="json"),
        )

    def resume(self, thread_id: str) -> RunResult:
        """Continue a thread: apply the recorded decision to its pending approval, or, after a
        crash, carry on from the last checkpoint. A finished thread is left as it is."""
        snap = self.app.get_state(self._config(thread_id))
        if not snap.values and not snap.tasks:
            raise TetherError(
                f"no thread {thread_id!r} in {self.home.root}; check the id (tether ledger show)"
            )
        waiting = self.waiting(thread_id)
        if not waiting:
            if snap.tasks:  # pending work (even when a crash left no checkpoint for it)
                # interrupted by a crash, not by a human: continue from the last checkpoint
                self.app.invoke(None, self._config(thread_id), durability="sync")
            return self.result(thread_id)
        req = waiting[0]
        appr = self.ledger.approval(req.approval_id)
        if appr.status == "pending" or appr.decision is None:
            raise ApprovalError(
                approval_id=req.approval_id,
                reason="still pending; run `tether approve` or `tether reject` first",
            )
        decision = parse_decision(appr.decision)
        self.app.invoke(Command(resume=decision), self._config(thread_id), durability="sync")
        return self.result(thread_id)
