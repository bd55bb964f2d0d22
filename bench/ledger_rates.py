"""Ledger append and verify rates (events/s) on SQLite and, when available, PostgreSQL.

    .venv/bin/python bench/ledger_rates.py [--scale tiny|full] [--pg URL]

PostgreSQL is used when ``--pg`` or ``TETHER_TEST_PG_URL`` is given (start one with
``eval "$(.ci/start-postgres.sh)"``); each run uses a fresh schema that is dropped after.
Verify runs on a ledger checked in one process and on one large enough to be checked in ranges by
worker processes (``checkpoints/vouch.py``). Appends are the workflow's real path (one transaction per event, head row locked) and group
commits (``append_many``); SQLite with ``synchronous=NORMAL`` and with ``FULL`` (durable) commits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from tether.checkpoints import ledger_sqlite
from tether.checkpoints.ledger import Ledger, LedgerEvent

_WORKER = """
import sys, time
from tether.checkpoints.ledger import Ledger, LedgerEvent
with Ledger.open(sys.argv[1]) as ledger:
    t0 = time.time()
    for i in range(int(sys.argv[2])):
        ledger.append(LedgerEvent(thread_id="bench", run_id=sys.argv[3], event="proposed",
                                  tool="issue_refund", args={"amount_usd": 18.0, "i": i},
                                  evidence=("KB-REFUND@v3#p1",), spend_usd=0.001 * i))
    print(t0, time.time())
"""


def event(i: int) -> LedgerEvent:
    return LedgerEvent(thread_id=f"T{i % 50}", run_id="bench", event="executed", step=i,
                       tool="issue_refund", tool_call_id=f"call_{i}", tool_schema_version="v1",
                       args={"amount_usd": 18.0, "order_id": "O-20417", "i": i},
                       decision="allow", rule_id="tools.issue_refund.allowed",
                       policy_version="sha256:bench", evidence=("KB-REFUND@v3#p1",),
                       result={"refund_id": f"R-{i}", "amount_usd": 18.0},
                       model_id="offline:support-v1", principal="tether-agent",
                       subject_id="C-1042", spend_usd=0.001 * i, idempotency_key=f"T:{i}")


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _appends(url: str, n: int, *, batch: int, durable: bool) -> float:
    """events/s of ``n`` appends, one transaction per event (``batch`` 1) or per ``batch`` events."""
    with Ledger.open(url) as ledger:
        evs = [event(i) for i in range(n)]
        t0 = time.perf_counter()
        if batch == 1:
            for e in evs:
                ledger.append(e, durable=durable)
        else:
            for k in range(0, n, batch):
                ledger.append_many(evs[k:k + batch], durable=durable)
        return _rate(n, time.perf_counter() - t0)


def _writers(url: str, n: int, workers: int) -> float:
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, url, str(n // workers), f"w{k}"],
                              stdout=subprocess.PIPE, text=True) for k in range(workers)]
    spans = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"ledger writer failed with {proc.returncode}")
        spans.append(tuple(float(x) for x in out.split()))
    return _rate(workers * (n // workers), max(e for _, e in spans) - min(b for b, _ in spans))


def _verify(url: str, rounds: int = 3, *, workers: bool = True) -> tuple[float, int]:
    """The median rate of ``rounds`` verifies, each by a newly opened ledger (SQLite: in one
    process when ``workers`` is false, however large the ledger)."""
    rates, rows = [], 0
    parallel_from = ledger_sqlite._PARALLEL_FROM
    ledger_sqlite._PARALLEL_FROM = parallel_from if workers else 2**63
    try:
        for _ in range(rounds):
            with Ledger.open(url) as ledger:
                t0 = time.perf_counter()
                report = ledger.verify()
                seconds = time.perf_counter() - t0
            assert report.ok, report.describe()
            rates.append(_rate(report.rows, seconds))
            rows = report.rows
    finally:
        ledger_sqlite._PARALLEL_FROM = parallel_from
    return statistics.median(rates), rows


def run(scale: str = "full", pg_url: str | None = None) -> dict[str, float | str]:
    """Append rates (single and batched; SQLite NORMAL and FULL; PostgreSQL 1 and 4 writers) and verify."""
    n = {"tiny": 200, "full": 5000}[scale]
    out: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch, durable in (("single NORMAL", 1, False), ("single FULL", 1, True),
                                     ("batched NORMAL", 100, False), ("batched FULL", 100, True)):
            url = f"sqlite:///{Path(tmp) / name.replace(' ', '_')}.sqlite"
            out[f"sqlite append {name}"] = _appends(url, n if batch > 1 or not durable else n // 5,
                                                    batch=batch, durable=durable)
        for rows in (n * 4, {"tiny": 400, "full": 400_000}[scale]):
            url = f"sqlite:///{Path(tmp) / f'v{rows}.sqlite'}"
            _appends(url, rows, batch=1000, durable=False)
            if rows >= ledger_sqlite._PARALLEL_FROM and ledger_sqlite._WORKERS > 1:
                out[f"sqlite verify, {rows:,} rows ({ledger_sqlite._WORKERS} workers)"], _ = _verify(url)
            out[f"sqlite verify, {rows:,} rows (one process)"], _ = _verify(url, workers=False)
    pg = pg_url or os.environ.get("TETHER_TEST_PG_URL")
    if not pg:
        out["postgres"] = "skipped: set TETHER_TEST_PG_URL"
        return out
    with pg_schema(pg) as url:
        out["postgres append single, 1 writer"] = _appends(url, n // 2, batch=1, durable=False)
        out["postgres append batched, 1 writer"] = _appends(url, n, batch=100, durable=False)
        out["postgres append single, 4 writers"] = _writers(url, n // 2, 4)
        out["postgres verify"], _ = _verify(url)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="full", choices=["tiny", "full"])
    ap.add_argument("--pg", default=os.environ.get("TETHER_TEST_PG_URL"))
    args = ap.parse_args()
    for k, v in run(args.scale, args.pg).items():
        print(f"{k:40} {v:>12.0f} events/s" if isinstance(v, float) else f"{k:40} {v}")


if __name__ == "__main__":
    main()
