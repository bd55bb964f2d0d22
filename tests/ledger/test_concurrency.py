"""Many processes on one ledger: appends keep one gap-free chain; each approval has one winner."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tether.checkpoints.ledger import Ledger

WORKERS, EVENTS, APPROVALS = 4, 200, 20

_APPEND = """
import os, sys, time
from pathlib import Path
from tether.checkpoints.ledger import Ledger, LedgerEvent
url, worker, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
with Ledger.open(url) as ledger:
    (go.parent / f"{go.name}.{worker}.ready").touch()
    while not go.exists():
        time.sleep(0.005)
    for i in range(n):
        ledger.append(LedgerEvent(thread_id=worker, run_id=worker, event="proposed", step=i,
                                  args={"worker": worker, "i": i}))
"""

_DECIDE = """
import json, sys, time
from pathlib import Path
from tether.checkpoints.ledger import Ledger
from tether.errors import ApprovalError
url, worker, ids, go = sys.argv[1], sys.argv[2], sys.argv[3].split(","), Path(sys.argv[4])
won = []
with Ledger.open(url) as ledger:
    (go.parent / f"{go.name}.{worker}.ready").touch()
    while not go.exists():
        time.sleep(0.005)
    for a in ids:
        try:
            ledger.decide(a, status="approved", decided_by=worker, decision={"kind": "approve"})
            won.append(a)
        except ApprovalError:
            pass
print(json.dumps(won))
"""


def _spawn(code: str, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run_all(procs: list[subprocess.Popen[str]], go: Path) -> list[str]:
    deadline = time.monotonic() + 120  # every worker connected (and raced on migrations): start them together
    while len(list(go.parent.glob(f"{go.name}.*.ready"))) < len(procs):
        assert time.monotonic() < deadline, "the workers did not all connect within 120 s"
        assert all(p.poll() is None for p in procs), "a worker exited before the start signal"
        time.sleep(0.01)
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


@pytest.mark.slow
def test_concurrent_appends_form_one_chain(ledger_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    _run_all([_spawn(_APPEND, [ledger_url, f"w{k}", str(EVENTS), str(go)])
              for k in range(WORKERS)], go)
    with Ledger.open(ledger_url) as ledger:
        rows = ledger.events()
        report = ledger.verify()
    assert report.ok, report.describe()
    assert report.rows == len(rows) == WORKERS * EVENTS
    assert [r.seq for r in rows] == list(range(1, WORKERS * EVENTS + 1))
    assert len({r.event_id for r in rows}) == len(rows)
    per_worker: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        assert r.args is not None
        per_worker[r.args["worker"]].append(r.args["i"])
    # nothing lost or duplicated, and each worker's events keep their order
    assert {w: v for w, v in per_worker.items()} == {f"w{k}": list(range(EVENTS)) for k in range(WORKERS)}
    interleaved = sum(1 for a, b in itertools.pairwise(rows) if a.thread_id != b.thread_id)
    assert interleaved > WORKERS - 1  # more switches than serial runs make: the workers overlapped


@pytest.mark.slow
def test_concurrent_decisions_have_exactly_one_winner(ledger_url: str, tmp_path: Path) -> None:
    with Ledger.open(ledger_url) as ledger:
        ids = [ledger.request_approval(
            thread_id="T", run_id="r", tool_call_id=f"c{i}", tool="issue_refund",
            args={"amount_usd": 40 + i}, preview="p", rule_id="r", reason="r",
            policy_version="v", subject_id=None).approval_id for i in range(APPROVALS)]
    go = tmp_path / "go"
    outs = _run_all([_spawn(_DECIDE, [ledger_url, who, ",".join(ids), str(go)])
                     for who in ("ana", "bob")], go)
    won = [json.loads(o) for o in outs]
    assert sorted(won[0] + won[1]) == sorted(ids)  # every approval decided exactly once
    with Ledger.open(ledger_url) as ledger:
        decided = {a.approval_id: a.decided_by for a in ledger.approvals(status="approved")}
    assert decided == {a: ("ana" if a in won[0] else "bob") for a in ids}
