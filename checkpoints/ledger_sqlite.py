"""SQLite ledger backend (the default): one file, WAL mode, ``BEGIN IMMEDIATE`` writes.

A write transaction takes SQLite's database-wide write lock, so appends from any number of
processes are serialized and each new row links to the true head.

Commits run with ``synchronous=NORMAL``: in WAL mode a commit is safe from a process crash at
once and costs no fsync; a durable one (``_write(durable=True)``, ``sync()``) switches to
``FULL`` for that commit, whose single fdatasync of the log also makes every earlier commit
durable, since the log is written in order.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tether.checkpoints.chain import GENESIS
from tether.checkpoints.ledger import _BATCH, _INSERT, Ledger, Query
from tether.checkpoints.migrations import migrate
from tether.checkpoints.vouch import (
    Range,
    Verdict,
    check_range,
    range_checkers,
    ranges,
    sqlite_json_array,
    vouched,
)
from tether.errors import LedgerError

__all__ = ["SqliteLedger"]


_CHECK_BATCH = 20_000
"""Rows ``verify`` checks as one range."""
_PARALLEL_FROM = 100_000
"""Rows from which ``verify`` checks ranges in worker processes (each costs a start of Python)."""
_WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class SqliteLedger(Ledger):
    """SQLite-backed ledger; open with ``Ledger.open("sqlite:///PATH")`` or a plain path."""

    def __init__(self, conn: sqlite3.Connection, *, url: str) -> None:
        self._db = conn
        self._lock = threading.RLock()
        self._commits = 0
        self._durable_at = 0
        """``_commits`` when the last durable commit of this connection happened."""
        self.url = url
        self._path = url.removeprefix("sqlite:///")
        with self._tx() as q:
            migrate(q, "sqlite")

    @classmethod
    def connect(cls, url: str) -> SqliteLedger:
        path = Path(url.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(url=url, reason=str(exc)) from None
        return cls(conn, url=f"sqlite:///{path}")

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[dict[str, Any]], int]:
        try:
            cur = self._db.execute(sql, tuple(params))
            rows = [dict(r) for r in cur.fetchall()] if cur.description else []
        except sqlite3.Error as exc:
            raise LedgerError(url=self.url, reason=f"{type(exc).__name__}: {exc}") from None
        return rows, cur.rowcount

    @contextmanager
    def _tx(self) -> Iterator[Query]:
        with self._lock:
            self._run("BEGIN IMMEDIATE")
            try:
                yield self._run
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._run("COMMIT")
            self._commits += 1

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[Query]:
        if not durable:
            with self._tx() as q:
                yield q
            return
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                with self._tx() as q:
                    yield q
                self._durable_at = self._commits
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def _insert_many(self, q: Query, params: list[tuple[Any, ...]]) -> None:
        try:
            self._db.executemany(_INSERT, params)
        except sqlite3.Error as exc:
            raise LedgerError(url=self.url, reason=f"{type(exc).__name__}: {exc}") from None


    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._run(sql, params)[0]

    def _read_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cur = self._db.cursor()
                cur.row_factory = None
                return cur.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(url=self.url, reason=f"{type(exc).__name__}: {exc}") from None

    def _verify_rows(self, upto: int) -> Iterator[Sequence[Any]]:
        spans = ranges(upto, _CHECK_BATCH)
        workers = min(_WORKERS, len(spans)) if upto >= _PARALLEL_FROM else 0

        def here(lo: int, hi: int) -> list[Verdict] | None:
            return check_range(self._read_tuples, sqlite_json_array, lo, hi, batch=_BATCH)

        checked: Iterable[Range] = ((lo, hi, here(lo, hi)) for lo, hi in spans)
        if workers > 1:
            checked = range_checkers(self._path, spans, workers, here, batch=_BATCH)
        return vouched(checked, load=self._chain_row, raw=lambda lo, hi: self._chain_rows(hi, after=lo))

    def _lock_head(self, q: Query) -> tuple[int, str]:
        rows, _ = q("SELECT seq, row_hash FROM ledger_head WHERE id=1")
        return (int(rows[0]["seq"]), str(rows[0]["row_hash"])) if rows else (0, GENESIS)
