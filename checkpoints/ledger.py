"""The action ledger: every proposed action and what became of it, in SQLite.

One row per event of an action's life (proposed with its decision, approval requested,
approved / rejected / edited, executed, failed) and of a run's life (started, routed,
escalated, responded). Rows are append-only and carry a sequence number, so the table can
grow into a hash-chained, tamper-evident log without a data migration. Pending approvals
live in their own table so any process can list and decide them.

Schema changes are named, append-only migrations recorded in ``schema_migrations``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tether.errors import ApprovalError, LedgerError

__all__ = [
    "SCHEMA_VERSION",
    "Approval",
    "EventKind",
    "Ledger",
    "LedgerEvent",
    "LedgerRow",
    "args_hash",
]

EventKind = Literal[
    "run_started",
    "routed",
    "proposed",
    "approval_requested",
    "approved",
    "rejected",
    "edited",
    "executing",
    "executed",
    "failed",
    "budget_exceeded",
    "escalated",
    "responded",
]
ApprovalStatus = Literal["pending", "approved", "rejected", "edited"]

_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_events_and_approvals",
        """
        CREATE TABLE ledger_events (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          event_id TEXT NOT NULL UNIQUE,
          ts TEXT NOT NULL,
          thread_id TEXT NOT NULL,
          run_id TEXT NOT NULL,
          step INTEGER,
          event TEXT NOT NULL,
          tool_call_id TEXT,
          tool TEXT,
          tool_schema_version TEXT,
          args_json TEXT,
          args_hash TEXT,
          decision TEXT,
          rule_id TEXT,
          matched_rules TEXT,
          policy_version TEXT,
          approval_id TEXT,
          approver TEXT,
          evidence TEXT,
          result_json TEXT,
          error TEXT,
          detail TEXT,
          model_id TEXT,
          principal TEXT,
          customer_id TEXT,
          spend_usd REAL,
          idempotency_key TEXT
        );
        CREATE INDEX ledger_events_thread ON ledger_events(thread_id, seq);
        CREATE INDEX ledger_events_idem ON ledger_events(idempotency_key, event);
        CREATE TABLE approvals (
          approval_id TEXT PRIMARY KEY,
          thread_id TEXT NOT NULL,
          run_id TEXT NOT NULL,
          tool_call_id TEXT NOT NULL,
          tool TEXT NOT NULL,
          args_json TEXT NOT NULL,
          args_hash TEXT NOT NULL,
          preview TEXT NOT NULL,
          rule_id TEXT NOT NULL,
          reason TEXT NOT NULL,
          policy_version TEXT NOT NULL,
          customer_id TEXT,
          status TEXT NOT NULL DEFAULT 'pending',
          decided_by TEXT,
          decision_json TEXT,
          created_at TEXT NOT NULL,
          decided_at TEXT,
          UNIQUE (thread_id, tool_call_id)
        );
        """,
    ),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def args_hash(args: Mapping[str, Any]) -> str:
    """Hash of canonical JSON arguments; an approval is bound to it."""
    return "sha256:" + hashlib.sha256(_dumps(dict(args)).encode()).hexdigest()[:32]


class LedgerEvent(BaseModel):
    """One event to append. ``None`` fields are simply not applicable to the event."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    run_id: str
    event: EventKind
    step: int | None = None
    tool_call_id: str | None = None
    tool: str | None = None
    tool_schema_version: str | None = None
    args: Mapping[str, Any] | None = None
    decision: str | None = None
    rule_id: str | None = None
    matched_rules: tuple[str, ...] = ()
    policy_version: str | None = None
    approval_id: str | None = None
    approver: str | None = None
    evidence: tuple[str, ...] = ()
    result: Any = None
    error: str | None = None
    detail: str | None = None
    model_id: str | None = None
    principal: str | None = None
    customer_id: str | None = None
    spend_usd: float | None = None
    idempotency_key: str | None = None


class LedgerRow(LedgerEvent):
    """A stored event, with its sequence number and timestamp."""

    seq: int
    event_id: str
    ts: str
    args_hash: str | None = None


class Approval(BaseModel):
    """A pending or decided approval request."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    thread_id: str
    run_id: str
    tool_call_id: str
    tool: str
    args: dict[str, Any]
    args_hash: str
    preview: str
    rule_id: str
    reason: str
    policy_version: str
    customer_id: str | None
    status: ApprovalStatus
    decided_by: str | None = None
    decision: dict[str, Any] | None = None
    created_at: str
    decided_at: str | None = None


class Ledger:
    """SQLite-backed ledger. Open with ``Ledger.open(url_or_path)``; safe across processes."""

    def __init__(self, conn: sqlite3.Connection, *, url: str) -> None:
        self._db = conn
        self._lock = threading.RLock()
        self.url = url
        self._migrate()

    @classmethod
    def open(cls, target: str | Path) -> Ledger:
        url = str(target)
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
        elif "://" in url:
            raise LedgerError(
                url=url, reason="unsupported ledger URL; use sqlite:///PATH or a file path"
            )
        else:
            path = Path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise LedgerError(url=url, reason=str(exc)) from None
        return cls(conn, url=f"sqlite:///{path}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._tx():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            done = {r[0] for r in self._db.execute("SELECT name FROM schema_migrations")}
            for name, sql in _MIGRATIONS:
                if name not in done:
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                    self._db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, _now()))

    class _Tx:
        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

        def __enter__(self) -> sqlite3.Connection:
            self.ledger._lock.acquire()
            self.ledger._db.execute("BEGIN IMMEDIATE")
            return self.ledger._db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            try:
                self.ledger._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.ledger._lock.release()

    def _tx(self) -> Ledger._Tx:
        return Ledger._Tx(self)

    # ------------------------------------------------------------------ events

    def append(self, ev: LedgerEvent) -> LedgerRow:
        row = LedgerRow(
            **ev.model_dump(),
            seq=0,
            event_id=uuid.uuid4().hex,
            ts=_now(),
            args_hash=args_hash(ev.args) if ev.args is not None else None,
        )
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO ledger_events (event_id, ts, thread_id, run_id, step, event,"
                " tool_call_id, tool, tool_schema_version, args_json, args_hash, decision, rule_id,"
                " matched_rules, policy_version, approval_id, approver, evidence, result_json,"
                " error, detail, model_id, principal, customer_id, spend_usd, idempotency_key)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row.event_id, row.ts, row.thread_id, row.run_id, row.step, row.event,
                    row.tool_call_id, row.tool, row.tool_schema_version,
                    _dumps(row.args) if row.args is not None else None, row.args_hash,
                    row.decision, row.rule_id, _dumps(list(row.matched_rules)),
                    row.policy_version, row.approval_id, row.approver,
                    _dumps(list(row.evidence)),
                    _dumps(row.result) if row.result is not None else None,
                    row.error, row.detail, row.model_id, row.principal, row.customer_id,
                    row.spend_usd, row.idempotency_key,
                ),
            )
        return row.model_copy(update={"seq": cur.lastrowid})

    def _row(self, r: sqlite3.Row) -> LedgerRow:
        return LedgerRow(
            seq=r["seq"], event_id=r["event_id"], ts=r["ts"], thread_id=r["thread_id"],
            run_id=r["run_id"], step=r["step"], event=r["event"], tool_call_id=r["tool_call_id"],
            tool=r["tool"], tool_schema_version=r["tool_schema_version"],
            args=json.loads(r["args_json"]) if r["args_json"] else None,
            args_hash=r["args_hash"], decision=r["decision"], rule_id=r["rule_id"],
            matched_rules=tuple(json.loads(r["matched_rules"] or "[]")),
            policy_version=r["policy_version"], approval_id=r["approval_id"],
            approver=r["approver"], evidence=tuple(json.loads(r["evidence"] or "[]")),
            result=json.loads(r["result_json"]) if r["result_json"] else None,
            error=r["error"], detail=r["detail"], model_id=r["model_id"],
            principal=r["principal"], customer_id=r["customer_id"], spend_usd=r["spend_usd"],
            idempotency_key=r["idempotency_key"],
        )

    def events(self, thread_id: str | None = None) -> list[LedgerRow]:
        with self._lock:
            if thread_id is None:
                rows = self._db.execute("SELECT * FROM ledger_events ORDER BY seq").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM ledger_events WHERE thread_id=? ORDER BY seq", (thread_id,)
                ).fetchall()
        return [self._row(r) for r in rows]

    def iter_events(self) -> Iterator[LedgerRow]:
        yield from self.events()

    def completed(self, idempotency_key: str) -> LedgerRow | None:
        """The ``executed`` event for this key, if the action already ran to completion."""
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM ledger_events WHERE idempotency_key=? AND event='executed'"
                " ORDER BY seq LIMIT 1",
                (idempotency_key,),
            ).fetchone()
        return self._row(r) if r else None

    def started(self, idempotency_key: str) -> bool:
        """Whether an ``executing`` (intent) event exists for this key."""
        with self._lock:
            r = self._db.execute(
                "SELECT 1 FROM ledger_events WHERE idempotency_key=? AND event='executing' LIMIT 1",
                (idempotency_key,),
            ).fetchone()
        return r is not None

    # ------------------------------------------------------------------ approvals

    def request_approval(
        self,
        *,
        thread_id: str,
        run_id: str,
        tool_call_id: str,
        tool: str,
        args: Mapping[str, Any],
        preview: str,
        rule_id: str,
        reason: str,
        policy_version: str,
        customer_id: str | None,
    ) -> Approval:
        """Register a pending approval (idempotent per thread and tool call)."""
        approval_id = "A-" + hashlib.sha256(f"{thread_id}\0{tool_call_id}".encode()).hexdigest()[:10]
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO approvals (approval_id, thread_id, run_id, tool_call_id, tool,"
                " args_json, args_hash, preview, rule_id, reason, policy_version, customer_id,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (approval_id, thread_id, run_id, tool_call_id, tool, _dumps(dict(args)),
                 args_hash(args), preview, rule_id, reason, policy_version, customer_id, _now()),
            )
        return self.approval(approval_id)

    def _approval(self, r: sqlite3.Row) -> Approval:
        return Approval(
            approval_id=r["approval_id"], thread_id=r["thread_id"], run_id=r["run_id"],
            tool_call_id=r["tool_call_id"], tool=r["tool"], args=json.loads(r["args_json"]),
            args_hash=r["args_hash"], preview=r["preview"], rule_id=r["rule_id"],
            reason=r["reason"], policy_version=r["policy_version"], customer_id=r["customer_id"],
            status=r["status"], decided_by=r["decided_by"],
            decision=json.loads(r["decision_json"]) if r["decision_json"] else None,
            created_at=r["created_at"], decided_at=r["decided_at"],
        )

    def approval(self, approval_id: str) -> Approval:
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM approvals WHERE approval_id=?", (approval_id,)
            ).fetchone()
        if r is None:
            raise ApprovalError(
                approval_id=approval_id,
                reason="no such approval; run `tether approvals list` to see pending ones",
            )
        return self._approval(r)

    def approvals(self, *, status: ApprovalStatus | None = "pending", thread_id: str | None = None) -> list[Approval]:
        q, params = "SELECT * FROM approvals WHERE 1=1", []
        if status is not None:
            q += " AND status=?"
            params.append(status)
        if thread_id is not None:
            q += " AND thread_id=?"
            params.append(thread_id)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY created_at", params).fetchall()
        return [self._approval(r) for r in rows]

    def decide(
        self, approval_id: str, *, status: ApprovalStatus, decided_by: str, decision: Mapping[str, Any]
    ) -> Approval:
        """Record a human decision once. A second decision is refused."""
        if status == "pending":
            raise ValueError("a decision cannot be 'pending'")
        with self._tx() as db:
            cur = db.execute(
                "UPDATE approvals SET status=?, decided_by=?, decision_json=?, decided_at=?"
                " WHERE approval_id=? AND status='pending'",
                (status, decided_by, _dumps(dict(decision)), _now(), approval_id),
            )
            if cur.rowcount != 1:
                exists = db.execute(
                    "SELECT status FROM approvals WHERE approval_id=?", (approval_id,)
                ).fetchone()
                reason = (
                    f"already {exists[0]}; decisions are final"
                    if exists
                    else "no such approval; run `tether approvals list`"
                )
                raise ApprovalError(approval_id=approval_id, reason=reason)
        return self.approval(approval_id)
