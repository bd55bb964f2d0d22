"""Overhead of tether's governance against bare LangGraph, measured in the same run.

Both sides run the same offline models and the same tool functions on the same business
database, for the same requests. Bare LangGraph: a StateGraph "model -> tools -> model" loop
with an in-memory checkpointer and no policy, budgets or ledger. tether: the full support-desk
workflow (router, policy check, approvals, ledger on SQLite) with an in-memory checkpointer,
and again with the SQLite checkpointer. Prints time per request, peak traced memory, and the
ratios tether / bare.

    python bench/overhead.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from tether.agents.support.desk import KB_DIR, SUPPORT_ROUTES, support_workflow
from tether.agents.support.models import OfflineSupportModel, support_router
from tether.agents.support.tools import SupportResources, build_support_tools
from tether.agents.support.world import connect_world
from tether.checkpoints.checkpointer import open_checkpointer, serializer
from tether.checkpoints.ledger import Ledger
from tether.config import Home
from tether.guards.context import Subject
from tether.models import ModelConfig
from tether.retrieval.knowledge import KnowledgeBase
from tether.tools.base import ToolContext

REQUESTS = [
    "I need a refund of $18 for the damaged kettle in order O-20417",
    "Please update my phone to +1-555-0199",
    "What did I order last month?",
    "How long does standard shipping take? shipping policy",
]


class BareState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    route: str


def bare_graph(db: Any) -> Any:
    tools = build_support_tools()
    resources = SupportResources(db=db, kb=KnowledgeBase.from_dir(KB_DIR))
    routes = {r.name: r.tools for r in SUPPORT_ROUTES}
    router, model = support_router(), OfflineSupportModel()

    def route(state: BareState) -> dict[str, Any]:
        msg = router.invoke(state["messages"][-1:])
        return {"route": msg.tool_calls[0]["args"]["route"]}

    def think(state: BareState) -> dict[str, Any]:
        offered = [tools.get(n) for n in routes[state["route"]]]
        bound = model.bind_tools([t.openai_schema() for t in offered if t])
        return {"messages": [bound.invoke([SystemMessage(f"route: {state['route']}"), *state["messages"]])]}

    def act(state: BareState) -> dict[str, Any]:
        out = []
        for tc in state["messages"][-1].tool_calls:
            spec = tools.get(tc["name"])
            assert spec is not None
            ctx = ToolContext(
                subject=Subject(id="C-1042"),
                thread_id="b",
                run_id="b",
                tool_call_id=tc["id"],
                idempotency_key=f"bare:{time.perf_counter_ns()}",
                resources=resources,
            )
            try:
                res = {
                    "status": "ok",
                    "result": spec.run(spec.args_model.model_validate(tc["args"]), ctx).model_dump(
                        mode="json"
                    ),
                }
            except Exception as exc:
                res = {"status": "error", "message": str(exc)}
            out.append(ToolMessage(json.dumps(res), tool_call_id=tc["id"], name=tc["name"]))
        return {"messages": out}

    g = StateGraph(BareState)
    g.add_node("route", route)
    g.add_node("think", think)
    g.add_node("act", act)
    g.add_edge(START, "route")
    g.add_edge("route", "think")
    g.add_conditional_edges("think", lambda s: "act" if s["messages"][-1].tool_calls else END, ["act", END])
    g.add_edge("act", "think")
    return g.compile(checkpointer=InMemorySaver(serde=serializer()))


def measure(app: Any, n: int, start: Any) -> tuple[float, float]:
    tracemalloc.start()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        app.invoke(start(REQUESTS[i % len(REQUESTS)]), {"configurable": {"thread_id": f"t{i}"}})
        times.append(time.perf_counter() - t0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times) * 1000, peak / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    n = ap.parse_args().requests
    root = Path(tempfile.mkdtemp())
    home = Home(root=root / "home").ensure()
    bare_db = connect_world(root / "bare.sqlite")
    bare = bare_graph(bare_db)

    def start_bare(text: str) -> dict[str, Any]:
        return {"messages": [HumanMessage(text)]}

    def start_tether(text: str) -> dict[str, Any]:
        return {"messages": [HumanMessage(text)], "subject": {"id": "C-1042"}}

    measure(bare, 8, start_bare)  # warm-up imports and caches on both sides
    with Ledger.open(home.ledger_url) as ledger:
        wf = support_workflow(home=home, ledger=ledger, models=ModelConfig())
        mem_app = wf.compile(checkpointer=InMemorySaver(serde=serializer()))
        measure(mem_app, 8, start_tether)
        b_ms, b_mb = measure(bare, n, start_bare)
        t_ms, t_mb = measure(mem_app, n, start_tether)
        with open_checkpointer(home.checkpoint_url) as saver:
            s_ms, s_mb = measure(wf.compile(checkpointer=saver), n, start_tether)
    print(f"requests per side: {n} (mix of {len(REQUESTS)} support requests)")
    print(f"{'':34}{'median ms/request':>18}{'peak MB':>10}{'time x':>9}{'mem x':>8}")
    print(f"{'bare LangGraph (in-memory)':34}{b_ms:18.2f}{b_mb:10.1f}{1:9.2f}{1:8.2f}")
    print(
        f"{'tether (in-memory checkpoints)':34}{t_ms:18.2f}{t_mb:10.1f}{t_ms / b_ms:9.2f}{t_mb / b_mb:8.2f}"
    )
    print(f"{'tether (SQLite checkpoints)':34}{s_ms:18.2f}{s_mb:10.1f}{s_ms / b_ms:9.2f}{s_mb / b_mb:8.2f}")


if __name__ == "__main__":
    main()
