"""The governed workflow: a plain LangGraph ``StateGraph`` with explicit guard nodes.

    START -> router -> reasoning -> policy_check -> human_interrupt -> act -> reasoning ...
                           |              |                                 |
                           +-> respond    +-> escalate                      +-> escalate
    respond / escalate -> END

* ``router``: a cheap model picks the route; the route decides which tools are offered.
* ``reasoning``: the stronger model proposes tool calls or answers. Spend is checked first.
* ``policy_check``: validates arguments, reserves the tool-call budget, asks the policy.
* ``human_interrupt``: ``interrupt()`` with a typed ``ApprovalRequest``; resumes with a typed
  ``Approve | Reject | Edit``. Edited arguments are policy-checked again.
* ``act``: the only place side effects happen, keyed by an idempotency key the ledger remembers.
* ``escalate`` / ``respond``: terminal, each with a typed outcome.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt
from pydantic import TypeAdapter, ValidationError

from tether.agents.models.pricing import ModelPrice, estimate_tokens, price_for
from tether.checkpoints.ledger import ApprovalStatus, Ledger, LedgerEvent, args_hash
from tether.errors import ToolError
from tether.graphs.state import (
    ApprovalRequest,
    Approve,
    Edit,
    Escalated,
    Halt,
    HumanDecision,
    Memory,
    Proposal,
    Reject,
    Resolved,
    TurnSummary,
    WorkflowState,
)
from tether.guards.budgets import Usage
from tether.guards.decisions import Deny, Escalate, EscalationAction, RequireApproval
from tether.guards.policy import Policy
from tether.retrieval.knowledge import Evidence
from tether.tools.base import ArgumentProblem, ToolContext, Toolset

__all__ = ["DECISION_STATUS", "Node", "Workflow", "parse_decision"]

Node = Literal["router", "reasoning", "policy_check", "human_interrupt", "act", "escalate", "respond"]
_DECISION: TypeAdapter[Approve | Reject | Edit] = TypeAdapter(HumanDecision)
DECISION_STATUS: dict[str, ApprovalStatus] = {"approve": "approved", "reject": "rejected", "edit": "edited"}
"""Approval status recorded for each kind of human decision."""
MEMORY_WINDOW = 20


def _content(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """Everything a governed workflow needs. ``graph()`` returns a plain ``StateGraph``."""

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
    db: sqlite3.Connection
    """The business database the tools act on."""
    system_prompt: str
    prompt_version: str = "v1"
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    tool_timeout_seconds: float = 20.0
    principal: str = "tether-agent"
    """The agent identity recorded in the ledger."""

    def __post_init__(self) -> None:
        if "other" not in self.routes:
            raise ValueError("routes must include 'other'")
        for route, names in self.routes.items():
            unknown = [n for n in names if self.tools.get(n) is None]
            if unknown:
                raise ValueError(f"route {route!r} offers unknown tools {unknown}")
        price_for(self.router_model_id, self.prices)  # fail at build time, not mid-run
        price_for(self.model_id, self.prices)

    # ------------------------------------------------------------------ assembly

    def graph(self) -> StateGraph[WorkflowState]:
        g: StateGraph[WorkflowState] = StateGraph(WorkflowState)
        g.add_node("router", self._timed(self._router))
        g.add_node("reasoning", self._timed(self._reasoning))
        g.add_node("policy_check", self._timed(self._policy_check))
        g.add_node("human_interrupt", self._human_interrupt)
        g.add_node("act", self._timed(self._act))
        g.add_node("escalate", self._escalate)
        g.add_node("respond", self._respond)
        g.add_edge(START, "router")
        g.add_conditional_edges("router", self._after_router, ["reasoning", "escalate"])
        g.add_conditional_edges("reasoning", self._after_reasoning, ["policy_check", "respond", "escalate"])
        g.add_conditional_edges(
            "policy_check", self._after_check, ["human_interrupt", "act", "reasoning", "escalate"]
        )
        g.add_conditional_edges(
            "human_interrupt", self._after_check, ["human_interrupt", "act", "reasoning", "escalate"]
        )
        g.add_conditional_edges("act", self._after_act, ["reasoning", "escalate"])
        g.add_edge("escalate", END)
        g.add_edge("respond", END)
        return g

    def compile(
        self, checkpointer: BaseCheckpointSaver[Any] | None = None
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        return self.graph().compile(checkpointer=checkpointer, name=self.name)

    # ------------------------------------------------------------------ helpers

    def _timed(self, fn: Callable[[WorkflowState, RunnableConfig], dict[str, Any]]) -> Any:
        """Wrap a node so its run time counts against the wall-clock budget."""
        def node(state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
            t0 = time.perf_counter()
            out = fn(state, config)
            usage = out.get("usage", state.get("usage", Usage()))
            out["usage"] = usage.add(seconds=time.perf_counter() - t0)
            return out

        node.__name__ = fn.__name__.lstrip("_")
        return node

    @staticmethod
    def _thread(config: RunnableConfig) -> str:
        return str(config.get("configurable", {}).get("thread_id", "default"))

    def _event(self, state: WorkflowState, config: RunnableConfig, **kw: Any) -> None:
        self.ledger.append(
            LedgerEvent(
                thread_id=self._thread(config),
                run_id=state.get("run_id", "?"),
                principal=self.principal,
                customer_id=state.get("customer_id"),
                policy_version=kw.pop("policy_version", self.policy.version),
                spend_usd=state.get("usage", Usage()).spend_usd,
                **kw,
            )
        )

    def _spend(self, model_id: str, msg: AIMessage) -> float:
        meta = msg.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        return price_for(model_id, self.prices).cost(
            input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"]
        )

    def _halt_budget(self, over: Any) -> Halt:
        return Halt(
            rule_id=over.rule_id,
            reason=f"budget exceeded: {over.describe()}",
            action=self.policy.escalation.on_budget_exceeded,
            budget=over,
        )

    # ------------------------------------------------------------------ nodes

    def _router(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        run_id = uuid.uuid4().hex[:12]
        messages = list(state.get("messages", []))
        request = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        customer = state.get("customer_id") or config.get("configurable", {}).get("customer_id")
        fresh: dict[str, Any] = {
            "run_id": run_id,
            "usage": Usage(),
            "proposals": [],
            "evidence": [],
            "error_streak": 0,
            "halt": None,
            "outcome": None,
        }
        memory, removals = self._fold_history(state, messages, request)
        fresh |= {"memory": memory, "messages": removals}
        st: WorkflowState = {**state, **fresh}  # type: ignore[typeddict-item]
        if request is None or not customer:
            fresh["halt"] = Halt(
                rule_id="input.required",
                reason="a run needs a user message and a customer_id",
                action=EscalationAction.ASK_USER,
            )
            return fresh
        fresh["customer_id"] = customer
        st["customer_id"] = customer
        self._event(st, config, event="run_started", detail=str(request.content)[:2000])
        price = price_for(self.router_model_id, self.prices)
        over = self.policy.budgets.check_before_model_call(
            Usage(), worst_case_usd=price.worst_case(input_tokens=estimate_tokens([request]))
        )
        if over is not None:
            fresh["halt"] = self._halt_budget(over)
            return fresh
        reply = self.router_model.bind_tools([_ROUTE_TOOL]).invoke([request])
        route = "other"
        for tc in getattr(reply, "tool_calls", []) or []:
            if tc["name"] == "route" and tc["args"].get("route") in self.routes:
                route = tc["args"]["route"]
        spend = self._spend(self.router_model_id, reply) if isinstance(reply, AIMessage) else 0.0
        fresh["usage"] = Usage().add(model_calls=1, spend_usd=spend)
        fresh["route"] = route
        st["usage"] = fresh["usage"]
        self._event(st, config, event="routed", detail=route, model_id=self.router_model_id)
        return fresh

    def _fold_history(
        self, state: WorkflowState, messages: list[AnyMessage], request: HumanMessage | None
    ) -> tuple[Memory, list[RemoveMessage]]:
        """Fold messages of earlier runs into structured memory and remove them from state."""
        memory = state.get("memory") or Memory()
        if request is None:
            return memory, []
        idx = messages.index(request)
        older = messages[:idx]
        if not older:
            return memory, []
        prior_request = next((m for m in older if isinstance(m, HumanMessage)), None)
        outcome = state.get("outcome")
        turn = TurnSummary(
            request=str(prior_request.content)[:300] if prior_request else "",
            route=state.get("route", "?"),
            actions=tuple(f"{p.tool}:{p.status}" for p in state.get("proposals", [])),
            outcome=(outcome.kind if outcome else "unfinished"),
        )
        turns = (*memory.turns, turn)
        dropped = memory.dropped_turns + max(0, len(turns) - MEMORY_WINDOW)
        seen = tuple(
            dict.fromkeys((*memory.evidence_seen, *(e.evidence_id for e in state.get("evidence", []))))
        )
        memory = Memory(turns=turns[-MEMORY_WINDOW:], dropped_turns=dropped, evidence_seen=seen[-50:])
        return memory, [RemoveMessage(id=m.id) for m in older if m.id]

    def _after_router(self, state: WorkflowState) -> str:
        return "escalate" if state.get("halt") else "reasoning"

    def _reasoning(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        usage = state.get("usage", Usage())
        route = state.get("route", "other")
        offered = [t for t in (self.tools.get(n) for n in self.routes[route]) if t is not None]
        memory = state.get("memory") or Memory()
        system = SystemMessage(
            f"{self.system_prompt}\nroute: {route}\ncustomer: {state.get('customer_id')}\n" + memory.render()
        )
        convo = [system, *state.get("messages", [])]
        price = price_for(self.model_id, self.prices)
        over = self.policy.budgets.check_before_model_call(
            usage, worst_case_usd=price.worst_case(input_tokens=estimate_tokens(convo))
        )
        if over is not None:
            return {"halt": self._halt_budget(over)}
        try:
            reply = self.model.bind_tools([t.openai_schema() for t in offered]).invoke(convo)
        except Exception as exc:  # provider errors, timeouts: stop, don't guess
            return {
                "halt": Halt(
                    rule_id="model.error",
                    reason=f"the reasoning model failed: {type(exc).__name__}: {str(exc)[:200]}",
                    action=self.policy.escalation.on_tool_error_retries_exhausted,
                )
            }
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        usage = usage.add(model_calls=1, spend_usd=self._spend(self.model_id, reply))
        return {"messages": [reply], "usage": usage, "proposals": []}

    def _after_reasoning(self, state: WorkflowState) -> str:
        if state.get("halt"):
            return "escalate"
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and (last.tool_calls or last.invalid_tool_calls):
            return "policy_check"
        return "respond"

    def _policy_check(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        usage = state.get("usage", Usage())
        thread = self._thread(config)
        evidence = frozenset(e.evidence_id for e in state.get("evidence", []))
        offered = set(self.routes[state.get("route", "other")])
        proposals: list[Proposal] = []
        replies: list[ToolMessage] = []
        streak = state.get("error_streak", 0)
        halt: Halt | None = None
        calls = [
            (tc["id"] or f"call_{i}", tc["name"], dict(tc["args"])) for i, tc in enumerate(last.tool_calls)
        ]
        for i, bad in enumerate(last.invalid_tool_calls):
            calls.append(
                (
                    bad.get("id") or f"invalid_{i}",
                    bad.get("name") or "?",
                    {"__raw__": str(bad.get("args"))[:500]},
                )
            )
        for call_id, name, raw in calls:
            if halt is not None:
                proposals.append(
                    Proposal(tool_call_id=call_id, tool=name, args=_jsonable(raw), status="skipped")
                )
                continue
            over = self.policy.budgets.check_before_tool_call(usage)
            if over is not None:
                halt = self._halt_budget(over)
                self._event(
                    state,
                    config,
                    event="budget_exceeded",
                    tool_call_id=call_id,
                    tool=name,
                    rule_id=over.rule_id,
                    detail=over.describe(),
                )
                proposals.append(
                    Proposal(tool_call_id=call_id, tool=name, args=_jsonable(raw), status="skipped")
                )
                continue
            usage = usage.add(tool_calls=1)  # reserve before deciding: floods of calls hit the cap
            spec = self.tools.get(name)
            if spec is None or name not in offered or "__raw__" in raw:
                problem = ArgumentProblem(
                    tool=name,
                    code="unknown_tool" if spec is None or name not in offered else "invalid_arguments",
                    errors=("arguments are not valid JSON",)
                    if "__raw__" in raw
                    else (f"no tool named {name!r} is offered",),
                    hint=f"Use one of: {', '.join(sorted(offered))}.",
                )
                rule = (
                    "default.unlisted_tool"
                    if spec is None
                    else "route.tool_not_offered"
                    if name not in offered
                    else "schema.malformed_json"
                )
                denial = Deny(rule_id=rule, reason=problem.errors[0])
                proposals.append(
                    Proposal(
                        tool_call_id=call_id,
                        tool=name,
                        args=_jsonable(raw),
                        status="invalid",
                        problem=problem,
                        decision=denial,
                    )
                )
                replies.append(
                    _tool_msg(
                        call_id, name, {"status": "invalid_arguments", **problem.model_dump(mode="json")}
                    )
                )
                self._event(
                    state,
                    config,
                    event="proposed",
                    step=usage.tool_calls,
                    tool_call_id=call_id,
                    tool=name,
                    args=_jsonable(raw),
                    decision="invalid",
                    rule_id=denial.rule_id,
                    error=problem.errors[0],
                    model_id=self.model_id,
                )
                streak += 1
                continue
            parsed = spec.parse(raw)
            if isinstance(parsed, ArgumentProblem):
                proposals.append(
                    Proposal(
                        tool_call_id=call_id, tool=name, args=_jsonable(raw), status="invalid", problem=parsed
                    )
                )
                replies.append(
                    _tool_msg(
                        call_id, name, {"status": "invalid_arguments", **parsed.model_dump(mode="json")}
                    )
                )
                self._event(
                    state,
                    config,
                    event="proposed",
                    step=usage.tool_calls,
                    tool_call_id=call_id,
                    tool=name,
                    tool_schema_version=spec.schema_version,
                    args=_jsonable(raw),
                    decision="invalid",
                    rule_id="schema." + name,
                    error="; ".join(parsed.errors)[:1000],
                    model_id=self.model_id,
                )
                streak += 1
                continue
            args = parsed.model_dump(mode="json")
            decision = self.policy.evaluate(
                spec.describe(parsed, principal=state.get("customer_id", ""), evidence=evidence)
            )
            common = dict(
                step=usage.tool_calls,
                tool_call_id=call_id,
                tool=name,
                tool_schema_version=spec.schema_version,
                args=args,
                model_id=self.model_id,
                idempotency_key=f"{thread}:{call_id}",
            )
            self._event(
                state,
                config,
                event="proposed",
                decision=decision.kind,
                rule_id=decision.rule_id,
                matched_rules=tuple(m.rule_id for m in decision.matched),
                detail=decision.reason,
                evidence=tuple(args.get(spec.citations_arg or "", []) or ()),
                **common,
            )
            if isinstance(decision, Deny):
                proposals.append(
                    Proposal(tool_call_id=call_id, tool=name, args=args, status="denied", decision=decision)
                )
                replies.append(
                    _tool_msg(
                        call_id,
                        name,
                        {"status": "denied", "rule_id": decision.rule_id, "reason": decision.reason},
                    )
                )
            elif isinstance(decision, Escalate):
                proposals.append(
                    Proposal(tool_call_id=call_id, tool=name, args=args, status="denied", decision=decision)
                )
                halt = Halt(rule_id=decision.rule_id, reason=decision.reason, action=decision.action)
            elif isinstance(decision, RequireApproval):
                preview = self._preview(spec, parsed, state, config, call_id)
                appr = self.ledger.request_approval(
                    thread_id=thread,
                    run_id=state.get("run_id", "?"),
                    tool_call_id=call_id,
                    tool=name,
                    args=args,
                    preview=preview,
                    rule_id=decision.rule_id,
                    reason=decision.reason,
                    policy_version=self.policy.version,
                    customer_id=state.get("customer_id"),
                )
                self._event(
                    state,
                    config,
                    event="approval_requested",
                    approval_id=appr.approval_id,
                    rule_id=decision.rule_id,
                    detail=preview,
                    **common,
                )
                proposals.append(
                    Proposal(
                        tool_call_id=call_id,
                        tool=name,
                        args=args,
                        status="awaiting_approval",
                        decision=decision,
                        approval_id=appr.approval_id,
                        preview=preview,
                    )
                )
            else:
                proposals.append(
                    Proposal(tool_call_id=call_id, tool=name, args=args, status="allowed", decision=decision)
                )
        if halt is None and streak > self.policy.max_tool_error_retries:
            halt = Halt(
                rule_id="agent.max_tool_error_retries",
                reason=f"{streak} malformed or failed tool calls in a row (limit {self.policy.max_tool_error_retries})",
                action=self.policy.escalation.on_tool_error_retries_exhausted,
            )
        return {
            "proposals": proposals,
            "messages": replies,
            "usage": usage,
            "error_streak": streak,
            "halt": halt,
        }

    def _preview(
        self, spec: Any, parsed: Any, state: WorkflowState, config: RunnableConfig, call_id: str
    ) -> str:
        if spec.preview is None:
            return f"{spec.name}({_content(parsed.model_dump(mode='json'))})"
        try:
            return str(spec.preview(parsed, self._ctx(state, config, call_id)))
        except ToolError as exc:
            return f"preview unavailable: {exc}"

    def _ctx(self, state: WorkflowState, config: RunnableConfig, call_id: str) -> ToolContext:
        thread = self._thread(config)
        return ToolContext(
            customer_id=state.get("customer_id", ""),
            thread_id=thread,
            run_id=state.get("run_id", "?"),
            tool_call_id=call_id,
            idempotency_key=f"{thread}:{call_id}",
            db=self.db,
            evidence=frozenset(e.evidence_id for e in state.get("evidence", [])),
        )

    def _after_check(self, state: WorkflowState) -> str:
        if state.get("halt"):
            return "escalate"
        props = state.get("proposals", [])
        if any(p.status == "awaiting_approval" for p in props):
            return "human_interrupt"
        if any(p.status in ("allowed", "approved") for p in props):
            return "act"
        return "reasoning"

    def _human_interrupt(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        props = list(state.get("proposals", []))
        i = next(i for i, p in enumerate(props) if p.status == "awaiting_approval")
        p = props[i]
        assert p.decision is not None and p.approval_id is not None
        request = ApprovalRequest(
            approval_id=p.approval_id,
            thread_id=self._thread(config),
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            args=p.args,
            args_hash=args_hash(p.args),
            preview=p.preview or "",
            rule_id=p.decision.rule_id,
            reason=p.decision.reason,
            policy_version=self.policy.version,
        )
        raw = interrupt(request)  # nothing above this line has side effects
        try:
            decision = parse_decision(raw)
        except ValidationError as exc:
            decision = Reject(
                approver="system", reason=f"unreadable decision payload, rejected: {str(exc)[:200]}"
            )
        out = self._apply_decision(state, config, props, i, decision)
        crash_point("after_approval")
        return out

    def _apply_decision(
        self,
        state: WorkflowState,
        config: RunnableConfig,
        props: list[Proposal],
        i: int,
        decision: Approve | Reject | Edit,
    ) -> dict[str, Any]:
        p = props[i]
        status = DECISION_STATUS[decision.kind]
        self._record_decision(p, decision, status)
        replies: list[ToolMessage] = []
        base = dict(
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            approval_id=p.approval_id,
            approver=decision.approver,
            idempotency_key=f"{self._thread(config)}:{p.tool_call_id}",
        )
        if isinstance(decision, Approve):
            self._event(state, config, event="approved", args=p.args, detail=decision.comment, **base)
            props[i] = p.model_copy(update={"status": "approved", "approver": decision.approver})
        elif isinstance(decision, Reject):
            self._event(state, config, event="rejected", args=p.args, detail=decision.reason, **base)
            props[i] = p.model_copy(update={"status": "rejected", "approver": decision.approver})
            replies.append(
                _tool_msg(
                    p.tool_call_id,
                    p.tool,
                    {"status": "rejected", "reason": decision.reason, "approver": decision.approver},
                )
            )
        else:
            props[i], reply = self._recheck_edit(state, config, p, decision)
            if reply is not None:
                replies.append(reply)
        return {"proposals": props, "messages": replies}

    def _record_decision(
        self, p: Proposal, decision: Approve | Reject | Edit, status: ApprovalStatus
    ) -> None:
        assert p.approval_id is not None
        current = self.ledger.approval(p.approval_id)
        if current.status == "pending":
            self.ledger.decide(
                p.approval_id,
                status=status,
                decided_by=decision.approver,  # type: ignore[arg-type]
                decision=decision.model_dump(mode="json"),
            )

    def _recheck_edit(
        self, state: WorkflowState, config: RunnableConfig, p: Proposal, edit: Edit
    ) -> tuple[Proposal, ToolMessage | None]:
        spec = self.tools.get(p.tool)
        assert spec is not None
        merged = {**p.args, **edit.args}
        parsed = spec.parse(merged)
        base = dict(
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            approval_id=p.approval_id,
            approver=edit.approver,
            idempotency_key=f"{self._thread(config)}:{p.tool_call_id}",
        )
        if isinstance(parsed, ArgumentProblem):
            self._event(
                state,
                config,
                event="rejected",
                args=_jsonable(merged),
                error="; ".join(parsed.errors),
                **base,
            )
            return (
                p.model_copy(update={"status": "rejected", "args": _jsonable(merged), "problem": parsed}),
                _tool_msg(
                    p.tool_call_id,
                    p.tool,
                    {"status": "rejected", "reason": "edited arguments invalid: " + "; ".join(parsed.errors)},
                ),
            )
        args = parsed.model_dump(mode="json")
        evidence = frozenset(e.evidence_id for e in state.get("evidence", []))
        decision = self.policy.evaluate(
            spec.describe(parsed, principal=state.get("customer_id", ""), evidence=evidence)
        )
        self._event(
            state,
            config,
            event="edited",
            args=args,
            decision=decision.kind,
            rule_id=decision.rule_id,
            matched_rules=tuple(m.rule_id for m in decision.matched),
            detail=decision.reason,
            **base,
        )
        if isinstance(decision, Deny | Escalate):
            return (
                p.model_copy(update={"status": "denied", "args": args, "decision": decision}),
                _tool_msg(
                    p.tool_call_id,
                    p.tool,
                    {"status": "denied", "rule_id": decision.rule_id, "reason": decision.reason},
                ),
            )
        # Allow, or RequireApproval satisfied by the human who wrote these exact arguments
        return p.model_copy(
            update={"status": "approved", "args": args, "decision": decision, "approver": edit.approver}
        ), None

    def _act(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        props = list(state.get("proposals", []))
        evidence = list(state.get("evidence", []))
        replies: list[ToolMessage] = []
        streak = state.get("error_streak", 0)
        halt: Halt | None = None
        outcome: Escalated | None = None
        for i, p in enumerate(props):
            if p.status not in ("allowed", "approved"):
                continue
            spec = self.tools.get(p.tool)
            assert spec is not None
            ctx = self._ctx({**state, "evidence": evidence}, config, p.tool_call_id)  # type: ignore[typeddict-item]
            base = dict(
                tool_call_id=p.tool_call_id,
                tool=p.tool,
                tool_schema_version=spec.schema_version,
                args=p.args,
                idempotency_key=ctx.idempotency_key,
                approver=p.approver,
                approval_id=p.approval_id,
                rule_id=p.decision.rule_id if p.decision else None,
            )
            done = self.ledger.completed(ctx.idempotency_key)
            if done is None and self.ledger.started(ctx.idempotency_key) and not spec.idempotent:
                # a previous attempt began and its outcome is unknown: never repeat it blindly
                props[i] = p.model_copy(update={"status": "failed"})
                halt = Halt(
                    rule_id="act.outcome_unknown",
                    reason=f"{p.tool} may already have run (crash mid-call); a human must check",
                    action=EscalationAction.HANDOFF_TO_HUMAN,
                )
                replies.append(
                    _tool_msg(p.tool_call_id, p.tool, {"status": "error", "code": "outcome_unknown"})
                )
                continue
            if done is not None:
                payload: dict[str, Any] = {"status": "ok", "result": done.result, "replayed": True}
                props[i] = p.model_copy(update={"status": "executed"})
                replies.append(_tool_msg(p.tool_call_id, p.tool, payload))
                continue
            self._event(state, config, event="executing", **base)
            crash_point("after_intent")
            try:
                result = self._run_tool(spec, p, ctx)
                crash_point("after_tool")
            except ToolError as exc:
                streak += 1
                props[i] = p.model_copy(update={"status": "failed"})
                self._event(state, config, event="failed", error=str(exc)[:1000], **base)
                replies.append(
                    _tool_msg(
                        p.tool_call_id,
                        p.tool,
                        {"status": "error", "code": exc.code, "message": exc.message, "hint": exc.hint},
                    )
                )
                if exc.code == "timeout" and spec.effect == "write":
                    halt = Halt(
                        rule_id="tool.timeout",
                        reason=str(exc),
                        action=self.policy.escalation.on_tool_error_retries_exhausted,
                    )
                continue
            data = result.model_dump(mode="json")
            crash_point("before_completion")
            streak = 0
            props[i] = p.model_copy(update={"status": "executed"})
            if spec.yields_evidence:
                evidence.extend(e for e in getattr(result, "evidence", []) if isinstance(e, Evidence))
            self._event(
                state,
                config,
                event="executed",
                result=data,
                evidence=tuple(e["evidence_id"] for e in data.get("evidence", []))
                if spec.yields_evidence
                else (),
                **base,
            )
            replies.append(_tool_msg(p.tool_call_id, p.tool, {"status": "ok", "result": data}))
            if spec.terminal:
                outcome = Escalated(
                    action=EscalationAction.HANDOFF_TO_HUMAN,
                    rule_id=f"tools.{p.tool}",
                    reason=str(p.args.get("reason", "handed off")),
                    summary=str(p.args.get("summary", "")),
                    ticket_id=data.get("ticket_id"),
                )
        if halt is None and outcome is None and streak > self.policy.max_tool_error_retries:
            halt = Halt(
                rule_id="agent.max_tool_error_retries",
                reason=f"{streak} failed tool calls in a row (limit {self.policy.max_tool_error_retries})",
                action=self.policy.escalation.on_tool_error_retries_exhausted,
            )
        if outcome is not None:
            halt = Halt(rule_id=outcome.rule_id, reason=outcome.reason, action=outcome.action)
        return {
            "proposals": props,
            "messages": replies,
            "evidence": evidence,
            "error_streak": streak,
            "halt": halt,
            "outcome": outcome,
        }

    def _run_tool(self, spec: Any, p: Proposal, ctx: ToolContext) -> Any:
        parsed = spec.args_model.model_validate(p.args)
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(spec.run, parsed, ctx)
        try:
            return future.result(timeout=self.tool_timeout_seconds)
        except FutureTimeout:
            raise ToolError(
                code="timeout",
                message=f"{spec.name} did not finish in {self.tool_timeout_seconds:g}s; "
                "its outcome is unknown and it will not be retried automatically",
            ) from None
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(
                code="tool_failed", message=f"{spec.name} failed: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        finally:
            pool.shutdown(wait=False)

    def _after_act(self, state: WorkflowState) -> str:
        return "escalate" if state.get("halt") else "reasoning"

    def _escalate(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        halt = state.get("halt")
        assert halt is not None
        outcome = state.get("outcome")
        if not isinstance(outcome, Escalated):
            request = next(
                (str(m.content) for m in reversed(state.get("messages", [])) if isinstance(m, HumanMessage)),
                "",
            )
            actions = [f"{p.tool}:{p.status}" for p in state.get("proposals", [])]
            outcome = Escalated(
                action=halt.action,
                rule_id=halt.rule_id,
                reason=halt.reason,
                summary=f"request: {request[:300]!r}; route: {state.get('route', '?')}; "
                f"last actions: {', '.join(actions) or 'none'}; stopped: {halt.reason}",
            )
        answered = {m.tool_call_id for m in state.get("messages", []) if isinstance(m, ToolMessage)}
        closing: list[AnyMessage] = []
        for m in state.get("messages", []):
            if isinstance(m, AIMessage):
                for tc in m.tool_calls:
                    if tc["id"] and tc["id"] not in answered:
                        closing.append(
                            _tool_msg(tc["id"], tc["name"], {"status": "not_executed", "reason": halt.reason})
                        )
        text = {
            EscalationAction.HANDOFF_TO_HUMAN: "I've handed this to a colleague who will follow up.",
            EscalationAction.HALT: "I had to stop here.",
            EscalationAction.ASK_USER: "I need more information from you to continue.",
        }[outcome.action]
        closing.append(AIMessage(content=f"{text} ({outcome.reason})"))
        self._event(
            state,
            config,
            event="escalated",
            rule_id=outcome.rule_id,
            detail=outcome.summary[:2000],
            result=outcome.model_dump(mode="json"),
        )
        return {"outcome": outcome, "messages": closing}

    def _respond(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        answer = str(last.content)
        self._event(state, config, event="responded", detail=answer[:2000], model_id=self.model_id)
        return {"outcome": Resolved(answer=answer)}


def parse_decision(raw: object) -> Approve | Reject | Edit:
    """Validate a resume payload (a decision object or its JSON form)."""
    return _DECISION.validate_python(raw.model_dump() if hasattr(raw, "model_dump") else raw)


def crash_point(name: str) -> None:
    """Kill the process here when ``TETHER_CRASH_AT`` names this point (crash tests only)."""
    if os.environ.get("TETHER_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


_ROUTE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "route",
        "description": "Pick the route for the user's request.",
        "parameters": {
            "type": "object",
            "properties": {"route": {"type": "string"}},
            "required": ["route"],
        },
    },
}


def _jsonable(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(dict(raw), default=str))
    return out


def _tool_msg(call_id: str, name: str, payload: Mapping[str, Any]) -> ToolMessage:
    status = "success" if payload.get("status") == "ok" else "error"
    return ToolMessage(content=_content(payload), tool_call_id=call_id, name=name, status=status)
