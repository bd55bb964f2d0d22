"""Four worker processes drain one run queue on one PostgreSQL; one is SIGKILLed midway.

Ledger, checkpoints, approvals, rate limits and the queue all live in one PostgreSQL schema;
the support desk's business database (the target system) is a SQLite file the processes share.
The queue holds 400 runs: policy questions, phone updates (rate-limited per customer to 2 an
hour by a copy of the policy) and $30-$40 refunds that need a lead's approval, which a separate
process records with ``Session.decide(..., resume=False)`` and follows with a resume job.
Afterwards every write executed exactly once, every approval was decided once and applied,
the shared rate limit held exactly, the chain verifies and no tether state is in a local file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgschema import fresh_schema, pg_base_url

from tether.checkpoints.ledger import Ledger
from tether.checkpoints.queue_postgres import RunJob, RunQueue
from tether.config import Home
from tether.graphs.session import Session

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = (ROOT / "agents" / "support" / "agent-policy.yaml").read_text()
PHONE_LIMIT = 2
JOBS = 400
LEAD = "lead@example.com"

DECIDER = textwrap.dedent("""
    import sys, time
    from tether.checkpoints.queue_postgres import RunJob, RunQueue
    from tether.config import Home
    from tether.errors import ApprovalError
    from tether.graphs.session import Session
    from tether.graphs.state import Approve

    expected, policy, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    decided, deadline = 0, time.monotonic() + 300
    with Session.open("support", home=Home.from_env(), policy=policy) as s, RunQueue.connect(url) as queue:
        while decided < expected and time.monotonic() < deadline:
            for p in s.pending():
                try:
                    s.decide(p.approval.approval_id, Approve(approver="LEAD"), resume=False)
                except ApprovalError:  # the thread has not reached its approval checkpoint yet
                    continue
                queue.enqueue(RunJob.resume(p.approval.thread_id, job_id="resume-" + p.approval.approval_id))
                decided += 1
            time.sleep(0.2)
    print(decided)
""").replace("LEAD", LEAD)


def limited_policy(path: Path) -> Path:
    marker = '    allowed_fields: ["email", "phone", "shipping_address"]\n'
    assert marker in SUPPORT
    path.write_text(SUPPORT.replace(marker, marker + f"    rate_limit: {{max_calls: {PHONE_LIMIT}, "
                                    "per_seconds: 3600, per: customer}\n"))
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def plan(world: Path) -> tuple[list[RunJob], dict[str, tuple[str, str]]]:
    """400 run jobs in a mixed order, and per thread its kind (read / phone / refund) and customer."""
    db = sqlite3.connect(world)
    customers = [r[0] for r in db.execute("SELECT id FROM customers ORDER BY id")]
    orders = db.execute("SELECT id, customer_id FROM orders WHERE status = 'delivered' AND total_usd >= 40"
                        " ORDER BY customer_id, id").fetchall()
    db.close()
    jobs, threads = [], {}
    for i in range(JOBS):
        tid, cid = f"T-{i:04d}", customers[i % len(customers)]
        if i % 5 in (0, 1):
            kind, text = "read", "How long does standard shipping take? shipping policy"
        elif i % 5 in (2, 3):
            kind, text = "phone", f"Please update my phone to +1-555-{2000 + i}"
        else:  # a different order (and so mostly a different customer) each time
            oid, cid = orders[(i // 5 * 7) % len(orders)]
            kind, text = "refund", f"Please refund ${30 + (i // 5) % 11} for order {oid}, it arrived damaged"
        jobs.append(RunJob.start(text, thread_id=tid, subject=cid))
        threads[tid] = (kind, cid)
    assert len({j.text for j in jobs if threads[j.thread_id][0] == "refund"}) == JOBS // 5  # one per order
    return jobs, threads


def wait_for(what: str, cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def kill_mid_job(queue: RunQueue, worker: subprocess.Popen[bytes], name: str) -> list[str]:
    """SIGKILL ``worker`` while it holds a job; the ids of the jobs it held when it died."""
    wait_for(f"{name} to hold a job", lambda: any(j["worker"] == name for j in queue.jobs(status="claimed")), 30)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    return [j["job_id"] for j in queue.jobs(status="claimed") if j["worker"] == name]  # nobody renews them now


def test_four_workers_one_killed_every_write_once(pg_url: str, tmp_path: Path) -> None:
    home = Home(root=tmp_path / "home")
    env = {**os.environ, "TETHER_HOME": str(home.root), "TETHER_LEDGER_URL": pg_url,
           "TETHER_CHECKPOINT_URL": pg_url, "TETHER_LIMITS_URL": pg_url, "TETHER_QUEUE_URL": pg_url}
    policy = limited_policy(tmp_path / "agent-policy.yaml")
    saved = {k: os.environ.get(k) for k in env if k.startswith("TETHER_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("TETHER_")})
    try:
        with Session.open("support", home=home, policy=policy):  # world, KB and schemas, before workers start
            pass
        jobs, threads = plan(home.root / "world" / "support.sqlite")
        refunds = sum(1 for k, _ in threads.values() if k == "refund")
        with RunQueue.connect(pg_url) as queue:
            assert queue.enqueue(*jobs) == JOBS
            assert queue.enqueue(*jobs[:3]) == 0  # same job ids: kept once
            logs = [open(tmp_path / f"w{n}.log", "w") for n in range(5)]  # noqa: SIM115

            def spawn(n: int, name: str) -> subprocess.Popen[bytes]:
                return subprocess.Popen([sys.executable, "-m", "tether.graphs.worker", "support", "--policy",
                                         str(policy), "--lease", "3", "--worker-id", name], env=env,
                                        cwd=tmp_path, stdout=logs[n], stderr=subprocess.STDOUT)

            workers = [spawn(n, f"w{n}") for n in range(4)]
            decider = subprocess.Popen([sys.executable, "-c", DECIDER, str(refunds), str(policy), pg_url], env=env,
                                       cwd=tmp_path, stdout=logs[4], stderr=subprocess.STDOUT)
            log = lambda n: (tmp_path / f"w{n}.log").read_text()[-3000:]  # noqa: E731
            try:
                wait_for("a third of the jobs", lambda: queue.counts().done >= JOBS // 3, 180)
                held, victim = kill_mid_job(queue, workers[0], "w0"), "w0"
                for retry in range(3):  # it died between two jobs: kill a replacement mid-job instead
                    if held:
                        break
                    victim = f"w0-{retry}"
                    workers[0] = spawn(0, victim)
                    held = kill_mid_job(queue, workers[0], victim)
                assert decider.wait(300) == 0, log(4)
                wait_for("the queue to drain", lambda: queue.counts().open == 0, 120)
            finally:
                for w in workers:
                    if w.poll() is None:
                        w.send_signal(signal.SIGTERM)
                for w in (*workers, decider):
                    try:
                        w.wait(30)
                    except subprocess.TimeoutExpired:
                        w.kill()
                for f in logs:
                    f.close()
            assert [w.returncode for w in workers] == [-signal.SIGKILL, 0, 0, 0], [log(n) for n in range(4)]
            assert log(4).split()[-1] == str(refunds), log(4)
            all_jobs = {j["job_id"]: j for j in queue.jobs()}
        assert Counter(j["status"] for j in all_jobs.values()) == {"done": JOBS + refunds}, \
            [j for j in all_jobs.values() if j["status"] != "done"]
        assert held and all(all_jobs[h]["attempts"] >= 2 and all_jobs[h]["worker"] != victim for h in held)
        check_outcome(home, pg_url, threads)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def check_outcome(home: Home, pg_url: str, threads: dict[str, tuple[str, str]]) -> None:
    by_kind = {k: {t for t, (kk, _) in threads.items() if kk == k} for k in ("read", "phone", "refund")}
    world = sqlite3.connect(home.root / "world" / "support.sqlite")
    refund_keys = Counter(k for (k,) in world.execute(
        "SELECT idempotency_key FROM refunds WHERE idempotency_key IS NOT NULL"))
    phone_rows = world.execute("SELECT customer_id, idempotency_key FROM crm_changes WHERE field = 'phone'").fetchall()
    world.close()
    phone_keys = Counter(k for _, k in phone_rows)
    with Ledger.open(pg_url) as ledger:
        rows = list(ledger.iter_events())
        approvals = ledger.approvals(status=None)
        report = ledger.verify()
    assert report.ok, report.describe()
    executed = Counter((r.tool, r.idempotency_key) for r in rows if r.event == "executed")
    # every write executed exactly once, in the target system and in the ledger
    assert set(refund_keys.values()) == {1} and {k.split(":")[0] for k in refund_keys} == by_kind["refund"]
    assert set(phone_keys.values()) == {1} and {k.split(":")[0] for k in phone_keys} <= by_kind["phone"]
    assert {k: n for (tool, k), n in executed.items() if tool == "issue_refund"} == dict(refund_keys)
    assert {k: n for (tool, k), n in executed.items() if tool == "update_crm_record"} == dict(phone_keys)
    # the rate limit shared by all workers held exactly: PHONE_LIMIT phone changes per customer
    asked = Counter(cid for kind, cid in threads.values() if kind == "phone")
    assert min(asked.values()) > PHONE_LIMIT - 1
    assert Counter(c for c, _ in phone_rows) == {c: min(n, PHONE_LIMIT) for c, n in asked.items()}
    # each refund asked for approval once, decided once by the lead, and the decision applied
    assert sorted(a.thread_id for a in approvals) == sorted(by_kind["refund"])
    assert {(a.status, a.decided_by) for a in approvals} == {("approved", LEAD)}
    decided = Counter(r.approval_id for r in rows if r.event in ("approved", "rejected", "edited"))
    assert decided == {a.approval_id: 1 for a in approvals}
    answered = {r.thread_id for r in rows if r.event == "responded"}
    assert set(threads) <= answered
    # no tether state in a local file: on disk are only the target system and the KB built from shipped files
    assert not home.ledger.exists() and not home.checkpoints.exists() and not home.limits.exists()
    local = {p.relative_to(home.root).parts[0] for p in home.root.rglob("*") if p.is_file()}
    assert local <= {"world", "kb"}, local


def test_workers_benchmark_runs_on_tiny_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/workers.py measures real runs (two workers, six runs) and reports them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_workers", ROOT / "bench" / "workers.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.measure(pg_base_url(), 2, 6)  # a schema of its own, dropped afterwards
    assert row["workers"] == 2 and row["runs"] == 6 and row["runs_per_s"] > 0
    monkeypatch.delenv("TETHER_TEST_PG_URL")
    assert "TETHER_TEST_PG_URL" in bench.run("tiny")["skipped"]
