"""The governed workflow: a plain LangGraph ``StateGraph`` with explicit guard nodes.

    START -> router -> reasoning -> policy_check -> human_interrupt -> act -> reasoning ...
                           |              |                                 |
                           +-> respond    +-> escalate                      +-> escalate
    respond / escalate -> END

* ``router``: a cheap model (or the local ``CentroidRouter``) picks the route; the route
  decides which tools are offered. With a centroid router and a cheap model, an easy request
  judged with confidence is reasoned about by the cheap model (``graphs.routing``); the
  decision is the ``routed`` row's ``result``. Earlier runs on the thread are folded into
  structured memory here.
* ``reasoning``: the chosen model proposes tool calls or answers. Spend is checked first;
  provider errors fall back to ``fallback_model`` (``graphs.fallback``).
* ``policy_check`` / ``human_interrupt``: see ``graphs.guard_nodes``.
* ``act``: the only place side effects happen; see ``graphs.act_node``.
* ``escalate`` / ``respond``: terminal, each with a typed outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from tether.errors import PolicyFileError, WorkflowError
from tether.graphs.act_node import ActNode
from tether.graphs.base import CLOSINGS, Route
from tether.graphs.envelope import ENVELOPE_NOTICE
from tether.graphs.fallback import CallOutcome, call_with_fallback
from tether.graphs.messages import checkpoint_safe, route_tool, tool_reply
from tether.graphs.nodes import grouped, routed, timed
from tether.graphs.routing import RoutingDecision
from tether.graphs.rows import flush_carried
from tether.graphs.state import (
    Escalated,
    Halt,
    HaltView,
    Memory,
    ReasonedView,
    Resolved,
    TurnSummary,
    WorkflowState,
)
from tether.graphs.tracing import run_id_for
from tether.guards.budgets import Usage
from tether.guards.context import Subject
from tether.guards.context_checks import ToolShape, check_against_tools
from tether.guards.decisions import EscalationAction
from tether.guards.screen import InjectionScreen
from tether.models import price_for

__all__ = ["MEMORY_WINDOW", "Node", "Route", "RoutedState", "Workflow"]

Node = Literal["router", "reasoning", "policy_check", "human_interrupt", "act", "escalate", "respond"]
MEMORY_WINDOW = 20
"""Earlier runs kept in structured memory; older ones are counted, not kept."""


class RoutedState(WorkflowState, total=False):
    """The workflow's state with the router's choice of reasoning model for the current run."""

    reasoning_model: str
    """Pinned id of the model that reasons about the current run (``model_id`` or ``cheap_model_id``)."""


@dataclass(frozen=True, kw_only=True)
class Workflow(ActNode):
    """Everything a governed workflow needs (fields: see ``graphs.base.NodeBase``).

    ``graph()`` returns a plain ``StateGraph``; ``compile()`` compiles it.
    """

    def __post_init__(self) -> None:
        if self.screen is None:  # an unknown classifier fails here, when the workflow is built
            object.__setattr__(self, "screen", InjectionScreen.from_policy(self.policy))
        if not self.routes:
            raise WorkflowError(workflow=self.name, reason="give at least one Route(name=..., tools=...)")
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise WorkflowError(workflow=self.name, reason=f"route names repeat: {names}")
        for route in self.routes:
            unknown = [n for n in route.tools if self.tools.get(n) is None]
            if unknown:
                known = ", ".join(self.tools.names())
                raise WorkflowError(workflow=self.name,
                                    reason=f"route {route.name!r} offers unknown tools {unknown}; tools: {known}")
        for role, model in (("router_model", self.router_model), ("model", self.model)):
            try:
                model.bind_tools([])
            except NotImplementedError:
                raise WorkflowError(workflow=self.name, reason=f"{role} {type(model).__name__} cannot call tools "
                                    "(no bind_tools); offline, use tether.ScriptedChatModel or KeywordRouter") from None
        self._check_routing()
        for role, model_id in (("router_model_id", self.router_model_id), ("model_id", self.model_id),
                               ("cheap_model_id", self.cheap_model_id),
                               ("fallback_model_id", self.fallback_model_id)):
            if model_id is None:
                continue
            try:
                price_for(model_id, self.prices)  # fail at build time, not mid-run
            except Exception as exc:
                raise WorkflowError(workflow=self.name, reason=f"{role}: {exc}") from None
        shapes = {t.name: ToolShape(args=t.shape()[0], fields=t.shape()[1], record_arg=t.traits.record_arg)
                  for t in self.tools.tools}
        problems = check_against_tools(self.policy.spec, shapes)
        if problems:
            raise PolicyFileError(path=self.policy.source, problems=problems)

    def _check_routing(self) -> None:
        for role in ("cheap", "fallback"):
            model, model_id = getattr(self, f"{role}_model"), getattr(self, f"{role}_model_id")
            if (model is None) != (model_id is None):
                raise WorkflowError(workflow=self.name, reason=f"give {role}_model and {role}_model_id together")
        if self.cheap_model is not None and self.router is None:
            raise WorkflowError(workflow=self.name, reason="cheap_model needs a router that judges difficulty "
                                "(router=CentroidRouter.from_file(...))")
        if self.router is not None:
            missing = [r.name for r in self.routes if r.name not in self.router.centroids]
            unknown = sorted(set(self.router.centroids) - set(self.route_map))
            if missing or unknown:
                raise WorkflowError(workflow=self.name, reason=f"the router's examples miss routes {missing} "
                                    f"and name unknown routes {unknown}")

    def close(self) -> None:
        """Commit rows still held, and close what the workflow holds open (the limits store, and
        resources with ``close()``)."""
        self.flush_rows()
        if self.limits is not None:
            self.limits.close()
        close = getattr(self.resources, "close", None)
        if callable(close):
            close()

    def graph(self) -> StateGraph[WorkflowState]:
        g: StateGraph[WorkflowState] = StateGraph(RoutedState)  # type: ignore[arg-type]
        after_check = ("human_interrupt", "act", "reasoning", "escalate")
        steps: dict[str, tuple[Any, Callable[[Any], str], tuple[str, ...]]] = {
            "router": (timed(self.ledger, self._router, starts_run=True), self._after_router, ("reasoning", "escalate")),
            "reasoning": (timed(self.ledger, self._reasoning), self._after_reasoning,
                          ("policy_check", "respond", "escalate")),
            "policy_check": (timed(self.ledger, self._policy_check), self._after_check, after_check),
            "human_interrupt": (grouped(self.ledger, self._human_interrupt), self._after_check, after_check),
            "act": (timed(self.ledger, self._act), self._after_act, ("reasoning", "escalate")),
        }
        # every node reads the whole state (RoutedState, not only its annotation) and names the
        # node that follows it (``destinations`` draws those edges in Studio)
        for name, (fn, after, ends) in steps.items():
            node: Any = routed(fn, after)
            g.add_node(name, node, input_schema=RoutedState, destinations=ends)
        for name, fn in (("escalate", self._escalate), ("respond", self._respond)):  # the run ends here
            last: Any = grouped(self.ledger, fn, final=True)
            g.add_node(name, last, input_schema=RoutedState)
        g.add_edge(START, "router")
        g.add_edge("escalate", END)
        g.add_edge("respond", END)
        return g

    def compile(
        self, checkpointer: BaseCheckpointSaver[Any] | None = None
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        return self.graph().compile(checkpointer=checkpointer, name=self.name)

    def flush_rows(self, thread_id: str | None = None) -> None:
        """Commit ledger rows still held for a run that stopped between nodes (an error raised
        by LangGraph itself, such as its recursion limit) on ``thread_id`` (every thread: ``None``).
        Runs without durable checkpoints hold their rows until they end; ``Session`` calls this
        after every invocation, ``close()`` for every thread."""
        flush_carried(self.ledger, thread_id)

    # ------------------------------------------------------------------ router and memory

    def _router(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        messages = list(state.get("messages", []))
        request = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        subject, bad_subject = _subject(state.get("subject"))
        memory, removals = self._fold_history(state, messages, request)
        fresh: dict[str, Any] = {
            "run_id": run_id_for(config), "usage": Usage(), "proposals": [], "evidence": [],
            "error_streak": 0, "halt": None, "outcome": None, "history": [], "moved_usd": {},
            "memory": memory, "messages": removals, "subject": subject,
            "request": str(request.content) if request is not None else "",
            "designated": _designated(state.get("designate")), "designate": None,
        }
        fresh["agent"], fresh["agent_roles"] = self._agent(config)
        fresh["halt"] = bad_subject or self._refuse_input(state, request, subject)
        if fresh["halt"] is not None or request is None:
            return fresh
        fresh["thread_subject"] = subject.id if subject is not None else state.get("thread_subject")
        st: WorkflowState = {**state, **fresh}  # type: ignore[typeddict-item]
        self._event(st, config, event="run_started", detail=str(request.content)[:2000],
                    result={"prices": self._price_stamp()})
        if len(self.routes) == 1:  # nothing to choose: no model call
            decision = RoutingDecision(route=self.routes[0].name, router="single", tier="strong", model_id=self.model_id)
            fresh.update(route=decision.route, reasoning_model=decision.model_id)
            self._event(st, config, event="routed", detail=decision.route, result=decision.record())
            return fresh
        if self.router is not None:  # local embeddings: no model call, no spend
            decision = self.router.decide(str(request.content), cheap_model_id=self.cheap_model_id,
                                          strong_model_id=self.model_id)
            fresh.update(route=decision.route, reasoning_model=decision.model_id)
            self._event(st, config, event="routed", detail=decision.route, model_id=self.router.embedding_model,
                        result=decision.record())
            return fresh
        route, usage, halt = self._pick_route(request, st, config)
        fresh.update(usage=usage, halt=halt, route=route or "", reasoning_model=self.model_id)
        st["usage"] = usage
        if halt is None and route is not None:
            decision = RoutingDecision(route=route, router="llm", tier="strong", model_id=self.model_id)
            self._event(st, config, event="routed", detail=route, model_id=self.router_model_id,
                        result=decision.record())
        return fresh

    def _refuse_input(self, state: WorkflowState, request: HumanMessage | None, subject: Subject | None) -> Halt | None:
        if request is None:
            return Halt(rule_id="input.required", reason="a run needs a user message",
                        action=EscalationAction.ASK_USER)
        if subject is None and self.requires_subject:
            return Halt(rule_id="input.required", action=EscalationAction.ASK_USER,
                        reason=f"workflow {self.name!r} needs a subject (the party the run acts for)")
        bound = state.get("thread_subject")
        if bound and subject is not None and bound != subject.id:  # one subject's memory never reaches another
            return Halt(rule_id="input.subject_mismatch", action=EscalationAction.ASK_USER,
                        reason=f"this thread belongs to {bound}; start a new thread for {subject.id}")
        return None

    def _pick_route(self, request: HumanMessage, state: WorkflowState,
                    config: RunnableConfig) -> tuple[str | None, Usage, Halt | None]:
        """Ask the router model; an unknown route is shown to it as an error, with bounded retries."""
        tool = route_tool({r.name: r.description for r in self.routes})
        listing = "\n".join(f"- {r.name}: {r.description}" for r in self.routes)
        convo: list[BaseMessage] = [SystemMessage(f"Route the user's request. Routes:\n{listing}"), request]
        usage = Usage()
        for _ in range(self.max_route_retries + 1):
            got = call_with_fallback(self._candidates(self.router_model_id, router=True), convo, [tool], usage=usage,
                                     budgets=self.policy.budgets, prices=self.prices,
                                     on_fallback=self._fallback_recorder({**state, "usage": usage}, config, "router"),
                                     raise_other=True)  # a broken router is a bug, not an outage
            usage = got.usage
            if got.reply is None:
                return None, usage, self._halt_call(got, "router")
            reply = got.reply
            calls = [tc for tc in getattr(reply, "tool_calls", []) or [] if tc["name"] == "route"]
            picked = calls[0]["args"].get("route") if calls else None
            if picked in self.route_map:
                return str(picked), usage, None
            call_id = calls[0]["id"] or "route" if calls else "route"
            why = f"unknown route {picked!r}" if calls else "no route was picked"
            convo += [reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply)),
                      tool_reply(call_id, "route", {"status": "error", "message": why,
                                                    "hint": f"Use one of: {', '.join(self.route_map)}"})]
            if not calls:
                convo[-1] = HumanMessage(f"{why}; call the route tool with one of: {', '.join(self.route_map)}")
        return None, usage, Halt(rule_id="route.unknown", action=self.policy.escalation.on_tool_error_retries_exhausted,
                                 reason=f"the router picked no known route after {self.max_route_retries + 1} tries")

    def _fold_history(
        self, state: WorkflowState, messages: list[AnyMessage], request: HumanMessage | None
    ) -> tuple[Memory, list[RemoveMessage]]:
        """Fold the messages of earlier runs into structured memory and remove them from state."""
        memory = state.get("memory") or Memory()
        older = messages[: messages.index(request)] if request is not None else []
        if not older:
            return memory, []
        prior = next((m for m in older if isinstance(m, HumanMessage)), None)
        outcome = state.get("outcome")
        turn = TurnSummary(
            request=str(prior.content)[:300] if prior else "",
            route=state.get("route", "?"),
            actions=tuple(f"{a.tool}:{a.status}" for a in state.get("history", [])),
            outcome=outcome.kind if outcome else "unfinished",
        )
        turns = (*memory.turns, turn)
        seen = (*memory.evidence_seen, *(e.evidence_id for e in state.get("evidence", [])))
        memory = Memory(
            turns=turns[-MEMORY_WINDOW:],
            dropped_turns=memory.dropped_turns + max(0, len(turns) - MEMORY_WINDOW),
            evidence_seen=tuple(dict.fromkeys(seen))[-50:],
        )
        return memory, [RemoveMessage(id=m.id) for m in older if m.id]

    def _after_router(self, state: HaltView) -> str:
        return "escalate" if state.get("halt") else "reasoning"

    # ------------------------------------------------------------------ reasoning

    def _reasoning(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        usage = state.get("usage", Usage())
        route = state.get("route", "")
        offered = [t for t in (self.tools.get(n) for n in self.offered(route)) if t is not None]
        memory = state.get("memory") or Memory()
        subject = state.get("subject")
        about = f"subject: {subject.id}\n" if subject is not None else ""
        system = SystemMessage(f"{self.system_prompt}\n{ENVELOPE_NOTICE}\nroute: {route}\n{about}"
                               + memory.render())
        convo = [system, *state.get("messages", [])]
        model_id = str(state.get("reasoning_model") or self.model_id)  # type: ignore[typeddict-item]
        got = call_with_fallback(self._candidates(model_id), convo, [t.openai_schema() for t in offered],
                                 usage=usage, budgets=self.policy.budgets, prices=self.prices,
                                 on_fallback=self._fallback_recorder(state, config, "reasoning"))
        if got.reply is None:  # provider errors and timeouts with no fallback left stop the run; never guess
            return {"halt": self._halt_call(got, "reasoning"), "usage": got.usage}
        reply = got.reply
        if reply.tool_calls:  # model output must survive the checkpoint, whatever it contains
            calls = [{**tc, "args": checkpoint_safe(tc["args"])} for tc in reply.tool_calls]
            reply = reply.model_copy(update={"tool_calls": calls})
        return {"messages": [reply], "usage": got.usage, "proposals": []}

    def _halt_call(self, got: CallOutcome, role: str) -> Halt:
        """Why a model call produced no reply: the spend cap, or the last failure."""
        if got.over is not None:
            return self._halt_budget(got.over)
        failed = got.failed
        why = f"{failed.model_id}: {failed.message}" if failed is not None else "no reply"
        return Halt(rule_id="model.error", reason=f"the {role} model failed: {why}"[:300],
                    action=self.policy.escalation.on_tool_error_retries_exhausted)

    def _after_reasoning(self, state: ReasonedView) -> str:
        if state.get("halt"):
            return "escalate"
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and (last.tool_calls or last.invalid_tool_calls):
            return "policy_check"
        return "respond"

    # ------------------------------------------------------------------ terminal nodes

    def _escalate(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        halt = state.get("halt")
        assert halt is not None
        outcome = state.get("outcome")
        if not isinstance(outcome, Escalated):
            messages = state.get("messages", [])
            request = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
            done = ", ".join(f"{a.tool}:{a.status}" for a in state.get("history", [])) or "none"
            outcome = Escalated(
                action=halt.action,
                rule_id=halt.rule_id,
                reason=halt.reason,
                summary=f"request: {request[:300]!r}; route: {state.get('route', '?')}; "
                f"actions: {done}; stopped: {halt.reason}",
            )
        closing: list[AnyMessage] = [*self._unanswered(state, halt.reason)]
        text = self.closings.get(outcome.action) or CLOSINGS[outcome.action]
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

    @staticmethod
    def _unanswered(state: WorkflowState, reason: str) -> list[ToolMessage]:
        """Replies for tool calls left without one, so the history stays valid for any provider."""
        messages = state.get("messages", [])
        answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        out: list[ToolMessage] = []
        for m in messages:
            if not isinstance(m, AIMessage):
                continue
            ids = [(tc["id"] or f"call_{i}", tc["name"]) for i, tc in enumerate(m.tool_calls)]
            ids += [
                (bad.get("id") or f"invalid_{i}", bad.get("name") or "?")
                for i, bad in enumerate(m.invalid_tool_calls)
            ]
            for call_id, name in ids:
                if call_id not in answered:
                    out.append(tool_reply(call_id, name, {"status": "not_executed", "reason": reason}))
                    answered.add(call_id)
        return out

    def _respond(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        answer = str(state["messages"][-1].content)
        model_id = str(state.get("reasoning_model") or self.model_id)  # type: ignore[typeddict-item]
        self._event(state, config, event="responded", detail=answer[:2000], model_id=model_id)
        return {"outcome": Resolved(answer=answer)}


def _subject(value: object) -> tuple[Subject | None, Halt | None]:
    """The run's subject from the input (a ``Subject``, its JSON form, or nothing)."""
    if value is None or isinstance(value, Subject):
        return value, None
    try:
        return Subject.model_validate(value), None
    except ValueError as exc:
        return None, Halt(rule_id="input.invalid_subject", action=EscalationAction.ASK_USER,
                          reason=f"the subject must look like {{'id': 'S-1', 'attributes': {{...}}}}: {exc}"[:300])


def _designated(value: object) -> tuple[str, ...]:
    """The designated document ids from the run input (one id, or a list of them)."""
    items = (value,) if isinstance(value, str) else value if isinstance(value, list | tuple) else ()
    return tuple(dict.fromkeys(str(d).strip() for d in items if str(d).strip()))
