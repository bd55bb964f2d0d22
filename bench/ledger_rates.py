"""Ledger append and verify rates (events/s) on SQLite and, when available, PostgreSQL.

    .venv/bin/python bench/ledger_rates.py [--events 2000] [--workers 4] [--pg URL]

PostgreSQL is used when ``--pg`` or ``TETHER_TEST_PG_URL`` is given (start one with
``eval "$(.ci/start-postgres.sh)"``); each run uses a fresh schema that is dropped after.
Appends are the workflow's real path: one transaction per event, head row locked.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

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


def measure(name: str, url: str, n: int, workers: int) -> None:
    with Ledger.open(url) as ledger:
        t0 = time.perf_counter()
        for i in range(n):
            ledger.append(event(i))
        append_s = time.perf_counter() - t0
        procs = [subprocess.Popen([sys.executable, "-c", _WORKER, url, str(n // workers), f"w{k}"],
                                  stdout=subprocess.PIPE, text=True) for k in range(workers)]
        spans = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"worker failed with {p.returncode}")
            spans.append(tuple(float(x) for x in out.split()))
        conc_s = max(e for _, e in spans) - min(s for s, _ in spans)
        total = n + workers * (n // workers)
        t0 = time.perf_counter()
        report = ledger.verify()
        verify_s = time.perf_counter() - t0
    assert report.ok and report.rows == total, report.describe()
    print(f"{name:10} append (1 process):        {n / append_s:9.0f} events/s  ({n} events)")
    print(f"{name:10} append ({workers} processes):      {workers * (n // workers) / conc_s:9.0f}"
          f" events/s  (first append to last, all workers)")
    print(f"{name:10} verify:                    {total / verify_s:9.0f} events/s  ({total} rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pg", default=os.environ.get("TETHER_TEST_PG_URL"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{Path(tmp) / 'ledger.sqlite'}", args.events, args.workers)
    if args.pg:
        with pg_schema(args.pg) as url:
            measure("postgres", url, args.events, args.workers)
    else:
        print("postgres   skipped: pass --pg URL or set TETHER_TEST_PG_URL")


if __name__ == "__main__":
    main()
