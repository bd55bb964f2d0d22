"""A worker: claim a job from the shared run queue, drive its thread through ``Session``, complete it.

    TETHER_LEDGER_URL=postgresql://... TETHER_CHECKPOINT_URL=postgresql://... \\
        tether worker support --lease 30

Any number of workers (processes, machines) drain one queue (``tether.checkpoints.queue_postgres``)
while ledger, checkpoints, approvals and rate limits all live in the same PostgreSQL. A ``run``
job starts its request with ``Session.run``; a ``resume`` job (enqueued by whoever recorded a
decision with ``Session.decide(..., resume=False)``) continues the thread with ``Session.resume``.
While a job runs, a background thread renews its lease. When a worker dies its lease expires
and another worker claims the job again: a ``run`` job whose thread already exists is then
continued from its last checkpoint instead of being started twice, and the ledger's
idempotency keys keep every write to exactly one execution. A tether error marks the job
``failed``; any other exception stops the worker, and the job's lease expires for another to retry.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tether.checkpoints.queue_postgres import Claim, LeaseLost, RunQueue
from tether.config import Home
from tether.errors import TetherError
from tether.graphs.session import RunResult, Session

__all__ = ["WorkerStats", "drive", "main", "work"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerStats:
    """What one worker did before it stopped."""

    worker: str
    done: int = 0
    """Jobs completed."""
    failed: int = 0
    """Jobs that raised a tether error (marked failed in the queue)."""
    lost: int = 0
    """Jobs whose lease was taken over before this worker finished them."""


def drive(session: Session, claim: Claim) -> RunResult:
    """Do one claimed job on ``session``; safe to repeat after a worker died part-way through it."""
    job = claim.job
    if job.kind == "resume":
        return session.resume(job.thread_id)
    snap = session.app.get_state(session.config(job.thread_id))
    if not snap.values and not snap.tasks:  # the thread does not exist yet: start it
        return session.run(job.text, thread_id=job.thread_id, subject=job.subject)
    if session.waiting(job.thread_id):  # an earlier holder got as far as the approval request
        return session.result(job.thread_id)
    return session.resume(job.thread_id)  # continue after a crash (a finished thread stays as it is)


class _Lease:
    """Renews a claim's lease every third of its length until stopped."""

    def __init__(self, queue: RunQueue, claim: Claim) -> None:
        self._queue, self._claim = queue, claim
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._loop, name=f"lease-{claim.job.job_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._claim.lease_seconds / 3):
            try:
                self._queue.heartbeat(self._claim)
            except LeaseLost:
                self.lost = True
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def work(session: Session, queue: RunQueue, *, worker: str, lease_seconds: float = 30.0,
         idle_exit: float | None = None, max_jobs: int | None = None, poll: float = 0.2,
         should_stop: Callable[[], bool] = lambda: False) -> WorkerStats:
    """Claim and drive jobs until ``max_jobs`` are done, ``should_stop()``, or the queue has had
    nothing claimable for ``idle_exit`` seconds (``None``: wait for work forever)."""
    done = failed = lost = 0
    idle_since = time.monotonic()
    while not should_stop() and (max_jobs is None or done + failed < max_jobs):
        claim = queue.claim(worker=worker, lease_seconds=lease_seconds)
        if claim is None:
            if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
            time.sleep(poll)
            continue
        lease = _Lease(queue, claim)
        try:
            result: RunResult | None = drive(session, claim)
            error = None
        except TetherError as exc:  # e.g. a resume job for a decision that was never recorded
            result, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            lease.stop()
        try:
            if error is None and result is not None:
                queue.complete(claim, outcome=result.status)
                done += 1
            else:
                queue.fail(claim, error=error or "no result")
                failed += 1
        except LeaseLost:
            lost += 1
        idle_since = time.monotonic()
    return WorkerStats(worker=worker, done=done, failed=failed, lost=lost)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether worker", description="Drain the shared run queue on PostgreSQL "
                                "(ledger, checkpoints and limits from TETHER_LEDGER_URL / TETHER_CHECKPOINT_URL).")
    p.add_argument("workflow", nargs="?", default="support", help="workflow name (default: support)")
    p.add_argument("--queue-url", default=None,
                   help="PostgreSQL URL of the queue (default: TETHER_QUEUE_URL, else TETHER_LEDGER_URL)")
    p.add_argument("--worker-id", default=None, help="name in the queue (default: host:pid)")
    p.add_argument("--lease", type=float, default=30.0, help="lease length in seconds (default: 30)")
    p.add_argument("--idle-exit", type=float, default=None,
                   help="stop after this many seconds without claimable work (default: run forever)")
    p.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs")
    p.add_argument("--principal", default=None, help="principal the runs act as")
    p.add_argument("--policy", default=None, help="policy file (default: the workflow's own)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``tether worker``: returns 0 when it stopped normally (idle, ``--max-jobs``, SIGTERM), 2 on a
    configuration error."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    home = Home.from_env()
    url = args.queue_url or os.environ.get("TETHER_QUEUE_URL") or home.ledger_url
    worker = args.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    stop = threading.Event()  # SIGTERM / SIGINT: finish the job in hand, then stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with RunQueue.connect(url) as queue, Session.open(args.workflow, home=home, policy=args.policy,
                                                          principal=args.principal) as s:
            stats = work(s, queue, worker=worker, lease_seconds=args.lease, idle_exit=args.idle_exit,
                         max_jobs=args.max_jobs, should_stop=stop.is_set)
    except TetherError as exc:  # unusable URL, policy file, workflow name: nothing was claimed
        print(f"tether worker: {exc}", file=sys.stderr)
        return 2
    print(f"worker {stats.worker}: {stats.done} done, {stats.failed} failed, {stats.lost} lost")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
