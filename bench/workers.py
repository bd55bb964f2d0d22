"""Runs/s of the support desk drained from one PostgreSQL run queue by 1, 2 and 4 worker processes.

    TETHER_TEST_PG_URL=postgresql://... .venv/bin/python bench/workers.py [--scale tiny|full]

Each worker count gets a fresh PostgreSQL schema (ledger, checkpoints, limits and queue in it)
and a fresh data directory (the business database and KB). Workers start and warm up first;
the clock runs from enqueueing the measured jobs until the queue is empty. The mix: policy
questions, phone updates and $18 refunds (writes the policy allows without a human).
Without ``TETHER_TEST_PG_URL`` (or ``--pg``) nothing is measured and the result says why.
Ratios come from one run, so they are comparable even on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tether.checkpoints.queue_postgres import RunJob, RunQueue
from tether.config import Home
from tether.graphs.session import Session

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ledger_rates import pg_schema  # noqa: E402

COUNTS = (1, 2, 4)
JOBS = {"tiny": 12, "full": 160}


def jobs(world: Path, n: int, tag: str) -> list[RunJob]:
    db = sqlite3.connect(world)
    customers = [r[0] for r in db.execute("SELECT id FROM customers ORDER BY id")]
    orders = db.execute("SELECT id, customer_id FROM orders WHERE status = 'delivered' AND total_usd >= 20"
                        " ORDER BY id").fetchall()
    db.close()
    out = []
    for i in range(n):
        tid, cid = f"{tag}-{i:04d}", customers[i % len(customers)]
        if i % 3 == 0:
            text = "How long does standard shipping take? shipping policy"
        elif i % 3 == 1:
            text = f"Please update my phone to +1-555-{3000 + i}"
        else:
            oid, cid = orders[(i // 3) % len(orders)]
            text = f"I need a refund of $18 for the damaged item in order {oid}"
        out.append(RunJob.start(text, thread_id=tid, subject=cid))
    return out


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def measure(base_url: str, workers: int, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, pg_schema(base_url) as url:
        home = Home(root=Path(tmp) / "home")
        env = {**os.environ, "TETHER_HOME": str(home.root), "TETHER_LEDGER_URL": url,
               "TETHER_CHECKPOINT_URL": url, "TETHER_LIMITS_URL": url, "TETHER_QUEUE_URL": url}
        old = {k: os.environ.get(k) for k in env if k.startswith("TETHER_")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("TETHER_")})
        try:
            with Session.open("support", home=home):  # world, KB and schemas before the workers start
                pass
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        world = home.root / "world" / "support.sqlite"
        procs = [subprocess.Popen([sys.executable, "-m", "tether.graphs.worker", "support", "--lease", "30",
                                   "--worker-id", f"w{k}"], env=env, cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k in range(workers)]
        try:
            with RunQueue.connect(url) as queue:
                warm = jobs(world, 4 * workers, "warm")
                queue.enqueue(*warm)

                def warmed() -> bool:
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError("a worker exited during warm-up")
                    started = {j["worker"] for j in queue.jobs() if j["worker"]}
                    if queue.counts().open == 0 and len(started) < workers:
                        queue.enqueue(*jobs(world, workers, f"warm{uuid.uuid4().hex[:6]}"))
                    return len(started) == workers and queue.counts().open == 0

                _wait(warmed, 120, "the workers to start")
                measured = jobs(world, n, "run")
                t0 = time.perf_counter()
                queue.enqueue(*measured)
                _wait(lambda: queue.counts().open == 0, 60 + n, "the queue to drain")
                seconds = time.perf_counter() - t0
                counts = queue.counts()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    if counts.failed:
        raise RuntimeError(f"{counts.failed} jobs failed with {workers} workers")
    return {"workers": workers, "runs": n, "seconds": round(seconds, 3), "runs_per_s": round(n / seconds, 2)}


def run(scale: str = "full", *, pg_url: str | None = None) -> dict[str, Any]:
    """Runs/s per worker count and the speed-up over one worker; ``skipped`` without PostgreSQL."""
    if scale not in JOBS:
        raise ValueError(f"scale {scale!r}: use one of {sorted(JOBS)}")
    url = pg_url or os.environ.get("TETHER_TEST_PG_URL")
    if not url:
        return {"scale": scale, "skipped": "no PostgreSQL: set TETHER_TEST_PG_URL (e.g. eval "
                "\"$(.ci/start-postgres.sh)\") or run through .ci/with-postgres.sh"}
    rows = [measure(url, k, JOBS[scale]) for k in COUNTS]
    one = rows[0]["runs_per_s"]
    for r in rows:
        r["speedup"] = round(r["runs_per_s"] / one, 2)
    return {"scale": scale, "cpus": os.cpu_count(), "results": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="full", choices=sorted(JOBS))
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: TETHER_TEST_PG_URL)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    out = run(args.scale, pg_url=args.pg)
    if args.json:
        print(json.dumps(out, indent=2))
    elif "skipped" in out:
        print(f"workers    skipped: {out['skipped']}")
    else:
        for r in out["results"]:
            print(f"workers {r['workers']}: {r['runs_per_s']:8.2f} runs/s  x{r['speedup']:.2f}"
                  f"  ({r['runs']} runs in {r['seconds']:.1f}s, {out['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
