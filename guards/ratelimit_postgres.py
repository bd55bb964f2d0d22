"""PostgreSQL store for rate limits and circuit breakers (the ``postgres`` extra: psycopg 3).

Each check-and-reserve runs in one transaction that first takes
``pg_advisory_xact_lock`` on a hash of the limit's key, so workers in any number of
processes see and extend the same window one at a time: a limit of N admits exactly N.
Different keys do not wait for each other. The schema is created under a transaction-scoped
advisory lock, so several workers may open a fresh database at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tether.errors import ConfigError, MissingExtra
from tether.guards.ratelimit import SCHEMA_VERSION, Query, Rows

__all__ = ["PostgresLimitStore"]

_SCHEMA_LOCK = 0x7E7E_11A7  # pg_advisory_xact_lock key for creating the tables
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tether_limits_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rate_limit_calls (key TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, token TEXT)",
    "CREATE INDEX IF NOT EXISTS rate_limit_calls_key ON rate_limit_calls(key, ts)",
    "CREATE TABLE IF NOT EXISTS circuit_state (tool TEXT PRIMARY KEY, "
    "consecutive_failures INTEGER NOT NULL, opened_at DOUBLE PRECISION)",
    "ALTER TABLE rate_limit_calls ADD COLUMN IF NOT EXISTS token TEXT",
)


def _redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class PostgresLimitStore:
    """Limit state in PostgreSQL; open with ``RuntimeLimits.open(policy, "postgresql://...")``."""

    def __init__(self, conn: Any, *, url: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.url = url
        with self._tx_raw() as q:
            q("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            for stmt in _SCHEMA:
                q(stmt, ())
            q("INSERT INTO tether_limits_meta (name, value) VALUES ('schema_version', ?) ON CONFLICT (name) "
              "DO UPDATE SET value=excluded.value", (str(SCHEMA_VERSION),))

    @classmethod
    def connect(cls, url: str) -> PostgresLimitStore:
        try:
            import psycopg
        except ImportError:
            raise MissingExtra(extra="postgres", feature="PostgreSQL rate limits") from None
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ConfigError(setting=f"limits URL {_redact(url)}", reason=str(exc).strip()) from None
        return cls(conn, url=url)

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        import psycopg

        try:
            cur = self._conn.execute(sql.replace("?", "%s"), tuple(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.Error as exc:
            raise ConfigError(setting=f"limits URL {_redact(self.url)}",
                              reason=f"{type(exc).__name__}: {exc}") from None

    @contextmanager
    def _tx_raw(self) -> Iterator[Query]:
        with self._lock, self._conn.transaction():
            yield self._run

    @contextmanager
    def tx(self, lock: str) -> Iterator[Query]:
        with self._tx_raw() as q:
            q("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"tether.limits:{lock}",))
            yield q

    def read(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        with self._lock:
            return self._run(sql, params)

    def close(self) -> None:
        self._conn.close()
