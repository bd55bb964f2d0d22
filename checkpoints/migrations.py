"""Named, append-only ledger schema migrations, for SQLite and PostgreSQL.

Never edit or reorder a released migration; add a new one at the end. Each backend records
the names it applied in ``schema_migrations``; the last name is ``SCHEMA_VERSION``.

    0001_events_and_approvals   event rows and the approval queue
    0002_hash_chain             prev_hash/row_hash on every row (existing rows backfilled),
                                the ledger_head record, one successor per row
    0003_subjects_and_expiry    customer_id -> subject_id; approval expiry and workflow
    0004_evidence_columns       citation-gate findings and content flags per event
    0005_append_only_indexes    drop the unique index on prev_hash: its random keys made every
                                commit rewrite pages all over it; a fork is refused by the
                                seq primary key under the head lock, and found by verify
    0006_wide_step              PostgreSQL: the step column holds 64-bit integers, as SQLite's
                                always has (nothing changes on SQLite)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from tether.checkpoints.chain import GENESIS, row_hash
from tether.checkpoints.columns import now

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Dialect", "migrate"]

Dialect = Literal["sqlite", "postgres"]


class _Query(Protocol):
    def __call__(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[dict[str, Any]], int]: ...


Step = str | Callable[[_Query], None]


def _events_and_approvals(d: Dialect) -> list[Step]:
    seq = "INTEGER PRIMARY KEY AUTOINCREMENT" if d == "sqlite" else "BIGINT PRIMARY KEY"
    real = "REAL" if d == "sqlite" else "DOUBLE PRECISION"
    return [
        f"""CREATE TABLE ledger_events (
          seq {seq}, event_id TEXT NOT NULL UNIQUE, ts TEXT NOT NULL, thread_id TEXT NOT NULL,
          run_id TEXT NOT NULL, step INTEGER, event TEXT NOT NULL, tool_call_id TEXT, tool TEXT,
          tool_schema_version TEXT, args_json TEXT, args_hash TEXT, decision TEXT, rule_id TEXT,
          matched_rules TEXT, policy_version TEXT, approval_id TEXT, approver TEXT,
          evidence TEXT, result_json TEXT, error TEXT, detail TEXT, model_id TEXT,
          principal TEXT, customer_id TEXT, spend_usd {real}, idempotency_key TEXT)""",
        "CREATE INDEX ledger_events_thread ON ledger_events(thread_id, seq)",
        "CREATE INDEX ledger_events_idem ON ledger_events(idempotency_key, event)",
        """CREATE TABLE approvals (
          approval_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, run_id TEXT NOT NULL,
          tool_call_id TEXT NOT NULL, tool TEXT NOT NULL, args_json TEXT NOT NULL,
          args_hash TEXT NOT NULL, preview TEXT NOT NULL, rule_id TEXT NOT NULL,
          reason TEXT NOT NULL, policy_version TEXT NOT NULL, customer_id TEXT,
          status TEXT NOT NULL DEFAULT 'pending', decided_by TEXT, decision_json TEXT,
          created_at TEXT NOT NULL, decided_at TEXT, UNIQUE (thread_id, tool_call_id))""",
    ]


def _backfill_chain(q: _Query) -> None:
    """Hash-chain rows written before 0002, in ``seq`` order."""
    prev, last = GENESIS, 0
    rows, _ = q("SELECT * FROM ledger_events ORDER BY seq")
    for r in rows:
        h = row_hash(r, seq=int(r["seq"]), prev_hash=prev, version=1)
        q("UPDATE ledger_events SET prev_hash=?, row_hash=? WHERE seq=?", (prev, h, r["seq"]))
        prev, last = h, int(r["seq"])
    q("INSERT INTO ledger_head (id, seq, row_hash) VALUES (1, ?, ?)", (last, prev))


def _hash_chain(d: Dialect) -> list[Step]:
    return [
        "ALTER TABLE ledger_events ADD COLUMN prev_hash TEXT",
        "ALTER TABLE ledger_events ADD COLUMN row_hash TEXT",
        "CREATE TABLE ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL,"
        " row_hash TEXT NOT NULL)",
        _backfill_chain,
        "CREATE UNIQUE INDEX ledger_events_prev ON ledger_events(prev_hash)",
    ]


def _subjects_and_expiry(d: Dialect) -> list[Step]:
    return [
        "ALTER TABLE ledger_events RENAME COLUMN customer_id TO subject_id",
        "ALTER TABLE approvals RENAME COLUMN customer_id TO subject_id",
        "ALTER TABLE approvals ADD COLUMN expires_at TEXT",
        "ALTER TABLE approvals ADD COLUMN workflow TEXT",
    ]


def _evidence_columns(d: Dialect) -> list[Step]:
    return [
        "ALTER TABLE ledger_events ADD COLUMN citations TEXT",
        "ALTER TABLE ledger_events ADD COLUMN flags TEXT",
    ]


def _append_only_indexes(d: Dialect) -> list[Step]:
    return ["DROP INDEX IF EXISTS ledger_events_prev"]


def _wide_step(d: Dialect) -> list[Step]:
    return ["ALTER TABLE ledger_events ALTER COLUMN step TYPE BIGINT"] if d == "postgres" else []


MIGRATIONS: tuple[tuple[str, Callable[[Dialect], list[Step]]], ...] = (
    ("0001_events_and_approvals", _events_and_approvals),
    ("0002_hash_chain", _hash_chain),
    ("0003_subjects_and_expiry", _subjects_and_expiry),
    ("0004_evidence_columns", _evidence_columns),
    ("0005_append_only_indexes", _append_only_indexes),
    ("0006_wide_step", _wide_step),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(q: _Query, dialect: Dialect) -> list[str]:
    """Apply missing migrations inside the caller's (locked) transaction; return their names."""
    q("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {r["name"] for r in q("SELECT name FROM schema_migrations")[0]}
    applied = []
    for name, steps in MIGRATIONS:
        if name in done:
            continue
        for step in steps(dialect):
            if callable(step):
                step(q)
            else:
                q(step)
        q("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, now()))
        applied.append(name)
    return applied
