"""SQLite ledger backend (the default): one file, WAL mode, ``BEGIN IMMEDIATE`` writes.

A write transaction takes SQLite's database-wide write lock, so appends from any number of
processes are serialized and each new row links to the true head.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tether.checkpoints.chain import GENESIS
from tether.checkpoints.ledger import Ledger, Query
from tether.checkpoints.migrations import migrate
from tether.errors import LedgerError

__all__ = ["SqliteLedger"]


class SqliteLedger(Ledger):
    """SQLite-backed ledger; open with ``Ledger.open("sqlite:///PATH")`` or a plain path."""

    def __init__(self, conn: sqlite3.Connection, *, url: str) -> None:
        self._db = conn
        self._lock = threading.RLock()
        self.url = url
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

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._run(sql, params)[0]

    def _lock_head(self, q: Query) -> tuple[int, str]:
        rows, _ = q("SELECT seq, row_hash FROM ledger_head WHERE id=1")
        return (int(rows[0]["seq"]), str(rows[0]["row_hash"])) if rows else (0, GENESIS)
