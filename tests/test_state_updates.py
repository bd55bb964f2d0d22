"""A node's update leaves out values it hands back unchanged; the run is the same either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import (
    KETTLE_ORDER,
    REFUND_EVIDENCE,
    answer,
    build_workflow,
    call,
    memory_saver,
    pending,
    resume,
    start,
    state,
)
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage

from tether.checkpoints.ledger import Ledger
from tether.config import Home
from tether.graphs import nodes
from tether.graphs.state import Approve, Halt, unchanged_dropped
from tether.guards.decisions import EscalationAction

SCRIPT = [
    call("search_policy", {"query": "refund damaged item"}, "s1"),
    call("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 40.0, "reason": "damaged",
                          "citation_ids": [REFUND_EVIDENCE]}, "r1"),
    answer("Refunded."),
]
PLAIN = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
                     lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


def test_equal_values_are_dropped_and_everything_else_kept() -> None:
    halt = Halt(rule_id="r", reason="x", action=EscalationAction.HALT)
    before = {"error_streak": 0, "halt": None, "route": "refunds", "history": [halt], "moved_usd": {"a": 1.0},
              "messages": [HumanMessage("hi")]}
    out = unchanged_dropped({"error_streak": 0, "halt": None, "route": "refunds", "history": [halt],
                             "moved_usd": {"a": 1.0}, "messages": [], "outcome": None}, before)
    assert out == {"outcome": None}  # adding no messages is no write; outcome was not in the state
    added = unchanged_dropped({"messages": [HumanMessage("hi")], "route": "refunds"}, before)
    assert list(added) == ["messages"]  # a reducer's write is an instruction: kept, even if equal
    kept = unchanged_dropped({"error_streak": False, "moved_usd": {"a": 1}, "halt": halt, "route": "other"}, before)
    assert kept == {"error_streak": False, "moved_usd": {"a": 1}, "halt": halt, "route": "other"}


@given(old=PLAIN, new=PLAIN)
def test_a_value_is_dropped_only_when_it_equals_the_state_exactly(old: Any, new: Any) -> None:
    out = unchanged_dropped({"route": new}, {"route": old})
    if "route" not in out:  # dropped: the same types and values all the way down
        assert repr(new) == repr(old) and type(new) is type(old)
    else:
        assert out["route"] is new and (repr(new) != repr(old) or "nan" in repr(new))


def _run(home: Home, monkeypatch: pytest.MonkeyPatch, *, prune: bool) -> tuple[dict[str, Any], list[str]]:
    dropped: list[str] = []

    def counting(out: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        before = dict(out)
        kept = unchanged_dropped(out, state) if prune else out
        dropped.extend(k for k in before if k not in kept)
        assert all(not before[k] for k in before if k == "messages" and k not in kept)  # only empty ones
        return kept

    monkeypatch.setattr(nodes, "unchanged_dropped", counting)
    with Ledger.open(home.ledger_url) as ledger:
        app = build_workflow(home, ledger, script=SCRIPT).compile(checkpointer=memory_saver())
        start(app, "I need a refund of $40 for the damaged kettle in order O-20417", "t")
        assert len(pending(app, "t")) == 1
        resume(app, "t", Approve(approver="lead@example.com"))
        final = state(app, "t")
        kinds = [r.event for r in ledger.events("t")]
    monkeypatch.undo()
    assert bool(dropped) == prune and ("messages" in dropped) == prune
    return final, kinds


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if k not in ("messages", "usage", "run_id")}
    out["messages"] = [(type(m).__name__, m.content) for m in values["messages"]]
    out["usage"] = values["usage"].model_copy(update={"active_seconds": 0.0})
    return out


def test_a_run_ends_in_the_same_state_and_ledger_with_and_without_dropping(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pruned, pruned_kinds = _run(Home(root=tmp_path / "a").ensure(), monkeypatch, prune=True)
    full, full_kinds = _run(Home(root=tmp_path / "b").ensure(), monkeypatch, prune=False)
    assert pruned_kinds == full_kinds and "executed" in pruned_kinds
    assert _comparable(pruned).keys() == _comparable(full).keys()
    for key, value in _comparable(full).items():
        assert _comparable(pruned)[key] == value, key
