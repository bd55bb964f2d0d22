"""The action ledger: every proposed action and what became of it.

One row per event of an action's life (proposed with its decision, approval requested,
approved / rejected / edited, executing, executed, failed, compensated) and of a run's life
(started, routed, escalated, responded). Rows are append-only and hash-chained (see
``tether.checkpoints.chain``); ``verify()`` names the first row that was tampered with.
Pending approvals live in their own table so any process can list and decide them.

``Ledger`` is the contract every backend implements; ``Ledger.open(url)`` picks one:
``sqlite:///PATH`` or a plain path (``SqliteLedger``), ``postgresql://...``
(``PostgresLedger``, needs the ``postgres`` extra). The queries live here, once; a backend
supplies a connection, transactions, the head lock and its named migrations.

Schema changes are named, append-only migrations (``tether.checkpoints.migrations``).

Durability. Every commit survives a crash of the process (SIGKILL, OOM, an exception) at once.
Against a crash of the machine (power loss, kernel panic), a commit is durable when it returns
only if it was made ``durable``: a write action's intent (``append(..., durable=True)``) and a
human decision (``decide``). Every other row becomes durable at the next durable commit or
``sync()`` (a backend flushes its log in order, so what survives is always a prefix of the
chain). Nothing is lost that could make an action run twice: an intent without its outcome is
"outcome unknown" and goes to a human.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

from tether.checkpoints.chain import (
    CHAIN_COLUMNS,
    GENESIS,
    Anchor,
    ChainBreak,
    ChainReport,
    values_hash,
    verify_chain,
)
from tether.checkpoints.columns import now
from tether.checkpoints.migrations import SCHEMA_VERSION
from tether.checkpoints.records import (
    COLUMNS,
    Approval,
    ApprovalStatus,
    EventKind,
    LedgerEvent,
    LedgerRow,
    approval_from_columns,
    args_hash,
    dumps,
    from_columns,
    new_event_id,
    new_event_ids,
    to_columns,
    to_values,
)
from tether.checkpoints.row_text import pages
from tether.errors import ApprovalError, LedgerError

__all__ = [
    "SCHEMA_VERSION",
    "Approval",
    "ApprovalStatus",
    "Attempts",
    "EventKind",
    "Ledger",
    "LedgerEvent",
    "LedgerRow",
    "args_hash",
]

_INSERT = (
    "INSERT INTO ledger_events (seq, prev_hash, row_hash, " + ", ".join(c for c, _ in COLUMNS)
    + ") VALUES (" + ", ".join("?" * (len(COLUMNS) + 3)) + ")"
)
_BATCH = 2000
_NO_END = 2**63 - 1
"""The largest ``seq`` either backend can store."""


def chained(stamped: Sequence[Sequence[Any]], seq: int, prev: str) -> list[tuple[Any, ...]]:
    """Rows linked after the head ``(seq, prev)``: ``(seq, prev_hash, row_hash, *values)`` each."""
    out: list[tuple[Any, ...]] = []
    for values in stamped:
        seq += 1
        h = values_hash(values, seq=seq, prev_hash=prev)
        out.append((seq, prev, h, *values))
        prev = h
    return out


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Attempts:
    """What the ledger holds for one idempotency key (``Ledger.attempts``)."""

    executed: LedgerRow | None
    """The ``executed`` row: the action ran to completion (reuse its result, never repeat it)."""
    started: bool
    """Whether an intent (``executing``) was recorded: without ``executed``, the outcome is unknown."""


class Query(Protocol):
    """Run one statement (``?`` placeholders) and return its rows as dicts and its rowcount."""

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[dict[str, Any]], int]: ...


class Ledger(ABC):
    """The ledger contract. Open with ``Ledger.open(url_or_path)``; safe across processes."""

    url: str
    """Where the ledger lives (``sqlite:///PATH`` or the PostgreSQL URL)."""

    @classmethod
    def open(cls, target: str | Path) -> Ledger:
        url = str(target)
        if url.startswith(("postgresql://", "postgres://")):
            from tether.checkpoints.ledger_postgres import PostgresLedger

            return PostgresLedger.connect(url)
        if url.startswith("sqlite:///") or "://" not in url:
            from tether.checkpoints.ledger_sqlite import SqliteLedger

            return SqliteLedger.connect(url)
        raise LedgerError(url=url, reason="unsupported ledger URL; use sqlite:///PATH, a file path "
                          "or postgresql://USER@HOST:PORT/DB")

    # ------------------------------------------------------------- backend primitives

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Query]:
        """A write transaction; appends through it are serialized by ``_lock_head``."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def _read_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as tuples in the statement's column order (a backend may skip building dicts)."""
        return [tuple(r.values()) for r in self._read(sql, params)]

    @abstractmethod
    def _lock_head(self, q: Query) -> tuple[int, str]:
        """Lock the head record for the rest of the transaction; return ``(seq, row_hash)``."""

    def _write(self, *, durable: bool) -> AbstractContextManager[Query]:
        """A write transaction; ``durable`` ones are on disk (not only in the OS) when they commit.

        The default suits backends whose every commit is durable; SQLite and PostgreSQL override it."""
        return self._tx()

    _lock: threading.RLock
    """Serializes this connection's transactions (every backend has one)."""
    _commits = 0
    """Write commits this connection made (a backend whose ``_write`` is not always durable counts them)."""
    _durable_at = 0
    """``_commits`` when this connection's last durable write committed."""

    def sync(self, *, through: int | None = None) -> None:
        """Make this connection's commits durable: all of them, or those up to ``through`` (a
        ``commit_mark()``); costs nothing when a durable commit since then already did it.
        Backends whose commits are all durable (and do not count them) do nothing."""
        with self._lock:
            if self._durable_at >= (self._commits if through is None else through):
                return
            with self._write(durable=True) as q:  # the log is written in order: this flushes every commit
                q("UPDATE ledger_head SET seq=seq WHERE id=1")

    def commit_mark(self) -> int:
        """How many commits this connection has made (for ``sync(through=...)``)."""
        return self._commits

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrations(self) -> list[str]:
        """Names of the applied schema migrations, oldest first."""
        return [r["name"] for r in self._read("SELECT name FROM schema_migrations ORDER BY name")]

    # ------------------------------------------------------------------ events

    def append(self, ev: LedgerEvent, *, durable: bool = False) -> LedgerRow:
        """Add one row at the head, on disk before this returns if ``durable`` (the intent of a
        write tool, appended before its side effect)."""
        cols = to_columns(ev, event_id=new_event_id(), ts=now())
        ((seq, prev, h, *_),) = self._append_rows([[cols[c] for c, _ in COLUMNS]], durable=durable)
        return from_columns({**cols, "seq": seq, "prev_hash": prev, "row_hash": h})

    def append_many(self, evs: Sequence[LedgerEvent], *, durable: bool = False,
                    at: Sequence[str] | None = None) -> int:
        """Add rows in order in one transaction (one commit, one head update): group commit for
        callers that hold several events at once. All or none are added; returns the new head's seq.

        ``at``: when each event happened (``ts`` form, see ``checkpoints.columns.now``), for
        events held before this commit; by default every row is stamped now."""
        if at is not None and len(at) != len(evs):
            raise ValueError(f"append_many: {len(evs)} events but {len(at)} instants in at=")
        if not evs:
            return self.head().seq
        stamps = at if at is not None else [now()] * len(evs)
        stamped = [to_values(ev, event_id=i, ts=ts)
                   for ev, i, ts in zip(evs, new_event_ids(len(evs)), stamps, strict=True)]
        return int(self._append_rows(stamped, durable=durable)[-1][0])

    def _append_rows(self, stamped: Sequence[Sequence[Any]], *, durable: bool) -> list[tuple[Any, ...]]:
        """Chain the rows (column values in ``COLUMNS`` order) to the head, under its lock, in
        one transaction; returns them as inserted: ``(seq, prev_hash, row_hash, *values)``."""
        with self._write(durable=durable) as q:
            params = chained(stamped, *self._lock_head(q))
            self._insert_many(q, params)
            q("UPDATE ledger_head SET seq=?, row_hash=? WHERE id=1", (params[-1][0], params[-1][2]))
        return params

    def _insert_many(self, q: Query, params: list[tuple[Any, ...]]) -> None:
        """Insert event rows; a backend may do it in one round trip."""
        for row in params:
            q(_INSERT, row)

    def events(self, thread_id: str | None = None) -> list[LedgerRow]:
        if thread_id is None:
            return list(self.iter_events())
        rows = self._read("SELECT * FROM ledger_events WHERE thread_id=? ORDER BY seq", (thread_id,))
        return [from_columns(r) for r in rows]

    def _raw_rows(self) -> Iterator[dict[str, Any]]:
        sql = "SELECT * FROM ledger_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        for rows in pages(self._read, sql, after=0, upto=_NO_END, batch=_BATCH, seq=itemgetter("seq")):
            yield from rows

    def _chain_rows(self, upto: int, *, after: int = 0) -> Iterator[tuple[Any, ...]]:
        """Rows ``after < seq <= upto`` as tuples in ``CHAIN_COLUMNS`` order, read in batches."""
        sql = f"SELECT {', '.join(CHAIN_COLUMNS)} FROM ledger_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        for rows in pages(self._read_tuples, sql, after=after, upto=upto, batch=_BATCH):
            yield from rows

    def _chain_row(self, seq: int) -> tuple[Any, ...] | None:
        """One row as a tuple in ``CHAIN_COLUMNS`` order."""
        rows = self._read_tuples(f"SELECT {', '.join(CHAIN_COLUMNS)} FROM ledger_events WHERE seq=?", (seq,))
        return rows[0] if rows else None

    def _verify_rows(self, upto: int) -> Iterator[Sequence[Any]]:
        """The rows ``verify`` checks (see ``verify_chain``); a backend that can compute the
        hashed text itself yields ``(seq, prev_hash, row_hash, text)``."""
        return self._chain_rows(upto)

    def iter_events(self) -> Iterator[LedgerRow]:
        """Every row in ``seq`` order, read in batches."""
        for r in self._raw_rows():
            yield from_columns(r)

    def completed(self, idempotency_key: str) -> LedgerRow | None:
        """The ``executed`` event for this key, if the action already ran to completion."""
        rows = self._read(
            "SELECT * FROM ledger_events WHERE idempotency_key=? AND event='executed'"
            " ORDER BY seq LIMIT 1", (idempotency_key,))
        return from_columns(rows[0]) if rows else None

    def started(self, idempotency_key: str) -> bool:
        """Whether an ``executing`` (intent) event exists for this key."""
        return bool(self._read(
            "SELECT 1 AS x FROM ledger_events WHERE idempotency_key=? AND event='executing' LIMIT 1",
            (idempotency_key,)))

    def attempts(self, idempotency_key: str) -> Attempts:
        """For one key, in one query: its ``executed`` row and whether an intent was recorded."""
        rows = self._read("SELECT * FROM ledger_events WHERE idempotency_key=? AND event IN"
                          " ('executing', 'executed') ORDER BY seq", (idempotency_key,))
        done = next((r for r in rows if r["event"] == "executed"), None)
        return Attempts(executed=from_columns(done) if done is not None else None,
                        started=any(r["event"] == "executing" for r in rows))

    # ------------------------------------------------------------------ chain

    def head(self) -> Anchor:
        """The current head ``(seq, row_hash)``; write it somewhere else to anchor the ledger."""
        rows = self._read("SELECT seq, row_hash FROM ledger_head WHERE id=1")
        seq, h = (int(rows[0]["seq"]), str(rows[0]["row_hash"])) if rows else (0, GENESIS)
        return Anchor(seq=seq, row_hash=h, written_at=now())

    def verify(self, *, anchor: Anchor | None = None) -> ChainReport:
        """Check the whole chain, the head record and (optionally) an external anchor.

        Rows up to the head read at the start are checked; rows appended meanwhile must be
        covered by the head record read at the end (appends update both in one transaction).
        """
        marks = self._read("SELECT seq, row_hash FROM ledger_head WHERE id=1")
        head = self.head() if marks else None

        def find_seq(h: str) -> int | None:
            rows = self._read("SELECT seq FROM ledger_events WHERE row_hash=? LIMIT 1", (h,))
            return int(rows[0]["seq"]) if rows else None

        upto = head.seq if head else self._read("SELECT MAX(seq) AS m FROM ledger_events")[0]["m"] or 0
        report = verify_chain(self._verify_rows(int(upto)), find_seq=find_seq, load=self._chain_row,
                              head=(head.seq, head.row_hash) if head else None, anchor=anchor)
        if not report.ok or head is None:
            return report
        top = self._read("SELECT MAX(seq) AS m FROM ledger_events")[0]["m"] or 0
        if int(top) > self.head().seq:
            problem = ChainBreak(kind="inserted", seq=head.seq + 1, reason="rows after the head "
                                 "record were added outside the ledger")
            return dataclasses.replace(report, ok=False, problem=problem)
        return report

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
        subject_id: str | None,
        ttl_seconds: float | None = None,
        workflow: str | None = None,
    ) -> Approval:
        """Register a pending approval (idempotent per thread and tool call)."""
        approval_id = "A-" + hashlib.sha256(f"{thread_id}\0{tool_call_id}".encode()).hexdigest()[:10]
        created = datetime.now(UTC)
        expires = (created + timedelta(seconds=ttl_seconds)).isoformat(timespec="microseconds") \
            if ttl_seconds is not None else None
        with self._tx() as q:
            q("INSERT INTO approvals (approval_id, thread_id, run_id, tool_call_id, tool, args_json,"
              " args_hash, preview, rule_id, reason, policy_version, subject_id, created_at,"
              " expires_at, workflow) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
              (approval_id, thread_id, run_id, tool_call_id, tool, dumps(dict(args)),
               args_hash(args), preview, rule_id, reason, policy_version, subject_id,
               created.isoformat(timespec="microseconds"), expires, workflow))
        return self.approval(approval_id)

    def approval(self, approval_id: str) -> Approval:
        rows = self._read("SELECT * FROM approvals WHERE approval_id=?", (approval_id,))
        if not rows:
            raise ApprovalError(approval_id=approval_id, reason="no such approval; run "
                                "`tether approvals list` to see pending ones")
        return approval_from_columns(rows[0])

    def approvals(self, *, status: ApprovalStatus | None = "pending",
                  thread_id: str | None = None) -> list[Approval]:
        q, params = "SELECT * FROM approvals WHERE 1=1", list[str]()
        if status is not None:
            q += " AND status=?"
            params.append(status)
        if thread_id is not None:
            q += " AND thread_id=?"
            params.append(thread_id)
        return [approval_from_columns(r) for r in self._read(q + " ORDER BY created_at", params)]

    def decide(self, approval_id: str, *, status: ApprovalStatus, decided_by: str,
               decision: Mapping[str, Any], durable: bool = True) -> Approval:
        """Record a human decision once. A second decision is refused, across processes.

        ``durable=False`` leaves it to the caller to ``sync()`` before the decision is acknowledged."""
        if status == "pending":
            raise ValueError("a decision cannot be 'pending'")
        with self._write(durable=durable) as q:
            _, n = q("UPDATE approvals SET status=?, decided_by=?, decision_json=?, decided_at=?"
                     " WHERE approval_id=? AND status='pending'",
                     (status, decided_by, dumps(dict(decision)), now(), approval_id))
            if n != 1:
                rows, _ = q("SELECT status FROM approvals WHERE approval_id=?", (approval_id,))
                reason = (f"already {rows[0]['status']}; decisions are final" if rows
                          else "no such approval; run `tether approvals list`")
                raise ApprovalError(approval_id=approval_id, reason=reason)
        return self.approval(approval_id)
