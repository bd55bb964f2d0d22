"""When a run's ledger rows are committed: per node with durable checkpoints, per run without.

The support desk runs real requests on a SQLite ledger; ``commit_mark()`` counts the ledger's
commits. Without durable checkpoints (no checkpointer, or an in-memory one) a run's rows are
carried from node to node and committed when it responds, escalates, pauses, or fails, and at
once with a write's intent; with a SQLite checkpointer each node's rows are committed when the
node ends. Either way every row is in the ledger once the run returns, with the instant it
happened, and the chain verifies.
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from tether.checkpoints.checkpointer import open_checkpointer
from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.config import Home
from tether.graphs.rows import flush_carried, grouped_rows, held_rows
from tether.graphs.workflow import Workflow
from tether.models import ScriptedChatModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import CUSTOMER, KETTLE_ORDER, build_workflow, memory_saver

READ = "How long does standard shipping take? shipping policy"
WRITE = f"I need a refund of $18 for the damaged kettle in order {KETTLE_ORDER}"
APPROVAL = f"Please refund $40 for order {KETTLE_ORDER}, the kettle arrived damaged"


@pytest.fixture
def ledger(home: Home) -> Iterator[Ledger]:
    with Ledger.open(home.ledger_url) as led:
        yield led


@pytest.fixture
def wf(home: Home, ledger: Ledger) -> Iterator[Workflow]:
    w = build_workflow(home, ledger)
    yield w
    w.close()


def _inp(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=text)], "subject": {"id": CUSTOMER}}


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 100}


def _stream(app: Any, text: str, thread: str, ledger: Ledger) -> list[tuple[str, int]]:
    """(node, rows of the thread in the ledger right after it) for each step of one run."""
    return [(node, len(ledger.events(thread)))
            for update in app.stream(_inp(text), _cfg(thread), stream_mode="updates")
            for node in update]


@pytest.mark.parametrize("saver", ["none", "memory"])
def test_without_durable_checkpoints_a_read_is_one_commit(wf: Workflow, ledger: Ledger, saver: str) -> None:
    app = wf.compile(checkpointer=memory_saver() if saver == "memory" else None)
    before = ledger.commit_mark()
    steps = _stream(app, READ, "T-read", ledger)
    assert [n for n, _ in steps][-1] == "respond"
    assert steps[0][0] == "router"
    assert all(rows == 0 for node, rows in steps if node != "respond")  # carried, not yet committed
    rows = ledger.events("T-read")
    assert steps[-1][1] == len(rows) and {"run_started", "proposed", "executed", "responded"} <= {r.event for r in rows}
    assert ledger.commit_mark() - before == 1
    stamps = [r.ts for r in rows]
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]  # when each row happened, not one stamp
    assert ledger.verify().ok


def test_without_durable_checkpoints_a_write_commits_its_decisions_with_its_intent(
        wf: Workflow, ledger: Ledger) -> None:
    app = wf.compile(checkpointer=None)
    before = ledger.commit_mark()
    out = app.invoke(_inp(WRITE), _cfg("T-write"))
    assert out["outcome"].kind == "resolved"
    rows = ledger.events("T-write")
    intent = next(i for i, r in enumerate(rows) if r.event == "executing" and r.tool == "issue_refund")
    proposed = next(i for i, r in enumerate(rows) if r.event == "proposed" and r.tool == "issue_refund")
    assert proposed < intent and rows[intent + 1].event == "executed"
    # the intent (with every row held before it), completion, the rest at the end
    assert ledger.commit_mark() - before == 3
    assert ledger.verify().ok


def test_a_pause_for_approval_commits_what_was_carried(wf: Workflow, ledger: Ledger) -> None:
    app = wf.compile(checkpointer=memory_saver())
    app.invoke(_inp(APPROVAL), _cfg("T-appr"))
    events = [r.event for r in ledger.events("T-appr")]
    assert "approval_requested" in events and events[0] == "run_started"
    assert ledger.verify().ok


def test_with_a_sqlite_checkpointer_each_node_commits_its_rows(home: Home, wf: Workflow, ledger: Ledger) -> None:
    with open_checkpointer(home.checkpoint_url) as saver:
        app = wf.compile(checkpointer=saver)
        steps = _stream(app, READ, "T-durable", ledger)
    seen = dict(steps)
    assert seen["router"] > 0  # run_started and routed are in the ledger before the next step
    assert [rows for _, rows in steps] == sorted(rows for _, rows in steps)
    assert steps[-1][1] == len(ledger.events("T-durable"))


class BrokenRouter(ScriptedChatModel):
    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        raise RuntimeError("the router is broken")


def test_a_failing_node_commits_what_was_carried(wf: Workflow, ledger: Ledger) -> None:
    app = dataclasses.replace(wf, router_model=BrokenRouter(script=[])).compile(checkpointer=None)
    with pytest.raises(RuntimeError, match="the router is broken"):
        app.invoke(_inp(READ), _cfg("T-fail"))
    assert [r.event for r in ledger.events("T-fail")] == ["run_started"]  # no flush_rows needed
    assert ledger.verify().ok


def test_a_run_stopped_between_nodes_leaves_rows_for_flush_rows(wf: Workflow, ledger: Ledger) -> None:
    app = wf.compile(checkpointer=None)
    stream = app.stream(_inp(READ), _cfg("T-stop"), stream_mode="updates")
    while "act" not in next(stream):
        pass
    stream.close()  # the caller stops the run after its first action
    assert ledger.events("T-stop") == []
    wf.flush_rows("T-stop")
    assert [r.event for r in ledger.events("T-stop")] == ["run_started", "routed", "proposed", "executing", "executed"]
    assert ledger.verify().ok


def test_rows_left_between_nodes_are_flushed_with_their_instants(ledger: Ledger) -> None:
    config: Any = _cfg("T-left")
    ev = LedgerEvent(thread_id="T-left", run_id="r", event="routed")
    with grouped_rows(ledger, config, run="r"):
        held = held_rows()
        assert held is not None
        held.hold(ev)
        stamp = held[0][1]
    assert ledger.events("T-left") == []  # carried: the run has no durable checkpoints
    with grouped_rows(ledger, config, run="r"):
        assert held_rows() is held and len(held) == 1
    with grouped_rows(ledger, config, run="r2"):  # another run on the same thread carries its own
        assert held_rows() is not held
    flush_carried(ledger, "other-thread")
    assert ledger.events("T-left") == []
    flush_carried(ledger, "T-left")
    rows = ledger.events("T-left")
    assert [r.event for r in rows] == ["routed"] and rows[0].ts == stamp
    flush_carried(ledger)  # nothing left: no commit
    assert len(ledger.events("T-left")) == 1


def test_append_many_refuses_instants_that_do_not_match(ledger: Ledger) -> None:
    ev = LedgerEvent(thread_id="T", run_id="r", event="routed")
    with pytest.raises(ValueError, match="2 events but 1 instants"):
        ledger.append_many([ev, ev], at=["2026-01-01T00:00:00.000000+00:00"])
    assert ledger.events("T") == []


Step = tuple[str, list[str]]
"""A node: how it ends (``ok``, ``final``, ``fails``) and the rows it appends (``held``,
``durable``, ``immediate``)."""

steps = st.lists(st.tuples(st.sampled_from(["ok", "final", "fails"]),
                           st.lists(st.sampled_from(["held", "held", "durable", "immediate"]), max_size=4)),
                 min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, durable_checkpoints=st.booleans())
def test_every_row_is_committed_once_in_order_whatever_the_nodes_do(
        wf: Workflow, ledger: Ledger, plan: list[Step], durable_checkpoints: bool) -> None:
    thread = f"T-prop-{uuid.uuid4().hex[:8]}"
    config: Any = _cfg(thread)
    if durable_checkpoints:  # what LangGraph hands a node of a run with a SQLite checkpointer
        config["configurable"]["__pregel_checkpointer"] = object()
    state: Any = {"run_id": "r1"}
    appended: list[str] = []
    last_flush = 0  # rows appended up to the last point where all of them must be committed
    for n, (end, rows) in enumerate(plan):
        try:
            # the first node starts the run (as the router does): its id is known only at its end
            with grouped_rows(wf.ledger, config, run=None if n == 0 else "r1", final=end == "final") as group:
                group.started = "r1" if n == 0 else None
                for i, kind in enumerate(rows):
                    appended.append(f"{n}.{i}")
                    wf._event(state, config, event="routed", detail=appended[-1],
                              durable=kind == "durable", immediate=kind == "immediate")
                    if kind != "held":
                        last_flush = len(appended)
                if end == "fails":
                    raise RuntimeError("node failed")
        except RuntimeError:
            pass
        if durable_checkpoints or end != "ok":
            last_flush = len(appended)
        committed = [r.detail for r in ledger.events(thread)]
        assert committed == appended[:len(committed)]  # in order, never twice
        assert len(committed) >= last_flush  # nothing that had to be committed is missing
    wf.flush_rows(thread)
    rows = ledger.events(thread)
    assert [r.detail for r in rows] == appended
    stamps = [r.ts for r in rows]
    assert stamps == sorted(stamps)
    assert ledger.verify().ok


def _events_by_run(ledger: Ledger, thread: str) -> list[list[str]]:
    runs: dict[str, list[str]] = {}
    for r in ledger.events(thread):
        runs.setdefault(r.run_id, []).append(f"{r.event}:{r.tool or ''}")
    return sorted(runs.values())


def test_runs_sharing_a_thread_id_never_mix_or_lose_rows(wf: Workflow, ledger: Ledger) -> None:
    """Without a checkpointer, concurrent runs may share a thread id (or have none): each run
    carries and commits its own rows, in its own order, whether the runs interleave node by
    node or run at once in several threads."""
    app = wf.compile(checkpointer=None)
    for text, thread in ((READ, "ref-read"), (WRITE, "ref-write")):
        app.invoke(_inp(text), _cfg(thread))
    ref = {"read": _events_by_run(ledger, "ref-read")[0], "write": _events_by_run(ledger, "ref-write")[0]}
    a = app.stream(_inp(READ), _cfg("shared"), stream_mode="updates")
    b = app.stream(_inp(WRITE), _cfg("shared"), stream_mode="updates")
    for stream in (a, b) * 20:  # node by node, in turn
        next(stream, None)
    assert _events_by_run(ledger, "shared") == sorted([ref["read"], ref["write"]])
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda text: app.invoke(_inp(text), _cfg("busy")), [READ, WRITE] * 4))
    assert _events_by_run(ledger, "busy") == sorted([ref["read"], ref["write"]] * 4)
    assert ledger.verify().ok
