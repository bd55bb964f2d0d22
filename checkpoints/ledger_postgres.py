"""PostgreSQL ledger backend (the ``postgres`` extra: psycopg 3).

An append is one statement when it can: its rows are chained to the head this connection last
wrote, and the statement moves the single ``ledger_head`` row and adds them only if that row is
still that head (an ``UPDATE`` that another writer's concurrent move makes match nothing, and
then nothing is added). Otherwise (the first append, another writer moved the head, a caller's
transaction is open) appends are serialized by ``SELECT ... FOR UPDATE`` on that row, so
concurrent writers from many processes each link to the true head and take the next ``seq``
(no sequence object: a rolled-back append leaves no gap). Migrations run under a
transaction-scoped advisory lock so several processes may open a fresh database at once.

A row that need not be durable at once (``_write(durable=False)``: routing, decisions, reads,
a write's completion) commits with ``synchronous_commit`` off for its transaction: the server
has it (a crash of this process loses nothing) and writes it to disk with its log, within
``wal_writer_delay``; a durable commit (a write's intent, a human decision, ``sync()``) waits
for the flush, which covers every earlier commit, since the log is written in order.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tether.checkpoints.chain import GENESIS
from tether.checkpoints.ledger import _INSERT, Ledger, Query, chained
from tether.checkpoints.migrations import migrate
from tether.checkpoints.records import COLUMNS
from tether.checkpoints.row_text import pg_text_sql
from tether.checkpoints.vouch import Range, in_order, ranges, vouched
from tether.errors import LedgerError, MissingExtra

__all__ = ["PostgresLedger", "redact"]

_MIGRATION_LOCK = 0x7E7E_1ED6  # pg_advisory_xact_lock key for schema migrations
_INSERT_HEAD, _ROW = _INSERT[: _INSERT.index("VALUES ") + len("VALUES ")], _INSERT[_INSERT.index("VALUES ") + len("VALUES "):]
"""The insert statement up to its values, and one row's placeholders."""
_ROWS_PER_INSERT = 1000
"""Rows one ``INSERT`` carries (PostgreSQL takes at most 65,535 parameters a statement)."""
_IDLE = 0
"""``psycopg.pq.TransactionStatus.IDLE``: no transaction open on the connection."""
_CAST = {"text": "text", "int": "bigint", "real": "float8"}
_TYPED_ROW = "(?::bigint, ?::text, ?::text, " + ", ".join(f"?::{_CAST[k]}" for _, k in COLUMNS) + ")"
"""One row's placeholders with their column types (a ``VALUES`` list in a query has no table to
take them from; every row carries the casts, so no row's parameter types can disagree)."""
_EVENT_COLUMNS = "seq, prev_hash, row_hash, " + ", ".join(c for c, _ in COLUMNS)
_AT_HEAD = (
    "WITH moved AS (UPDATE ledger_head SET seq=?, row_hash=? WHERE id=1 AND seq=? AND row_hash=? RETURNING 1),"
    f" added AS (INSERT INTO ledger_events ({_EVENT_COLUMNS})"
    " SELECT * FROM (VALUES {rows}) AS v WHERE EXISTS (SELECT 1 FROM moved))"
    " SELECT (SELECT count(*) FROM moved) AS moved{relax}"
)
"""Rows chained to the head this connection last wrote, in one statement (one round trip, one
commit): added only if the head is still the one they were chained to; else nothing is."""


_CHECK_BATCH = 20_000
_CHECKERS = 2
"""Connections that check batches at once (the server does the work; 2 keeps two cores busy)."""
_CHECK_SQL = f"""SELECT seq, prev_hash, row_hash, fine, bseq, bprev, bhash FROM (
  SELECT seq, prev_hash, row_hash, bseq, bprev, bhash, nseq,
         coalesce(ok AND CASE WHEN bseq IS NULL THEN seq = 1 AND prev_hash = '{GENESIS}'
                              ELSE seq = bseq + 1 AND prev_hash = bhash END, false) AS fine
  FROM (SELECT seq, prev_hash, row_hash, ok, lag(seq) OVER w AS bseq, lag(prev_hash) OVER w AS bprev,
               lag(row_hash) OVER w AS bhash, lead(seq) OVER w AS nseq
        FROM (SELECT seq, prev_hash, row_hash,
                     'sha256:' || encode(sha256(convert_to({pg_text_sql()}, 'UTF8')), 'hex') = row_hash AS ok
              FROM ledger_events WHERE seq >= ? AND seq <= ? OFFSET 0) h  -- hash first, sort narrow rows
        WINDOW w AS (ORDER BY seq)) l) f
WHERE seq > ? AND (NOT fine OR nseq IS NULL) ORDER BY seq"""
"""One batch checked by the server, each row against the one before it (the previous batch's last
row is read again for that): only rows it cannot vouch for and the batch's last row come back,
each with the row before it (the end of the run the server vouched for)."""


def redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class PostgresLedger(Ledger):
    """PostgreSQL-backed ledger; open with ``Ledger.open("postgresql://...")``."""

    def __init__(self, conn: Any, *, url: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._commits = 0
        self._relaxed = False
        """The open write transaction need not wait for the log's flush when it commits."""
        self._durable_at = 0
        """``_commits`` when the last durable ledger write of this connection committed."""
        self._head: tuple[int, str] | None = None
        """The head as this connection's last append left it (another writer may have moved it)."""
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
            conn.execute("SET extra_float_digits = 1")  # float text: the shortest round trip
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

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[Query]:
        with self._lock:
            nested = self._in_transaction()  # then it commits with the caller's transaction
            with self._tx() as q:
                self._relaxed = not durable and not nested  # this transaction only: the default stays durable
                try:
                    yield q
                    if self._relaxed:  # no head lock took it along (see ``_lock_head``)
                        q("SET LOCAL synchronous_commit TO OFF")
                finally:
                    self._relaxed = False
            self._commits += 1
            if durable:
                self._durable_at = self._commits


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
        relax = ", set_config('synchronous_commit', 'off', true)" if self._relaxed else ""
        rows, _ = q(f"SELECT seq, row_hash{relax} FROM ledger_head WHERE id=1 FOR UPDATE")  # one round trip
        self._relaxed = False
        return (int(rows[0]["seq"]), str(rows[0]["row_hash"])) if rows else (0, GENESIS)

    def _append_rows(self, stamped: Sequence[Sequence[Any]], *, durable: bool) -> list[tuple[Any, ...]]:
        """Rows chained to the head this connection last left, in one statement; where another
        writer has moved the head since (or none is known), under the head's lock instead."""
        with self._lock:
            head, self._head = self._head, None
            if head is not None and not self._in_transaction() and len(stamped) <= _ROWS_PER_INSERT:
                params = chained(stamped, *head)
                if self._added_at_head(params, head, durable=durable):
                    self._head = (params[-1][0], params[-1][2])
                    return params
            params = super()._append_rows(stamped, durable=durable)
            self._head = (params[-1][0], params[-1][2])
            return params

    def _in_transaction(self) -> bool:
        """A caller's transaction is open on the connection (its appends commit with it)."""
        return bool(self._conn.info.transaction_status != _IDLE)

    def _added_at_head(self, params: list[tuple[Any, ...]], head: tuple[int, str], *, durable: bool) -> bool:
        relax = "" if durable else ", set_config('synchronous_commit', 'off', true) AS relaxed"
        sql = _AT_HEAD.format(rows=", ".join([_TYPED_ROW] * len(params)), relax=relax)
        rows, _ = self._run(sql, [params[-1][0], params[-1][2], *head, *(v for row in params for v in row)])
        if not rows[0]["moved"]:
            return False
        self._commits += 1
        if durable:
            self._durable_at = self._commits
        return True

    def _insert_many(self, q: Query, params: list[tuple[Any, ...]]) -> None:
        """Rows in as few statements (and round trips) as the parameter limit allows."""
        for i in range(0, len(params), _ROWS_PER_INSERT):
            batch = params[i:i + _ROWS_PER_INSERT]
            q(_INSERT_HEAD + ", ".join([_ROW] * len(batch)), [v for row in batch for v in row])

    def _verify_rows(self, upto: int) -> Iterator[Sequence[Any]]:
        """Rows the server vouches for come back as ``Checked`` runs (``tether.checkpoints.vouch``);
        batches are checked on ``_CHECKERS`` connections at once, and their results taken in order."""
        return vouched(self._checked_batches(upto), load=self._chain_row,
                       raw=lambda lo, hi: self._chain_rows(hi, after=lo))

    def _checked_batches(self, upto: int) -> Iterator[Range]:
        spans = ranges(upto, _CHECK_BATCH)

        def here(led: PostgresLedger, lo: int, hi: int) -> Range:
            return (lo, hi, [(*r[:3], bool(r[3]), *r[4:]) for r in led._read_tuples(_CHECK_SQL, (max(lo, 1), hi, lo))])

        if len(spans) < 2 or _CHECKERS < 2:
            yield from (here(self, lo, hi) for lo, hi in spans)
            return
        extra = [self.connect(self.url) for _ in range(_CHECKERS - 1)]
        try:
            yield from in_order(spans, [self, *extra], here)
        finally:
            for led in extra:
                led.close()
