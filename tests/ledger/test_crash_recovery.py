"""Exactly-once under real crashes: SIGKILL the CLI at each injected point, resume elsewhere.

Every step is a separate ``tether`` process. A crashing step runs ``crash_cli.py``: the
``tether`` command line with a hook installed through the fault seam
(``tether.graphs.faults``) that SIGKILLs the process at the named point; nothing is mocked.
After resuming in a fresh process there must be exactly one refund row for the thread in
the business database and the ledger chain must verify.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.checkpoints.ledger import Ledger

pytestmark = pytest.mark.slow

TETHER = str(Path(sys.executable).with_name("tether"))
CRASH_CLI = Path(__file__).with_name("crash_cli.py")
THREAD = "T-crash"
APPROVAL_TEXT = "Please refund $40 for order O-20417, the kettle arrived damaged"
DIRECT_TEXT = "I need a refund of $18 for the damaged kettle in order O-20417"
POINTS = ["after_approval", "after_intent", "after_tool", "before_completion"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    e["TETHER_HOME"] = str(tmp_path / "home")
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        e["TETHER_LEDGER_URL"] = e["TETHER_CHECKPOINT_URL"] = url
    return e


def tether(
    env: dict[str, str], *args: str, crash: str | None = None, tool: str | None = None
) -> subprocess.CompletedProcess[str]:
    e = dict(env, CRASH_AT=crash) if crash else env
    if tool:
        e = dict(e, CRASH_TOOL=tool)
    cmd = [sys.executable, str(CRASH_CLI)] if crash else [TETHER]
    return subprocess.run([*cmd, *args], env=e, capture_output=True, text=True, timeout=120)


def killed(p: subprocess.CompletedProcess[str]) -> bool:
    return p.returncode == -signal.SIGKILL


def refunds(env: dict[str, str]) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(Path(env["TETHER_HOME"]) / "world" / "support.sqlite")
    try:
        return db.execute("SELECT id, order_id, amount_usd, idempotency_key FROM refunds"
                          " WHERE idempotency_key LIKE ?", (f"{THREAD}:%",)).fetchall()
    finally:
        db.close()


def resume(env: dict[str, str]) -> None:
    """``tether resume`` in a new process must finish the thread by itself."""
    resumed = tether(env, "resume", THREAD, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "resolved", resumed.stdout


def assert_exactly_once(env: dict[str, str], amount: float) -> None:
    rows = refunds(env)
    assert len(rows) == 1, rows
    assert rows[0][1:3] == ("O-20417", amount)
    verify = tether(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    url = env.get("TETHER_LEDGER_URL") or f"sqlite:///{env['TETHER_HOME']}/ledger.sqlite"
    with Ledger.open(url) as ledger:
        done = [e for e in ledger.events(THREAD) if e.event == "executed" and e.tool == "issue_refund"]
    assert len(done) == 1 and done[0].result is not None
    assert done[0].result["refund_id"] == rows[0][0]
    story = json.loads(tether(env, "ledger", "explain", THREAD, "--json").stdout)
    assert story["runs"][-1]["outcome"] == "resolved"


@pytest.mark.parametrize("point", POINTS)
def test_crash_after_human_approval_then_resume(env: dict[str, str], point: str) -> None:
    start = tether(env, "run", "support", APPROVAL_TEXT, "--customer", "C-1042", "--thread", THREAD, "--json")
    assert start.returncode == 0, start.stderr
    [waiting] = json.loads(start.stdout)["waiting_for"]
    crashed = tether(env, "approve", waiting["approval_id"], "--as", "ana", crash=point)
    assert killed(crashed), (crashed.returncode, crashed.stderr[-2000:])
    assert len(refunds(env)) == (0 if point in ("after_approval", "after_intent") else 1)
    resume(env)
    assert_exactly_once(env, 40.0)
    again = tether(env, "resume", THREAD)  # resuming a finished thread changes nothing
    assert again.returncode == 0 and len(refunds(env)) == 1


@pytest.mark.parametrize("point", POINTS[1:])
def test_crash_during_unattended_run_then_resume(env: dict[str, str], point: str) -> None:
    """No approval involved: ``tether resume`` continues from the last checkpoint."""
    crashed = tether(env, "run", "support", DIRECT_TEXT, "--customer", "C-1042", "--thread", THREAD,
                     crash=point, tool="issue_refund")
    assert killed(crashed), (crashed.returncode, crashed.stderr[-2000:])
    # the crash hits issue_refund itself: before it ran, or after it wrote its row
    assert len(refunds(env)) == (0 if point == "after_intent" else 1)
    resume(env)
    assert_exactly_once(env, 18.0)
