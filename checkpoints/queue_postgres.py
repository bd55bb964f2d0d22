"""A run queue on PostgreSQL that several worker processes drain (the ``postgres`` extra).

    queue = RunQueue.connect("postgresql://...")
    queue.enqueue(RunJob.start("Refund $40 on O-20417", thread_id="T1", subject="C-1042"))
    claim = queue.claim(worker="w1", lease_seconds=30)      # None when nothing is claimable
    queue.heartbeat(claim)                                  # extend the lease while running
    queue.complete(claim, status="awaiting_approval")       # or queue.fail(claim, error=...)

A claim takes the oldest claimable job with ``FOR UPDATE SKIP LOCKED``, so workers never
wait for each other and never take the same job. Every claim holds a lease (``expires_at``)
and a fresh token: a worker that dies stops renewing it, and once it expires the job is
claimable again. ``complete``, ``fail`` and ``heartbeat`` act only while the caller's token
still holds the job; a worker whose lease was taken over gets ``LeaseLost``. Jobs of one
thread are handed out in order, one at a time: a thread's resume job waits until its earlier
jobs are finished, so two workers never drive one thread at once. A job whose lease expired
``max_attempts`` times is marked ``failed`` instead of being handed out again.

Table ``tether_run_queue`` (created on connect, under an advisory lock).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.errors import ConfigError, MissingExtra, TetherError

__all__ = ["Claim", "JobKind", "JobStatus", "LeaseLost", "QueueCounts", "RunJob", "RunQueue"]

JobKind = Literal["run", "resume"]
JobStatus = Literal["queued", "claimed", "done", "failed"]
_SCHEMA_LOCK = 0x7E7E_0C0E  # pg_advisory_xact_lock key for creating the table
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tether_run_queue ("
    " seq BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL CHECK (kind IN ('run', 'resume')), thread_id TEXT NOT NULL,"
    " payload JSONB NOT NULL, status TEXT NOT NULL DEFAULT 'queued'"
    " CHECK (status IN ('queued', 'claimed', 'done', 'failed')),"
    " attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, token TEXT, expires_at TIMESTAMPTZ,"
    " enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(), finished_at TIMESTAMPTZ, outcome TEXT, error TEXT)",
    "CREATE INDEX IF NOT EXISTS tether_run_queue_open ON tether_run_queue (seq) WHERE status IN ('queued', 'claimed')",
    "CREATE INDEX IF NOT EXISTS tether_run_queue_thread ON tether_run_queue (thread_id, seq)",
)
_CLAIMABLE = (
    "(q.status = 'queued' OR (q.status = 'claimed' AND q.expires_at < now()))"
    " AND NOT EXISTS (SELECT 1 FROM tether_run_queue e WHERE e.thread_id = q.thread_id AND e.seq < q.seq"
    " AND e.status IN ('queued', 'claimed'))"
)


class LeaseLost(TetherError):
    """The job's lease expired and another worker took it over; this worker must drop the job."""

    def __init__(self, *, job_id: str, worker: str) -> None:
        self.job_id, self.worker = job_id, worker
        super().__init__(f"job {job_id}: worker {worker} no longer holds its lease (it expired and the job "
                         "was claimed again); leave the job to the new holder and heartbeat more often")


@dataclass(frozen=True, kw_only=True, slots=True)
class RunJob:
    """One unit of work: start a request on a thread, or resume a thread after a decision."""

    kind: JobKind
    """``run``: ``Session.run(text, subject=...)``; ``resume``: ``Session.resume(thread_id)``."""
    thread_id: str
    """The thread the job drives; jobs of one thread run in order, one at a time."""
    text: str = ""
    """The request (``run`` jobs)."""
    subject: str | None = None
    """The party the run acts for (``run`` jobs)."""
    job_id: str = field(default_factory=lambda: f"J-{uuid.uuid4().hex[:16]}")
    """Unique id; enqueueing the same id twice keeps the first job."""

    @classmethod
    def start(cls, text: str, *, thread_id: str, subject: str | None = None, job_id: str | None = None) -> RunJob:
        return cls(kind="run", thread_id=thread_id, text=text, subject=subject,
                   **({"job_id": job_id} if job_id else {}))

    @classmethod
    def resume(cls, thread_id: str, *, job_id: str | None = None) -> RunJob:
        return cls(kind="resume", thread_id=thread_id, **({"job_id": job_id} if job_id else {}))


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    """A job held by one worker until its lease expires."""

    job: RunJob
    worker: str
    """Who holds it."""
    token: str
    """Names this claim; a later claim of the same job gets a new token."""
    attempt: int
    """1 for the first claim; more when earlier holders' leases expired."""
    lease_seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueCounts:
    """Jobs per status."""

    queued: int = 0
    claimed: int = 0
    done: int = 0
    failed: int = 0

    @property
    def open(self) -> int:
        """Jobs not finished yet (queued, or claimed and maybe expired)."""
        return self.queued + self.claimed


class RunQueue:
    """The shared queue; one connection, safe to use from several threads of one process."""

    def __init__(self, conn: Any, *, url: str, max_attempts: int = 5) -> None:
        if max_attempts < 1:
            raise ConfigError(setting="max_attempts", reason=f"{max_attempts}: must be at least 1")
        self._conn, self.url, self.max_attempts = conn, url, max_attempts
        self._lock = threading.RLock()
        with self._tx() as q:
            q("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for stmt in _SCHEMA:
                q(stmt, ())

    @classmethod
    def connect(cls, url: str, *, max_attempts: int = 5) -> RunQueue:
        """Open the queue at a ``postgresql://`` URL (creating its table on first use)."""
        from tether.checkpoints.ledger_postgres import redact

        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(setting="queue URL", reason=f"{redact(url)!r}: the run queue needs a "
                              "postgresql:// URL (e.g. the ledger's, TETHER_LEDGER_URL)")
        try:
            import psycopg
        except ImportError:
            raise MissingExtra(extra="postgres", feature="the run queue") from None
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ConfigError(setting=f"queue URL {redact(url)}", reason=str(exc).strip()) from None
        return cls(conn, url=url, max_attempts=max_attempts)

    def __enter__(self) -> RunQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        def q(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            cur = self._conn.execute(sql, tuple(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

        with self._lock, self._conn.transaction():
            yield q

    def enqueue(self, *jobs: RunJob) -> int:
        """Add jobs (in order); returns how many were new (a known ``job_id`` is kept as it was)."""
        for j in jobs:
            if j.kind == "run" and not j.text.strip():
                raise ConfigError(setting=f"job {j.job_id}", reason="a run job needs the request text")
        added = 0
        with self._tx() as q:
            for j in jobs:
                rows = q("INSERT INTO tether_run_queue (job_id, kind, thread_id, payload) VALUES (%s, %s, %s, %s)"
                         " ON CONFLICT (job_id) DO NOTHING RETURNING seq",
                         (j.job_id, j.kind, j.thread_id, json.dumps({"text": j.text, "subject": j.subject})))
                added += len(rows)
        return added

    def claim(self, *, worker: str, lease_seconds: float = 30.0) -> Claim | None:
        """Take the oldest claimable job under a lease, or ``None`` when there is none right now."""
        if lease_seconds <= 0:
            raise ConfigError(setting="lease_seconds", reason=f"{lease_seconds}: must be positive")
        token = uuid.uuid4().hex
        with self._tx() as q:
            q("UPDATE tether_run_queue SET status = 'failed', finished_at = now(), error = %s"
              " WHERE status = 'claimed' AND expires_at < now() AND attempts >= %s",
              (f"lease expired {self.max_attempts} times; the job is not handed out again", self.max_attempts))
            rows = q(
                "UPDATE tether_run_queue SET status = 'claimed', worker = %s, token = %s, attempts = attempts + 1,"
                " expires_at = now() + make_interval(secs => %s)"
                f" WHERE seq = (SELECT q.seq FROM tether_run_queue q WHERE {_CLAIMABLE}"
                " ORDER BY q.seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING job_id, kind, thread_id, payload, attempts",
                (worker, token, lease_seconds))
        if not rows:
            return None
        job_id, kind, thread_id, payload, attempts = rows[0]
        job = RunJob(kind=kind, thread_id=thread_id, text=payload.get("text") or "",
                     subject=payload.get("subject"), job_id=job_id)
        return Claim(job=job, worker=worker, token=token, attempt=attempts, lease_seconds=lease_seconds)

    def _held(self, claim: Claim, sql: str, params: Sequence[Any]) -> None:
        with self._tx() as q:
            rows = q(f"{sql} WHERE job_id = %s AND token = %s AND status = 'claimed' RETURNING seq",
                     (*params, claim.job.job_id, claim.token))
        if not rows:
            raise LeaseLost(job_id=claim.job.job_id, worker=claim.worker)

    def heartbeat(self, claim: Claim) -> None:
        """Extend the lease by ``claim.lease_seconds`` from now; ``LeaseLost`` if it was taken over."""
        self._held(claim, "UPDATE tether_run_queue SET expires_at = now() + make_interval(secs => %s)",
                   (claim.lease_seconds,))

    def complete(self, claim: Claim, *, outcome: str) -> None:
        """Mark the job done with where its thread stands (e.g. ``resolved``, ``awaiting_approval``)."""
        self._held(claim, "UPDATE tether_run_queue SET status = 'done', finished_at = now(), outcome = %s",
                   (outcome,))

    def fail(self, claim: Claim, *, error: str) -> None:
        """Mark the job failed (not handed out again); later jobs of its thread become claimable."""
        self._held(claim, "UPDATE tether_run_queue SET status = 'failed', finished_at = now(), error = %s",
                   (error[:2000],))

    def counts(self) -> QueueCounts:
        with self._tx() as q:
            rows = q("SELECT status, count(*) FROM tether_run_queue GROUP BY status", ())
        return QueueCounts(**{status: int(n) for status, n in rows})

    def jobs(self, *, status: JobStatus | None = None) -> list[dict[str, Any]]:
        """Jobs in queue order as plain rows (for reports and tests)."""
        cols = ("job_id", "kind", "thread_id", "status", "attempts", "worker", "outcome", "error")
        with self._tx() as q:
            rows = q(f"SELECT {', '.join(cols)} FROM tether_run_queue"
                     + (" WHERE status = %s" if status else "") + " ORDER BY seq", (status,) if status else ())
        return [dict(zip(cols, r, strict=True)) for r in rows]
