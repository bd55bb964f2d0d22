"""When the ledger rows a node appends are committed (group commit).

Rows are held in memory and committed together, in one transaction:

- at the end of each node, when the run's checkpoints outlive the process (a SQLite file, a
  PostgreSQL database): a crash can then lose only rows of a step that LangGraph runs again from
  its last checkpoint;
- at the end of the run, when they do not (no checkpointer, or an in-memory one): a crash loses
  the run itself, so a run's rows are carried from node to node (keyed by run: runs without a
  checkpointer may share a thread id) and committed when the run responds, escalates,
  pauses for a human, or a node fails;
- at once, with every row held before them, for what a write does: a write's intent is
  committed (and synced) before its side effect, with the decision rows that admitted it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from tether.checkpoints.columns import now
from tether.checkpoints.ledger import Ledger, LedgerEvent

__all__ = ["Group", "Held", "flush_carried", "grouped_rows", "held_rows"]


class Held(list[tuple[LedgerEvent, str]]):
    """Rows held for one commit, each with the instant it was appended (its ``ts``)."""

    def hold(self, ev: LedgerEvent) -> None:
        self.append((ev, now()))

    def commit(self, ledger: Ledger, *also: LedgerEvent, durable: bool = False) -> None:
        """Commit the held rows and ``also`` (stamped now) in one transaction, then forget them."""
        if self or also:
            ledger.append_many([e for e, _ in self] + list(also), durable=durable,
                               at=[t for _, t in self] + [now()] * len(also))
        self.clear()


_PENDING: ContextVar[Held | None] = ContextVar("tether_pending_rows", default=None)

_CHECKPOINTER = "__pregel_checkpointer"
"""Where LangGraph puts the run's checkpointer in a task's configuration."""

_CARRIED: weakref.WeakKeyDictionary[Ledger, dict[tuple[str, str], Held]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def held_rows() -> Held | None:
    """The rows held for the node running now (``None``: outside a node, commit at once)."""
    return _PENDING.get()


def _volatile(config: RunnableConfig) -> bool:
    saver = config.get("configurable", {}).get(_CHECKPOINTER)
    return saver is None or isinstance(saver, InMemorySaver)


def _thread(config: RunnableConfig) -> str:
    return str(config.get("configurable", {}).get("thread_id", "default"))


_Key = tuple[str, str]
"""Carried rows belong to one run: (thread id, run id). Runs without a checkpointer may share
a thread id (or have none), so the thread alone would mix concurrent runs."""


def _carried(ledger: Ledger, key: _Key | None) -> Held | None:
    """The rows carried between the nodes of run ``key`` (``None``: nothing is carried)."""
    if key is None:
        return None
    with _LOCK:
        return _CARRIED.setdefault(ledger, {}).setdefault(key, Held())


def _commit(ledger: Ledger, rows: Held, key: _Key | None) -> None:
    """Commit ``rows`` (all or none) and empty the list; a carried list is then forgotten."""
    rows.commit(ledger)
    if key is not None:
        with _LOCK:
            runs = _CARRIED.get(ledger, {})
            if runs.get(key) is rows:
                del runs[key]


@dataclass(kw_only=True, slots=True)
class Group:
    """The node's group of rows; a node that starts a run names it in ``started`` (before the
    node ends), and its rows are then carried into that run instead of committed at once."""

    started: str | None = None


@contextmanager
def grouped_rows(ledger: Ledger, config: RunnableConfig, *, run: str | None = None,
                 final: bool = False) -> Iterator[Group]:
    """Hold the rows appended inside, and commit them when the node ends (see the module's
    docstring). ``run``: the run the node belongs to, whose rows are carried on when its
    checkpoints are not durable (``None``: a node that starts a run, see ``Group``);
    ``final``: the run ends (or pauses) with this node, commit what was carried too."""
    volatile = _volatile(config)
    key = (_thread(config), run) if run is not None and volatile else None
    carried = _carried(ledger, key)
    rows = carried if carried is not None else Held()
    group = Group()
    token = _PENDING.set(rows)
    done = False
    try:
        yield group
        done = True
    finally:
        _PENDING.reset(token)
        if carried is not None:
            if final or not done:
                _commit(ledger, rows, key)
        elif done and volatile and group.started is not None and not final:
            target = _carried(ledger, (_thread(config), group.started))
            assert target is not None
            target.extend(rows)  # with their instants, into the run this node started
        else:
            _commit(ledger, rows, None)


def flush_carried(ledger: Ledger, thread_id: str | None = None) -> None:
    """Commit the rows carried for the runs of ``thread_id`` (every thread: ``None``): a run
    that stopped between nodes (an error raised by LangGraph itself) leaves them behind."""
    with _LOCK:
        runs = dict(_CARRIED.get(ledger, {}))
    for key, rows in runs.items():
        if thread_id is None or key[0] == thread_id:
            _commit(ledger, rows, key)
