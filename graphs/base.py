"""What every node of a governed workflow shares: configuration fields and ledger helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.graphs.fallback import Candidate, ModelFailure
from tether.graphs.routing import CentroidRouter
from tether.graphs.rows import held_rows
from tether.graphs.state import Halt, Proposal, WorkflowState
from tether.graphs.tracing import observe
from tether.guards.budgets import BudgetExceeded, Usage
from tether.guards.citations import CitationFact, citation_rows, measure_citations, stated_reason
from tether.guards.context import PriorAction, RunContext
from tether.guards.decisions import EscalationAction
from tether.guards.policy import ActionRequest, Policy
from tether.guards.ratelimit import RuntimeLimits
from tether.guards.relevance import LexicalRelevance, RelevanceScorer
from tether.guards.screen import InjectionScreen
from tether.guards.secret_refs import SecretResolver, redact_tool_data
from tether.models import ModelPrice, price_for, price_stamp
from tether.retrieval.hybrid import EvidenceSearch
from tether.tools.base import ToolContext, Toolset, ToolSpec

__all__ = ["CLOSINGS", "NodeBase", "Route"]

CLOSINGS: Mapping[EscalationAction, str] = {
    EscalationAction.HANDOFF_TO_HUMAN: "I've handed this to a colleague who will follow up.",
    EscalationAction.HALT: "I had to stop here.",
    EscalationAction.ASK_USER: "I need more information from you to continue.",
}
"""Default closing replies, one per escalation action (``Workflow.closings`` overrides them)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """A kind of request: the router picks one; it decides which tools are offered."""

    name: str
    description: str
    """What requests belong here (the router model is shown it)."""
    tools: tuple[str, ...]
    """Tools offered on this route."""


@dataclass(frozen=True, kw_only=True)
class NodeBase:
    """The workflow's configuration, shared by every node (``Workflow`` adds the nodes)."""

    name: str
    policy: Policy
    tools: Toolset
    routes: Sequence[Route]
    """The routes; with one route the router model is not called."""
    router_model: BaseChatModel
    router_model_id: str
    model: BaseChatModel
    model_id: str
    ledger: Ledger
    system_prompt: str
    description: str = ""
    origin: str | None = None
    """How another process finds this workflow again (a registered name or ``module:attribute``);
    recorded with its approvals and checkpoints. Default: ``name``."""
    resources: Any = None
    """Handed to every tool as ``ToolContext.resources`` (connections, clients, indexes)."""
    requires_subject: bool = False
    """A run without a subject stops at once (``input.required``), before any model call."""
    closings: Mapping[EscalationAction, str] = field(default_factory=lambda: dict(CLOSINGS))
    """The reply the user gets when a run is escalated, per escalation action."""
    prompt_version: str = "v1"
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Extra or overriding prices (a ``tether.PriceTable`` carries its version into the ledger)."""
    router: CentroidRouter | None = None
    """Picks the route from local embeddings, with no model call, and judges difficulty
    (``graphs.routing``). ``None``: ``router_model`` picks the route."""
    cheap_model: BaseChatModel | None = None
    """Reasons about requests the router judges easy with confidence (needs ``router``).
    ``None``: every request gets ``model``."""
    cheap_model_id: str | None = None
    fallback_model: BaseChatModel | None = None
    """Tried when a model call fails with a provider error (timeout, HTTP 5xx, 429); each
    fallback is a ``model_fallback`` ledger row. ``None``: a provider error stops the run."""
    fallback_model_id: str | None = None
    tool_timeout_seconds: float = 20.0
    max_route_retries: int = 1
    """Times the router model may correct an unknown route before the run escalates."""
    principal: str = "tether-agent"
    """The agent identity (overridable per run with ``configurable.principal``)."""
    roles: tuple[str, ...] = ()
    """The agent's roles (overridable per run with ``configurable.roles``)."""
    limits: RuntimeLimits | None = None
    """Rate limits and circuit breakers checked at act time (persisted; see ``guards.ratelimit``)."""
    secrets: SecretResolver | None = None
    """Resolves tool credentials by reference; every resolved value is redacted from the ledger."""
    relevance: RelevanceScorer | None = None
    """Scores a cited passage against the call's stated reason for the citation gate
    (default: ``LexicalRelevance``; ``EmbeddingRelevance`` catches paraphrases)."""
    screen: InjectionScreen | None = None
    """Screens untrusted tool output for instruction-like text (default: built from the
    policy's ``content`` section, with its classifier)."""
    knowledge: EvidenceSearch | None = None
    """Asked (``get``) whether an unretrieved cited id exists at all: ``foreign`` if it does,
    ``missing`` if not. Without it, the id's shape decides."""

    @property
    def ref(self) -> str:
        """The name another process opens this workflow by."""
        return self.origin or self.name

    @property
    def route_map(self) -> dict[str, Route]:
        return {r.name: r for r in self.routes}

    def offered(self, route: str | None) -> tuple[str, ...]:
        r = self.route_map.get(route or "")
        return r.tools if r is not None else ()

    @staticmethod
    def _thread(config: RunnableConfig) -> str:
        return str(config.get("configurable", {}).get("thread_id", "default"))

    def _agent(self, config: RunnableConfig, state: WorkflowState | None = None) -> tuple[str, tuple[str, ...]]:
        """The agent identity and roles: fixed for the run when it started (from the run's
        configuration, else the workflow's), so a resume in another process keeps them."""
        if state is not None and state.get("agent"):
            return state["agent"], tuple(state.get("agent_roles", ()))
        conf = config.get("configurable", {})
        roles = conf.get("roles")
        return str(conf.get("principal") or self.principal), tuple(roles) if roles else self.roles

    def _key(self, config: RunnableConfig, p: Proposal) -> str:
        """Idempotency key of a proposal: stable across resumes, unique in the thread."""
        return f"{self._thread(config)}:{p.action_id}"

    def _event(self, state: WorkflowState, config: RunnableConfig, *, durable: bool = False,
               immediate: bool = False, **fields: Any) -> None:
        """Append one ledger row; fields the policy marks sensitive are redacted first.

        Inside a node a row is held and committed with the node's (or the run's) other rows
        (``graphs.rows``), unless it is ``immediate`` (what a write did: committed at once) or
        ``durable`` (a write's intent: on disk before this returns, with the rows held)."""
        tool = fields.get("tool")
        if tool and self.policy.tools.get(tool) is not None:
            for key in ("args", "result", "error", "detail"):
                if fields.get(key) is not None:
                    fields[key] = redact_tool_data(self.policy, tool, fields[key], resolver=self.secrets)
        subject = state.get("subject")
        ev = LedgerEvent(
            thread_id=self._thread(config),
            run_id=state.get("run_id", "?"),
            principal=self._agent(config, state)[0],
            subject_id=subject.id if subject is not None else None,
            policy_version=fields.pop("policy_version", self.policy.version),
            spend_usd=state.get("usage", Usage()).spend_usd,
            **fields,
        )
        pending = held_rows()
        if pending is not None and not (durable or immediate):
            pending.hold(ev)
        elif pending:  # rows held so far go first, in one commit with this one
            pending.commit(self.ledger, ev, durable=durable)
        else:
            self.ledger.append_many([ev], durable=durable)  # the stored row is not needed here
        observe(config, ev)  # labels the traced runs that wrote it (no-op without tracing)

    def _context(
        self, state: WorkflowState, config: RunnableConfig, admitted: Sequence[Proposal] = ()
    ) -> RunContext:
        agent, roles = self._agent(config, state)
        pending = tuple(
            PriorAction(tool=p.tool, args=p.args, status="admitted", records=self._records_of(p))
            for p in admitted
        )
        return RunContext(
            request=state.get("request", ""),
            principal=agent,
            roles=roles,
            subject=state.get("subject"),
            actions=(*state.get("history", []), *pending),
            evidence=frozenset(e.evidence_id for e in state.get("evidence", [])),
            designated=tuple(state.get("designated", ())),
        )

    def _describe(
        self,
        spec: ToolSpec[Any, Any],
        parsed: Any,
        state: WorkflowState,
        config: RunnableConfig,
        admitted: Sequence[Proposal] = (),
        *,
        measured: tuple[CitationFact, ...] | None = None,
    ) -> ActionRequest:
        """The request the policy decides: the tool's traits, the run context, the run total
        (what this tool moved in the run, plus calls admitted earlier in this message) and the
        measured facts about each cited id (``guards.citations``)."""
        total = 0.0
        if spec.amount_arg is not None:
            total = state.get("moved_usd", {}).get(spec.name, 0.0)
            for p in admitted:
                value = p.args.get(spec.amount_arg)
                if p.tool == spec.name and isinstance(value, int | float) and not isinstance(value, bool):
                    total += float(value)
        facts = measured if measured is not None else self._measure(spec, parsed.model_dump(mode="json"), state)
        return spec.describe(parsed, self._context(state, config, admitted), run_total_usd=total,
                             citation_facts=facts)

    def _measure(self, spec: ToolSpec[Any, Any], data: Mapping[str, Any], state: WorkflowState,
                 ) -> tuple[CitationFact, ...]:
        """What the citation gate needs about each cited id, from this run's retrieved evidence."""
        key = spec.citations_arg
        cited = data.get(key) if key else None
        if not cited:
            return ()
        ids = [str(c) for c in cited] if isinstance(cited, list | tuple) else [str(cited)]
        gate = self.policy.citation_gate(spec.name)
        reason = stated_reason(gate.section if gate else None, data)
        return measure_citations(ids, state.get("evidence", []), reason=reason,
                                 scorer=self.relevance or LexicalRelevance(), knowledge=self.knowledge)

    def _citation_rows(self, tool: str, facts: Sequence[CitationFact]) -> tuple[dict[str, Any], ...] | None:
        """The ledger's ``citations`` for a call: per cited id, the facts and the verdict."""
        gate = self.policy.citation_gate(tool)
        return citation_rows(facts, gate.section) if gate is not None else None

    def _records_of(self, p: Proposal) -> tuple[str, ...]:
        """Record ids a proposal touches (its tool's ``record_arg``)."""
        spec = self.tools.get(p.tool)
        arg = spec.traits.record_arg if spec else None
        value = p.args.get(arg) if arg else None
        if value is None:
            return ()
        return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)

    def _ctx(self, state: WorkflowState, config: RunnableConfig, p: Proposal) -> ToolContext[Any]:
        return ToolContext(
            subject=state.get("subject"),
            thread_id=self._thread(config),
            run_id=state.get("run_id", "?"),
            tool_call_id=p.tool_call_id,
            idempotency_key=self._key(config, p),
            resources=self.resources,
            evidence=frozenset(e.evidence_id for e in state.get("evidence", [])),
        )

    def _spend(self, model_id: str, msg: AIMessage) -> float:
        meta = msg.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        return price_for(model_id, self.prices).cost(
            input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"]
        )

    def _model_ids(self) -> tuple[str, ...]:
        """Every model the workflow may call (what its price stamp covers)."""
        ids = (self.router_model_id, self.model_id, self.cheap_model_id, self.fallback_model_id)
        return tuple(dict.fromkeys(i for i in ids if i))

    def _price_stamp(self) -> dict[str, str]:
        return price_stamp(self._model_ids(), self.prices)

    def _candidates(self, model_id: str, *, router: bool = False) -> list[Candidate]:
        """The router model (``router``) or the reasoning model chosen by id, then the fallback
        model (if any, and a different id)."""
        if router:
            model = self.router_model
        elif model_id == self.cheap_model_id and self.cheap_model is not None:
            model = self.cheap_model
        else:
            model = self.model
        out = [Candidate(model_id=model_id, model=model)]
        if self.fallback_model is not None and self.fallback_model_id and self.fallback_model_id != model_id:
            out.append(Candidate(model_id=self.fallback_model_id, model=self.fallback_model))
        return out

    def _fallback_recorder(self, state: WorkflowState, config: RunnableConfig, role: str) -> Any:
        """A callback that writes one ``model_fallback`` row per fallback."""

        def record(failure: ModelFailure, to_model: str) -> None:
            self._event(state, config, event="model_fallback", model_id=failure.model_id,
                        error=f"{failure.kind}: {failure.message}"[:500],
                        detail=f"{role}: {failure.model_id} -> {to_model} ({failure.kind})",
                        result={"from_model": failure.model_id, "to_model": to_model,
                                "error_kind": failure.kind, "role": role})

        return record

    def _halt_budget(self, over: BudgetExceeded) -> Halt:
        return Halt(
            rule_id=over.rule_id,
            reason=f"budget exceeded: {over.describe()}",
            action=self.policy.escalation.on_budget_exceeded,
            budget=over,
        )

    def _retries_exhausted(self, streak: int) -> Halt | None:
        limit = self.policy.max_tool_error_retries
        if streak <= limit:
            return None
        return Halt(
            rule_id="agent.max_tool_error_retries",
            reason=f"{streak} malformed or failed tool calls in a row (limit {limit})",
            action=self.policy.escalation.on_tool_error_retries_exhausted,
        )
