"""Stateful guards: per-tool rate limits and circuit breakers, in SQLite or PostgreSQL.

``Policy.evaluate`` stays pure; these keep counts across runs, restarts and processes. The
workflow calls

    limits = RuntimeLimits.open(policy, home.limits_url)   # sqlite:///PATH, a path, or postgresql://...
    d = limits.before_act(action, key=idempotency_key)     # check-and-reserve, right before the act step
    ...run the tool...
    limits.after_act(action.tool, ok=True)                 # or ok=False on a ToolError

``before_act`` returns the usual decision types: ``Deny`` with rule ``tools.<t>.rate_limit`` or
``tools.<t>.circuit_breaker``, else ``Allow`` (rule ``tools.<t>.rate_limit`` when a limit
applies, ``tools.<t>.runtime`` when none does). A reserved call counts even if it then fails;
with ``key`` (the action's idempotency key) a call re-checked after a crash reuses its
reservation instead of taking a second one.

Both backends run the same statements; only the transaction differs. Check-and-reserve is
atomic across processes: SQLite takes the database's write lock (``BEGIN IMMEDIATE``),
PostgreSQL a transaction-scoped advisory lock on the limit's key, so a limit shared by many
workers admits exactly ``max_calls`` per window. Tables (schema version 2):
``rate_limit_calls(key, ts, token)`` and ``circuit_state(tool, consecutive_failures, opened_at)``.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import ConfigError
from tether.guards.decisions import Allow, Deny, RuleMatch

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest, Policy

__all__ = ["SCHEMA_VERSION", "CircuitBreaker", "LimitStore", "RateLimiter", "RuntimeLimits", "SqliteLimitStore"]

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tether_limits_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rate_limit_calls (key TEXT NOT NULL, ts REAL NOT NULL, token TEXT);
CREATE INDEX IF NOT EXISTS rate_limit_calls_key ON rate_limit_calls(key, ts);
CREATE TABLE IF NOT EXISTS circuit_state (
  tool TEXT PRIMARY KEY, consecutive_failures INTEGER NOT NULL, opened_at REAL
);
"""
Clock = Callable[[], float]
Rows = list[tuple[Any, ...]]
Query = Callable[[str, Sequence[Any]], Rows]
"""Runs one statement (``?`` placeholders) inside a transaction and returns its rows."""


class LimitStore(Protocol):
    """Where limit state lives: transactions exclusive per lock name, across processes."""

    url: str

    def tx(self, lock: str) -> AbstractContextManager[Query]:
        """A transaction no other process runs at the same time for the same ``lock``."""
        ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

    def close(self) -> None: ...


class SqliteLimitStore:
    """Limit state in one SQLite file (``BEGIN IMMEDIATE`` serializes every writer)."""

    def __init__(self, path: str | Path) -> None:
        self.url = f"sqlite:///{path}"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0, check_same_thread=False)
        # WAL + NORMAL: a reservation survives a process crash at once and costs no fsync; after a machine
        # crash the last reservations may be gone (the write intents they guarded are in the ledger)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(rate_limit_calls)")}
        with self.tx("schema") as q:
            if "token" not in cols:  # version 1 files: reservations had no token
                q("ALTER TABLE rate_limit_calls ADD COLUMN token TEXT", ())
            q("INSERT INTO tether_limits_meta (name, value) VALUES ('schema_version', ?) ON CONFLICT(name) "
              "DO UPDATE SET value=excluded.value", (str(SCHEMA_VERSION),))

    @contextmanager
    def tx(self, lock: str) -> Iterator[Query]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self.read
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self._db.close()


def open_store(where: str | Path) -> LimitStore:
    """A store by URL: ``postgresql://...``, ``sqlite:///PATH`` or a plain file path."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        from tether.guards.ratelimit_postgres import PostgresLimitStore

        return PostgresLimitStore.connect(text)
    if "://" in text and not text.startswith("sqlite:///"):
        raise ConfigError(setting="limits URL", reason=f"{text!r}: use sqlite:///PATH or postgresql://...")
    path = Path(text.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteLimitStore(path)


def _one(rule_id: str, kind: type[Allow] | type[Deny], reason: str) -> Allow | Deny:
    effect = "allow" if kind is Allow else "deny"
    return kind(
        rule_id=rule_id, reason=reason, matched=(RuleMatch(rule_id=rule_id, effect=effect, reason=reason),)
    )


class RateLimiter:
    """Sliding-window call counts per tool and principal (``rate_limit:`` of a tool rule)."""

    def __init__(self, policy: Policy, store: LimitStore, *, clock: Clock = time.time) -> None:
        self.policy, self._store, self._clock = policy, store, clock

    def _key(self, action: ActionRequest) -> str | None:
        rule = self.policy.tools.get(action.tool)
        if rule is None or rule.rate_limit is None:
            return None
        per = rule.rate_limit.per
        who = {"principal": action.principal, "subject": action.subject_id, "customer": action.subject_id,
               "tool": "*"}[per]
        return f"{action.tool}|{per}|{who or '-'}"

    def check_and_reserve(self, action: ActionRequest, *, key: str | None = None) -> Allow | Deny | None:
        """Reserve one call, or deny if the window is full. ``None``: the tool has no limit.

        ``key`` names the call (its idempotency key): a call already holding a reservation in
        the window is allowed again without counting twice.
        """
        bucket = self._key(action)
        rule = self.policy.tools.get(action.tool)
        if bucket is None or rule is None or rule.rate_limit is None:
            return None
        lim, now, rid = rule.rate_limit, self._clock(), f"tools.{action.tool}.rate_limit"
        with self._store.tx(bucket) as q:
            q("DELETE FROM rate_limit_calls WHERE key=? AND ts<=?", (bucket, now - lim.per_seconds))
            if key is not None and q("SELECT 1 FROM rate_limit_calls WHERE key=? AND token=?", (bucket, key)):
                return _one(rid, Allow, "call already reserved in this window (re-checked after a restart)")
            rows = q("SELECT ts FROM rate_limit_calls WHERE key=? ORDER BY ts", (bucket,))
            if len(rows) >= lim.max_calls:
                retry = rows[len(rows) - lim.max_calls][0] + lim.per_seconds - now
                return _one(rid, Deny, f"{len(rows)} calls in the last {lim.per_seconds:g}s (limit "
                            f"{lim.max_calls}, per {lim.per}); retry in {_wait_text(retry)}")  # fmt: skip
            q("INSERT INTO rate_limit_calls (key, ts, token) VALUES (?, ?, ?)", (bucket, now, key))
        return _one(rid, Allow, f"call {len(rows) + 1} of {lim.max_calls} in {lim.per_seconds:g}s")


def _wait_text(seconds: float) -> str:
    """How long until a call is allowed again, rounded up: whole seconds under ten minutes, else
    whole minutes (the text reaches the model, so it should not change with a second's delay)."""
    wait = max(seconds, 0.0)
    return f"{math.ceil(wait)}s" if wait < 600 else f"{math.ceil(wait / 60)} min"


class CircuitBreaker:
    """Open after K consecutive tool errors; refuse calls until the cooldown has passed.

    After the cooldown one call is let through (half-open): success closes the circuit,
    another failure opens it again at once.
    """

    def __init__(self, policy: Policy, store: LimitStore, *, clock: Clock = time.time) -> None:
        self.policy, self._store, self._clock = policy, store, clock

    def check(self, tool: str) -> Allow | Deny | None:
        rule = self.policy.tools.get(tool)
        if rule is None or rule.circuit_breaker is None:
            return None
        cb, rid = rule.circuit_breaker, f"tools.{tool}.circuit_breaker"
        rows = self._store.read("SELECT consecutive_failures, opened_at FROM circuit_state WHERE tool=?", (tool,))
        row = rows[0] if rows else None
        if row is not None and row[1] is not None:
            left = row[1] + cb.cooldown_seconds - self._clock()
            if left > 0:
                return _one(rid, Deny, f"circuit open after {row[0]} consecutive errors; "
                            f"'{tool}' is refused for another {left:.0f}s")  # fmt: skip
        return _one(rid, Allow, "circuit closed" if row is None or row[1] is None else "circuit half-open")

    def record_success(self, tool: str) -> None:
        rule = self.policy.tools.get(tool)
        if rule is None or rule.circuit_breaker is None:
            return  # nothing to reset: no write (and no lock) on the hot path
        with self._store.tx(f"circuit|{tool}") as q:
            q("DELETE FROM circuit_state WHERE tool=?", (tool,))

    def record_failure(self, tool: str) -> None:
        rule = self.policy.tools.get(tool)
        if rule is None or rule.circuit_breaker is None:
            return
        with self._store.tx(f"circuit|{tool}") as q:  # one statement: concurrent failures all count
            q("INSERT INTO circuit_state (tool, consecutive_failures, opened_at) VALUES (?, 1, ?) "
              "ON CONFLICT(tool) DO UPDATE SET consecutive_failures=circuit_state.consecutive_failures+1, "
              "opened_at=CASE WHEN circuit_state.consecutive_failures+1 >= ? THEN ? ELSE NULL END",
              (tool, self._clock() if rule.circuit_breaker.failures <= 1 else None,
               rule.circuit_breaker.failures, self._clock()))


class RuntimeLimits:
    """Rate limiter and circuit breaker over one store; what the workflow holds."""

    def __init__(self, policy: Policy, store: LimitStore, *, clock: Clock = time.time) -> None:
        self.store = store
        self.rates = RateLimiter(policy, store, clock=clock)
        self.breaker = CircuitBreaker(policy, store, clock=clock)

    @classmethod
    def open(cls, policy: Policy, where: str | Path, *, clock: Clock = time.time) -> RuntimeLimits:
        """Open by URL (``postgresql://...``, ``sqlite:///PATH``) or SQLite file path."""
        return cls(policy, open_store(where), clock=clock)

    def before_act(self, action: ActionRequest, *, key: str | None = None) -> Allow | Deny:
        """Circuit first (an open circuit reserves nothing), then check-and-reserve the rate."""
        cb = self.breaker.check(action.tool)
        if isinstance(cb, Deny):
            return cb
        rate = self.rates.check_and_reserve(action, key=key)
        if rate is not None:
            return rate
        if cb is not None:
            return cb
        rid = f"tools.{action.tool}.runtime"
        return _one(rid, Allow, f"no rate limit or circuit breaker for '{action.tool}'")

    def after_act(self, tool: str, *, ok: bool) -> None:
        if ok:
            self.breaker.record_success(tool)
        else:
            self.breaker.record_failure(tool)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RuntimeLimits:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
