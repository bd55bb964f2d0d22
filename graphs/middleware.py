"""``TetherMiddleware``: tether's governance for a LangChain ``create_agent`` agent.

Every tool call is checked by the policy (``Policy.evaluate``) before it runs; calls needing
approval pause with a LangGraph ``interrupt`` carrying an ``ApprovalRequest`` and resume with
``Command(resume=Approve|Reject|Edit)`` (validated by ``parse_decision``; an edit is re-checked
by the policy); budgets are checked before each model call; every step is a ledger row, and
a write runs at most once per (thread, tool call): ``executing`` before the side effect,
``executed`` after, and a completed key is reused on resume or replay.

    agent = create_agent(model, tools=[...], checkpointer=saver,
                         middleware=[TetherMiddleware(policy=policy, ledger=ledger, tools=toolset)])
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, NotRequired

from tether.errors import MissingExtra

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState
    from langchain.agents.middleware.types import ToolCallRequest, hook_config
except ImportError:  # pragma: no cover - the extra is installed in development
    raise MissingExtra(extra="langchain", feature="tether.graphs.middleware (TetherMiddleware)") from None
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command

from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.guards.budgets import Usage
from tether.guards.context import RunContext, Subject
from tether.guards.policy import Policy
from tether.models import ModelPrice, estimate_tokens, price_for
from tether.tools.base import ToolContext, Toolset, ToolSpec, ToolTraits

__all__ = ["TetherAgentState", "TetherMiddleware"]


class TetherAgentState(AgentState[Any]):
    """The agent state plus where the current run began (its messages are the run's usage)."""

    tether_run: NotRequired[dict[str, Any]]


def _spec_tool(spec: ToolSpec[Any, Any]) -> BaseTool:
    """A LangChain tool the model sees for a tether tool (the middleware runs it)."""

    def never(**_: Any) -> str:  # pragma: no cover - the middleware answers every call
        raise RuntimeError(f"{spec.name} runs only through TetherMiddleware")

    return StructuredTool.from_function(func=never, name=spec.name, description=spec.description,
                                        args_schema=spec.args_model)


def _wrap_plain(tool: BaseTool, policy: Policy, traits: ToolTraits | None, write: bool) -> ToolSpec[Any, Any]:
    from tether.tools import adapters

    if traits is None and not write:
        return adapters.from_langchain(tool, policy)
    args_model, has_key = adapters._args_model(tool)
    call = adapters._caller(tool, has_key)

    def fn(args: Any, ctx: ToolContext[Any]) -> Any:
        data = args.model_dump(mode="json", exclude_unset=True)
        if has_key:
            data[adapters.IDEMPOTENCY_ARG] = ctx.idempotency_key
        return call(data, ctx.tool_call_id or uuid.uuid4().hex)

    effect: Literal["read", "write"] = "write" if write else "read"
    return ToolSpec(name=tool.name, description=" ".join((tool.description or tool.name).split()),
                    args_model=args_model, result_model=adapters.ToolOutput, fn=fn, effect=effect,
                    traits=traits or ToolTraits(), idempotent=not write or has_key)


class TetherMiddleware(AgentMiddleware[TetherAgentState, Any, Any]):
    """Policy checks, approvals, budgets, ledger rows and exactly-once writes for an agent.

    ``tools``: tether tools (registered with the agent by the middleware). ``langchain_tools``:
    the agent's plain LangChain tools, described by ``traits={name: ToolTraits}`` and
    ``writes={name}``, else by the policy's ``effect:``/``traits:`` keys. ``model_id`` prices
    model calls (``tether.models.price_for``; default: the reply's ``model_name``).
    Run identity comes from ``configurable``: ``principal``, ``roles``, ``subject``.
    """

    state_schema = TetherAgentState

    def __init__(self, *, policy: Policy, ledger: Ledger, tools: Toolset | Iterable[ToolSpec[Any, Any]] = (),
                 langchain_tools: Iterable[BaseTool] = (), traits: Mapping[str, ToolTraits] | None = None,
                 writes: Iterable[str] = (), model_id: str | None = None,
                 prices: Mapping[str, ModelPrice] | None = None, max_model_calls: int | None = None,
                 principal: str = "tether-agent", resources: Any = None) -> None:
        super().__init__()
        specs = list(tools.tools if isinstance(tools, Toolset) else tools)
        traits, writes = dict(traits or {}), set(writes)
        plain = list(langchain_tools)
        unknown = (set(traits) | writes) - {t.name for t in plain}
        if unknown:
            raise ValueError(f"traits/writes name tools {sorted(unknown)} that are not in langchain_tools "
                             f"({', '.join(t.name for t in plain) or 'none'})")
        specs += [_wrap_plain(t, policy, traits.get(t.name), t.name in writes) for t in plain]
        self.toolset = Toolset(tools=specs)
        self.tools = [_spec_tool(s) for s in self.toolset.tools if s.name not in {t.name for t in plain}]
        self.policy, self.ledger, self.model_id = policy, ledger, model_id
        self.prices, self.max_model_calls = dict(prices or {}), max_model_calls
        self.principal, self.resources = principal, resources

    # ------------------------------------------------------------------ run and budgets

    def before_agent(self, state: TetherAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        run = {"run_id": "run-" + uuid.uuid4().hex[:12], "start": len(state["messages"]), "started": time.time()}
        last = state["messages"][-1] if state["messages"] else None
        self._event(run, event="run_started", detail=str(last.content)[:2000] if last else None)
        return {"tether_run": run}

    def _usage(self, state: TetherAgentState) -> Usage:
        run = state.get("tether_run") or {"start": 0, "started": time.time()}
        msgs = state["messages"][run["start"]:]
        ais = [m for m in msgs if isinstance(m, AIMessage)]
        spend = sum(self._spend(m) for m in ais)
        waited = sum(_seconds(a.created_at, a.decided_at) for a in self.ledger.approvals(
            status=None, thread_id=_thread()) if a.run_id == run.get("run_id") and a.decided_at)
        return Usage(tool_calls=sum(len(m.tool_calls) for m in ais), model_calls=len(ais), spend_usd=spend,
                     active_seconds=max(0.0, time.time() - run["started"] - waited))

    def _spend(self, msg: AIMessage) -> float:
        meta = msg.usage_metadata
        mid = self.model_id or str(msg.response_metadata.get("model_name", ""))
        if not meta or not mid:
            return 0.0
        return price_for(mid, self.prices).cost(input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"])

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: TetherAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        usage = self._usage(state)
        over: tuple[str, str] | None = None
        if self.max_model_calls is not None and usage.model_calls + 1 > self.max_model_calls:
            over = ("agent.max_model_calls", f"max_model_calls: limit {self.max_model_calls}, "
                    f"used {usage.model_calls}, next step needs 1")
        elif self.model_id is not None:
            worst = price_for(self.model_id, self.prices).worst_case(
                input_tokens=estimate_tokens(list(state["messages"])))
            found = self.policy.budgets.check_before_model_call(usage, worst_case_usd=worst)
            over = (found.rule_id, found.describe()) if found is not None else None
        else:
            found = self.policy.budgets.check_wall_clock(usage)
            over = (found.rule_id, found.describe()) if found is not None else None
        if over is None:
            return None
        run = state.get("tether_run") or {}
        self._event(run, event="budget_exceeded", rule_id=over[0], detail=over[1], spend_usd=usage.spend_usd)
        return {"jump_to": "end", "messages": [AIMessage(content=f"I had to stop here: budget exceeded ({over[1]}).",
                                                         response_metadata={"tether_rule_id": over[0]})]}

    def after_agent(self, state: TetherAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        last = state["messages"][-1] if state["messages"] else None
        if isinstance(last, AIMessage) and not last.tool_calls:
            self._event(state.get("tether_run") or {}, event="responded", detail=str(last.content)[:2000],
                        model_id=self.model_id, spend_usd=self._usage(state).spend_usd)
        return None

    # ------------------------------------------------------------------ tool calls

    def wrap_tool_call(self, request: ToolCallRequest,
                       handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]) -> ToolMessage | Command[Any]:
        from tether.graphs.middleware_calls import govern_call

        return govern_call(self, request)

    # ------------------------------------------------------------------ shared helpers

    def context(self, config: RunnableConfig, state: Mapping[str, Any]) -> RunContext:
        conf = config.get("configurable", {})
        subject = conf.get("subject")
        return RunContext(principal=str(conf.get("principal") or self.principal),
                          roles=tuple(conf.get("roles") or ()),
                          subject=Subject(id=str(subject)) if subject else None)

    def _event(self, run: Mapping[str, Any], **fields: Any) -> None:
        """One ledger row; ``durable=True`` (a write's intent) is on disk before this returns."""
        durable = bool(fields.pop("durable", False))
        conf = get_config().get("configurable", {})
        subject = conf.get("subject")
        fields.setdefault("policy_version", self.policy.version)
        self.ledger.append(LedgerEvent(thread_id=_thread(), run_id=str(run.get("run_id", "?")),
                                       principal=str(conf.get("principal") or self.principal),
                                       subject_id=str(subject) if subject else None, **fields),
                           durable=durable)


def _thread() -> str:
    return str(get_config().get("configurable", {}).get("thread_id", "default"))


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def find_call(messages: Iterable[BaseMessage], call_id: str) -> tuple[str | None, int]:
    """The proposing message's id and the call's position in it."""
    for m in reversed(list(messages)):
        if isinstance(m, AIMessage):
            for i, tc in enumerate(m.tool_calls):
                if tc.get("id") == call_id:
                    return m.id, i
    return None, 0

