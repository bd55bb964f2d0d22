"""When the ledger rows a node appends are committed (group commit).

Rows are held in memory and committed together, in one transaction:

- at the end of each node, when the run's checkpoints outlive the process (a SQLite file, a
  PostgreSQL database): a crash can then lose only rows of a step that LangGraph runs again from
  its last checkpoint;
- at the end of the run, when they do not (no checkpointer, or an in-memory one): a crash loses
  the run itself, so rows of earlier steps are carried from node to node and committed when the
  run responds, escalates, pauses for a human, or a node fails;
- at once, with every row held before them, for what a write does: a write's intent is
  committed (and synced) before its side effect, with the decision rows that admitted it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from tether.checkpoints.columns import now
from tether.checkpoints.ledger import Ledger, LedgerEvent

__all__ = ["Held", "flush_carried", "grouped_rows", "held_rows"]


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

_CARRIED: weakref.WeakKeyDictionary[Ledger, dict[str, Held]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def held_rows() -> Held | None:
    """The rows held for the node running now (``None``: outside a node, commit at once)."""
    return _PENDING.get()


def _volatile(config: RunnableConfig) -> bool:
    saver = config.get("configurable", {}).get(_CHECKPOINTER)
    return saver is None or isinstance(saver, InMemorySaver)


def _thread(config: RunnableConfig) -> str:
    return str(config.get("configurable", {}).get("thread_id", "default"))


def _carried(ledger: Ledger, config: RunnableConfig) -> Held | None:
    """The rows carried between the nodes of this run (``None``: its checkpoints are durable)."""
    if not _volatile(config):
        return None
    with _LOCK:
        return _CARRIED.setdefault(ledger, {}).setdefault(_thread(config), Held())


def _commit(ledger: Ledger, rows: Held, thread: str | None) -> None:
    """Commit ``rows`` (all or none) and empty the list; a carried list is then forgotten."""
    rows.commit(ledger)
    if thread is not None:
        with _LOCK:
            threads = _CARRIED.get(ledger, {})
            if threads.get(thread) is rows:
                del threads[thread]


@contextmanager
def grouped_rows(ledger: Ledger, config: RunnableConfig, *, final: bool = False) -> Iterator[None]:
    """Hold the rows appended inside, and commit them when the node ends (see the module's
    docstring); ``final``: the run ends (or pauses) with this node, commit what was carried too."""
    carried = _carried(ledger, config)
    rows = carried if carried is not None else Held()
    token = _PENDING.set(rows)
    done = False
    try:
        yield
        done = True
    finally:
        _PENDING.reset(token)
        if carried is None:
            _commit(ledger, rows, None)
        elif final or not done:
            _commit(ledger, rows, _thread(config))


def flush_carried(ledger: Ledger, thread_id: str | None = None) -> None:
    """Commit the rows carried for ``thread_id`` (every thread: ``None``): a run that stopped
    between nodes (an error raised by LangGraph itself) leaves them behind."""
    with _LOCK:
        threads = dict(_CARRIED.get(ledger, {}))
    for thread, rows in threads.items():
        if thread_id is None or thread == thread_id:
            _commit(ledger, rows, thread)
