"""What every node of a governed workflow shares: configuration fields and ledger helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from tether.agents.models.pricing import ModelPrice, price_for
from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.graphs.state import Halt, Proposal, WorkflowState
from tether.guards.budgets import BudgetExceeded, Usage
from tether.guards.policy import ActionRequest, Policy
from tether.guards.ratelimit import RuntimeLimits
from tether.guards.secret_refs import SecretResolver, redact_tool_data
from tether.tools.base import ToolContext, Toolset, ToolSpec

__all__ = ["NodeBase"]


@dataclass(frozen=True, kw_only=True)
class NodeBase:
    """The workflow's configuration, shared by every node (``Workflow`` adds the nodes)."""

    name: str
    policy: Policy
    tools: Toolset
    routes: Mapping[str, Sequence[str]]
    """Route name -> tools offered on that route. Must include ``"other"``."""
    router_model: BaseChatModel
    router_model_id: str
    model: BaseChatModel
    model_id: str
    ledger: Ledger
    db: Any
    """The business database the tools act on (``sqlite3.Connection`` for the support desk)."""
    system_prompt: str
    prompt_version: str = "v1"
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    tool_timeout_seconds: float = 20.0
    principal: str = "tether-agent"
    """The agent identity (overridable per run with ``configurable.principal``)."""
    roles: tuple[str, ...] = ()
    """The agent's roles (overridable per run with ``configurable.roles``)."""
    limits: RuntimeLimits | None = None
    """Rate limits and circuit breakers checked at act time (persisted; see ``guards.ratelimit``)."""
    secrets: SecretResolver | None = None
    """Resolves tool credentials by reference; every resolved value is redacted from the ledger."""

    @staticmethod
    def _thread(config: RunnableConfig) -> str:
        return str(config.get("configurable", {}).get("thread_id", "default"))

    def _agent(self, config: RunnableConfig) -> tuple[str, tuple[str, ...]]:
        """The agent identity and roles: from the run's configuration, else the workflow's."""
        conf = config.get("configurable", {})
        roles = conf.get("roles")
        return str(conf.get("principal") or self.principal), tuple(roles) if roles else self.roles

    def _key(self, config: RunnableConfig, p: Proposal) -> str:
        """Idempotency key of a proposal: stable across resumes, unique in the thread."""
        return f"{self._thread(config)}:{p.action_id}"

    def _event(self, state: WorkflowState, config: RunnableConfig, **kw: Any) -> None:
        tool = kw.get("tool")
        if tool and self.policy.tools.get(tool) is not None:
            # fields the policy marks sensitive never reach the ledger in clear
            for key in ("args", "result", "error", "detail"):
                if kw.get(key) is not None:
                    kw[key] = redact_tool_data(self.policy, tool, kw[key], resolver=self.secrets)
        self.ledger.append(
            LedgerEvent(
                thread_id=self._thread(config),
                run_id=state.get("run_id", "?"),
                principal=self._agent(config)[0],
                customer_id=state.get("customer_id"),
                policy_version=kw.pop("policy_version", self.policy.version),
                spend_usd=state.get("usage", Usage()).spend_usd,
                **kw,
            )
        )

    def _describe(
        self, spec: ToolSpec[Any, Any], parsed: Any, state: WorkflowState, config: RunnableConfig
    ) -> ActionRequest:
        agent, roles = self._agent(config)
        return spec.describe(
            parsed,
            principal=state.get("customer_id", ""),
            evidence=frozenset(e.evidence_id for e in state.get("evidence", [])),
            agent=agent,
            roles=roles,
        )

    def _with_run_total(
        self,
        action: ActionRequest,
        spec: ToolSpec[Any, Any],
        state: WorkflowState,
        admitted: Sequence[Proposal] = (),
    ) -> ActionRequest:
        """Add what this tool already moved in the run, plus calls admitted earlier in this message."""
        if spec.amount_arg is None:
            return action
        total = state.get("moved_usd", {}).get(spec.name, 0.0)
        for p in admitted:
            value = p.args.get(spec.amount_arg)
            if p.tool == spec.name and isinstance(value, int | float) and not isinstance(value, bool):
                total += float(value)
        return action.model_copy(update={"run_total_usd": total})

    def _ctx(self, state: WorkflowState, config: RunnableConfig, p: Proposal) -> ToolContext:
        return ToolContext(
            customer_id=state.get("customer_id", ""),
            thread_id=self._thread(config),
            run_id=state.get("run_id", "?"),
            tool_call_id=p.tool_call_id,
            idempotency_key=self._key(config, p),
            db=self.db,
            evidence=frozenset(e.evidence_id for e in state.get("evidence", [])),
        )

    def _spend(self, model_id: str, msg: AIMessage) -> float:
        meta = msg.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        return price_for(model_id, self.prices).cost(
            input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"]
        )

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
