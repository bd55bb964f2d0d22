"""What wraps a workflow's node functions into LangGraph nodes.

``timed`` counts a node's run time against the wall-clock budget and groups its ledger rows;
``grouped`` groups the rows of an untimed node; ``routed`` makes a node name the node after it
(``Command(goto=...)``) instead of leaving that to a conditional edge, which LangGraph would
hand a fresh copy of every channel of the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from tether.checkpoints.ledger import Ledger
from tether.graphs.rows import grouped_rows
from tether.graphs.state import WorkflowState, unchanged_dropped
from tether.guards.budgets import Usage

__all__ = ["NodeFn", "grouped", "routed", "timed"]

NodeFn = Callable[[WorkflowState, RunnableConfig], dict[str, Any]]
"""A node function: the state and the run's configuration in, a state update out."""


def timed(ledger: Ledger, fn: NodeFn, *, starts_run: bool = False) -> NodeFn:
    """``fn`` with its run time added to the run's ``usage`` (the wall-clock budget), its rows
    grouped (``graphs.rows``) and its unchanged values dropped from its update (``starts_run``:
    the node starts a new run, whose id is in its update, not yet in the state)."""

    def node(state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        t0 = time.perf_counter()
        with grouped_rows(ledger, config, run=None if starts_run else state.get("run_id")) as group:
            out = fn(state, config)
            if starts_run:
                group.started = out.get("run_id")
        usage = out.get("usage", state.get("usage", Usage()))
        out["usage"] = usage.add(seconds=time.perf_counter() - t0)
        return unchanged_dropped(out, state)

    node.__name__ = fn.__name__.lstrip("_")
    return node


def grouped(ledger: Ledger, fn: NodeFn, *, final: bool = False) -> NodeFn:
    """An untimed node with its rows grouped like a timed node's (``final``: the run ends with
    it; pausing in it commits what is held, too)."""

    def node(state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        with grouped_rows(ledger, config, run=state.get("run_id"), final=final):
            return fn(state, config)

    node.__name__ = fn.__name__.lstrip("_")
    return node


def routed(fn: NodeFn, after: Callable[[Any], str]) -> Callable[[WorkflowState, RunnableConfig], Command[str]]:
    """A node that names the node after it, decided by ``after`` on the state as the node's
    update leaves it (``halt``, ``proposals`` and the last message: see ``as_updated``)."""

    def node(state: WorkflowState, config: RunnableConfig) -> Command[str]:
        out = fn(state, config)
        return Command(update=out, goto=after(as_updated(state, out)))

    node.__name__ = getattr(fn, "__name__", "node")
    return node


def as_updated(state: WorkflowState, out: dict[str, Any]) -> dict[str, Any]:
    """What routing reads (``halt``, ``proposals``, the last message), with ``out`` applied."""
    added = [m for m in out.get("messages") or () if not isinstance(m, RemoveMessage)]
    return {"halt": out.get("halt", state.get("halt")), "proposals": out.get("proposals", state.get("proposals", [])),
            "messages": added[-1:] or state.get("messages", [])[-1:]}
