"""PostgreSQL ledger backend (the ``postgres`` extra: psycopg 3).

Appends are serialized by ``SELECT ... FOR UPDATE`` on the single ``ledger_head`` row, so
concurrent writers from many processes each link to the true head and take the next
``seq`` (no sequence object: a rolled-back append leaves no gap). Migrations run under a
transaction-scoped advisory lock so several processes may open a fresh database at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tether.checkpoints.chain import GENESIS
from tether.checkpoints.ledger import Ledger, Query
from tether.checkpoints.migrations import migrate
from tether.errors import LedgerError, MissingExtra

__all__ = ["PostgresLedger", "redact"]

_MIGRATION_LOCK = 0x7E7E_1ED6  # pg_advisory_xact_lock key for schema migrations


def redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class PostgresLedger(Ledger):
    """PostgreSQL-backed ledger; open with ``Ledger.open("postgresql://...")``."""

    def __init__(self, conn: Any, *, url: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.url = url
        with self._tx() as q:
            q("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            migrate(q, "postgres")

    @classmethod
    def connect(cls, url: str) -> PostgresLedger:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise MissingExtra(extra="postgres", feature="PostgreSQL ledger") from None
        try:
            conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerError(url=redact(url), reason=str(exc).strip()) from None
        return cls(conn, url=url)

    def close(self) -> None:
        self._conn.close()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[dict[str, Any]], int]:
        import psycopg

        try:
            cur = self._conn.execute(sql.replace("?", "%s"), tuple(params))
            rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise LedgerError(url=redact(self.url), reason=f"{type(exc).__name__}: {exc}") from None
        return rows, cur.rowcount

    @contextmanager
    def _tx(self) -> Iterator[Query]:
        with self._lock, self._conn.transaction():
            yield self._run

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._run(sql, params)[0]

    def _read_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg
        from psycopg.rows import tuple_row

        with self._lock:
            try:
                with self._conn.cursor(row_factory=tuple_row) as cur:
                    rows: list[tuple[Any, ...]] = cur.execute(sql.replace("?", "%s"), tuple(params)).fetchall()
                    return rows
            except psycopg.Error as exc:
                raise LedgerError(url=redact(self.url), reason=f"{type(exc).__name__}: {exc}") from None

    def _lock_head(self, q: Query) -> tuple[int, str]:
        rows, _ = q("SELECT seq, row_hash FROM ledger_head WHERE id=1 FOR UPDATE")
        return (int(rows[0]["seq"]), str(rows[0]["row_hash"])) if rows else (0, GENESIS)
