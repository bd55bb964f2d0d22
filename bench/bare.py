"""A bare LangGraph graph with the same shape as a governed workflow, for like-for-like baselines.

Same nodes and edges (router -> reasoning -> policy_check -> human_interrupt -> act -> ... ->
respond), the same models, prompts, tool functions and business database, the same
checkpointer; none of tether's governance: the policy-check node passes everything, the
human-interrupt node pauses only where ``needs_human`` says, the act node calls the tool
function directly, and there is no ledger, budget, envelope, screen or provenance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from tether import Subject, ToolContext, Workflow

NeedsHuman = Callable[[str, Mapping[str, Any]], bool]


class BareState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    route: str
    subject: str
    approved: bool


def bare_graph(wf: Workflow, *, needs_human: NeedsHuman = lambda tool, args: False) -> StateGraph[Any]:
    """The ungoverned twin of ``wf``'s graph (compile it with the same checkpointer)."""
    listing = "\n".join(f"- {r.name}: {r.description}" for r in wf.routes)
    route_tool = {"type": "function", "function": {
        "name": "route", "description": "Pick the route for the user's request.",
        "parameters": {"type": "object", "properties": {"route": {"enum": [r.name for r in wf.routes]}},
                       "required": ["route"]}}}
    router = wf.router_model.bind_tools([route_tool])

    def route(state: BareState) -> dict[str, Any]:
        request = next(m for m in reversed(state["messages"]) if isinstance(m, HumanMessage))
        reply = router.invoke([SystemMessage(f"Route the user's request. Routes:\n{listing}"), request])
        calls = [tc for tc in reply.tool_calls if tc["name"] == "route"]
        return {"route": calls[0]["args"]["route"] if calls else wf.routes[-1].name, "approved": False}

    def reasoning(state: BareState) -> dict[str, Any]:
        offered = [t for t in (wf.tools.get(n) for n in wf.offered(state["route"])) if t is not None]
        system = SystemMessage(f"{wf.system_prompt}\nroute: {state['route']}\nsubject: {state.get('subject')}\n")
        bound = wf.model.bind_tools([t.openai_schema() for t in offered])
        return {"messages": [bound.invoke([system, *state["messages"]])]}

    def policy_check(state: BareState) -> dict[str, Any]:
        return {}

    def human_interrupt(state: BareState) -> dict[str, Any]:
        return {"approved": bool(interrupt({"calls": state["messages"][-1].tool_calls}))}

    def act(state: BareState, config: RunnableConfig) -> dict[str, Any]:
        out = []
        for tc in state["messages"][-1].tool_calls:
            spec = wf.tools.get(tc["name"])
            if spec is None:
                out.append(ToolMessage("unknown tool", tool_call_id=tc["id"], name=tc["name"]))
                continue
            thread = str(config["configurable"]["thread_id"])
            ctx = ToolContext(subject=Subject(id=state.get("subject") or "-"), thread_id=thread, run_id=thread,
                              tool_call_id=tc["id"], idempotency_key=f"bare:{thread}:{tc['id']}",
                              resources=wf.resources)
            try:
                result = spec.run(spec.args_model.model_validate(tc["args"]), ctx)
                res = {"status": "ok", "result": result.model_dump(mode="json") if hasattr(result, "model_dump")
                       else result}
            except Exception as exc:  # the bare loop shows errors to the model, like most agents do
                res = {"status": "error", "message": str(exc)}
            out.append(ToolMessage(json.dumps(res, default=str), tool_call_id=tc["id"], name=tc["name"]))
        return {"messages": out}

    def respond(state: BareState) -> dict[str, Any]:
        return {}

    def after_reasoning(state: BareState) -> str:
        return "policy_check" if state["messages"][-1].tool_calls else "respond"

    def after_check(state: BareState) -> str:
        calls = state["messages"][-1].tool_calls
        if not state.get("approved") and any(needs_human(tc["name"], tc["args"]) for tc in calls):
            return "human_interrupt"
        return "act"

    g: StateGraph[Any] = StateGraph(BareState)
    for name, fn in (("router", route), ("reasoning", reasoning), ("policy_check", policy_check),
                     ("human_interrupt", human_interrupt), ("act", act), ("respond", respond)):
        g.add_node(name, fn)
    g.add_edge(START, "router")
    g.add_edge("router", "reasoning")
    g.add_conditional_edges("reasoning", after_reasoning, ["policy_check", "respond"])
    g.add_conditional_edges("policy_check", after_check, ["human_interrupt", "act"])
    g.add_edge("human_interrupt", "act")
    g.add_edge("act", "reasoning")
    g.add_edge("respond", END)
    return g
