"""Stateful guards: per-tool rate limits and circuit breakers, persisted in SQLite.

``Policy.evaluate`` stays pure; these keep counts across runs and restarts. The workflow calls

    limits = RuntimeLimits.open(policy, "/path/limits.sqlite")
    d = limits.before_act(action)          # check-and-reserve, right before the act step
    ...run the tool...
    limits.after_act(action.tool, ok=True) # or ok=False on a ToolError

``before_act`` returns the usual decision types: ``Deny`` with rule ``tools.<t>.rate_limit`` or
``tools.<t>.circuit_breaker``, else ``Allow`` (rule ``tools.<t>.rate_limit`` when a limit
applies, ``tools.<t>.runtime`` when none does). A reserved call counts even if it then fails.
Tables (schema version 1): ``rate_limit_calls(key, ts)`` and ``circuit_state(tool, ...)``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tether.guards.decisions import Allow, Deny, RuleMatch

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest, Policy

__all__ = ["SCHEMA_VERSION", "CircuitBreaker", "RateLimiter", "RuntimeLimits"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tether_limits_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rate_limit_calls (key TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_limit_calls_key ON rate_limit_calls(key, ts);
CREATE TABLE IF NOT EXISTS circuit_state (
  tool TEXT PRIMARY KEY, consecutive_failures INTEGER NOT NULL, opened_at REAL
);
"""
Clock = Callable[[], float]


def _connect(path: str | Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0, check_same_thread=False)
    db.executescript(_SCHEMA)
    db.execute(
        "INSERT OR IGNORE INTO tether_limits_meta (name, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )
    return db


@contextmanager
def _tx(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")  # one writer: check-and-reserve is atomic across processes
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _one(rule_id: str, kind: type[Allow] | type[Deny], reason: str) -> Allow | Deny:
    effect = "allow" if kind is Allow else "deny"
    return kind(
        rule_id=rule_id, reason=reason, matched=(RuleMatch(rule_id=rule_id, effect=effect, reason=reason),)
    )


class RateLimiter:
    """Sliding-window call counts per tool and principal (``rate_limit:`` of a tool rule)."""

    def __init__(self, policy: Policy, db: sqlite3.Connection, *, clock: Clock = time.time) -> None:
        self.policy, self._db, self._clock = policy, db, clock

    def _key(self, action: ActionRequest) -> str | None:
        rule = self.policy.tools.get(action.tool)
        if rule is None or rule.rate_limit is None:
            return None
        per = rule.rate_limit.per
        who = {"principal": action.principal, "subject": action.subject_id, "customer": action.subject_id,
               "tool": "*"}[per]
        return f"{action.tool}|{per}|{who or '-'}"

    def check_and_reserve(self, action: ActionRequest) -> Allow | Deny | None:
        """Reserve one call, or deny if the window is full. ``None``: the tool has no limit."""
        key = self._key(action)
        rule = self.policy.tools.get(action.tool)
        if key is None or rule is None or rule.rate_limit is None:
            return None
        lim, now, rid = rule.rate_limit, self._clock(), f"tools.{action.tool}.rate_limit"
        with _tx(self._db):
            self._db.execute(
                "DELETE FROM rate_limit_calls WHERE key=? AND ts<=?", (key, now - lim.per_seconds)
            )
            rows = self._db.execute(
                "SELECT ts FROM rate_limit_calls WHERE key=? ORDER BY ts", (key,)
            ).fetchall()
            if len(rows) >= lim.max_calls:
                retry = rows[len(rows) - lim.max_calls][0] + lim.per_seconds - now
                return _one(rid, Deny, f"{len(rows)} calls in the last {lim.per_seconds:g}s (limit "
                            f"{lim.max_calls}, per {lim.per}); retry in {max(retry, 0):.0f}s")  # fmt: skip
            self._db.execute("INSERT INTO rate_limit_calls (key, ts) VALUES (?, ?)", (key, now))
        return _one(rid, Allow, f"call {len(rows) + 1} of {lim.max_calls} in {lim.per_seconds:g}s")


class CircuitBreaker:
    """Open after K consecutive tool errors; refuse calls until the cooldown has passed.

    After the cooldown one call is let through (half-open): success closes the circuit,
    another failure opens it again at once.
    """

    def __init__(self, policy: Policy, db: sqlite3.Connection, *, clock: Clock = time.time) -> None:
        self.policy, self._db, self._clock = policy, db, clock

    def check(self, tool: str) -> Allow | Deny | None:
        rule = self.policy.tools.get(tool)
        if rule is None or rule.circuit_breaker is None:
            return None
        cb, rid = rule.circuit_breaker, f"tools.{tool}.circuit_breaker"
        row = self._db.execute(
            "SELECT consecutive_failures, opened_at FROM circuit_state WHERE tool=?", (tool,)
        ).fetchone()
        if row is not None and row[1] is not None:
            left = row[1] + cb.cooldown_seconds - self._clock()
            if left > 0:
                return _one(rid, Deny, f"circuit open after {row[0]} consecutive errors; "
                            f"'{tool}' is refused for another {left:.0f}s")  # fmt: skip
        return _one(rid, Allow, "circuit closed" if row is None or row[1] is None else "circuit half-open")

    def record_success(self, tool: str) -> None:
        with _tx(self._db):
            self._db.execute("DELETE FROM circuit_state WHERE tool=?", (tool,))

    def record_failure(self, tool: str) -> None:
        rule = self.policy.tools.get(tool)
        if rule is None or rule.circuit_breaker is None:
            return
        with _tx(self._db):
            row = self._db.execute(
                "SELECT consecutive_failures FROM circuit_state WHERE tool=?", (tool,)
            ).fetchone()
            n = (row[0] if row else 0) + 1
            opened = self._clock() if n >= rule.circuit_breaker.failures else None
            self._db.execute(
                "INSERT INTO circuit_state (tool, consecutive_failures, opened_at) VALUES (?, ?, ?) "
                "ON CONFLICT(tool) DO UPDATE SET consecutive_failures=excluded.consecutive_failures, "
                "opened_at=excluded.opened_at",
                (tool, n, opened),
            )


class RuntimeLimits:
    """Rate limiter and circuit breaker over one SQLite file; what the workflow holds."""

    def __init__(self, policy: Policy, db: sqlite3.Connection, *, clock: Clock = time.time) -> None:
        self._db = db
        self.rates = RateLimiter(policy, db, clock=clock)
        self.breaker = CircuitBreaker(policy, db, clock=clock)

    @classmethod
    def open(cls, policy: Policy, path: str | Path, *, clock: Clock = time.time) -> RuntimeLimits:
        return cls(policy, _connect(path), clock=clock)

    def before_act(self, action: ActionRequest) -> Allow | Deny:
        """Circuit first (an open circuit reserves nothing), then check-and-reserve the rate."""
        cb = self.breaker.check(action.tool)
        if isinstance(cb, Deny):
            return cb
        rate = self.rates.check_and_reserve(action)
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
        self._db.close()

    def __enter__(self) -> RuntimeLimits:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
