"""The installed ``tether`` command, run in subprocesses over a temporary ``$TETHER_HOME``.

An approval requested in one process is decided in another; the business database is then
checked directly: a refund executes exactly once, never after a rejection, and edited
arguments are checked by the policy again before they run.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.agents.support.desk import POLICY_PATH, SupportDesk
from tether.config import Home
from tether.guards.policy import Policy

_BIN = shutil.which("tether", path=str(Path(sys.executable).parent))
CMD = [_BIN] if _BIN else [sys.executable, "-m", "tether.cli"]
ARTICLE = Path(__file__).parent / "fixtures" / "article-agent-policy.yaml"
REQUEST_40 = "Please refund $40 for order O-20417, the kettle arrived damaged"
ORDER = "O-20417"


def tether(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_HOME": str(home), "PYTHONSAFEPATH": "1"}
    for var in ("TETHER_LEDGER_URL", "TETHER_CHECKPOINT_URL", "TETHER_MODEL", "TETHER_ROUTER_MODEL"):
        env.pop(var, None)
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*CMD, *args], env=env, cwd=home, capture_output=True, text=True, timeout=300, check=False
    )


def ok_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refunds(home: Path, order: str = ORDER) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(home / "world" / "support.sqlite")
    try:
        return conn.execute(
            "SELECT amount_usd, idempotency_key FROM refunds WHERE order_id=? ORDER BY id", (order,)
        ).fetchall()
    finally:
        conn.close()


def executed(events: list[dict[str, Any]], tool: str = "issue_refund") -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "executed" and e["tool"] == tool]


def test_cli_is_the_installed_entry_point() -> None:
    assert _BIN is not None, "the venv has no `tether` console script; reinstall the package"


def test_approval_is_decided_in_another_process_and_executes_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = ok_json(
        tether(home, "run", "support", REQUEST_40, "--customer", "C-1042", "--thread", "T1", "--json")
    )
    assert run["status"] == "awaiting_approval"
    assert run["outcome"] is None
    (waiting,) = run["waiting_for"]
    assert waiting["tool"] == "issue_refund"
    assert waiting["args"]["amount_usd"] == 40.0 and waiting["args"]["order_id"] == ORDER
    assert waiting["rule_id"] == "tools.issue_refund.require_approval_over_usd"
    assert waiting["policy_version"] == Policy.from_yaml(POLICY_PATH).version
    assert "$40.00" in waiting["preview"]
    approval_id = waiting["approval_id"]
    assert refunds(home) == []  # nothing happens before the human decides

    pending = ok_json(tether(home, "approvals", "list", "--json"))
    assert [(a["approval_id"], a["thread_id"], a["status"]) for a in pending] == [
        (approval_id, "T1", "pending")
    ]
    assert pending[0]["args"] == waiting["args"]

    # a new request cannot start on a thread that waits for a human
    busy = tether(home, "run", "support", "hello", "--customer", "C-1042", "--thread", "T1")
    assert busy.returncode == 1
    assert approval_id in busy.stderr and "waiting" in busy.stderr

    done = ok_json(tether(home, "approve", approval_id, "--as", "lead@example.com", "--json"))
    assert done["status"] == "resolved"
    assert "$40.00" in done["outcome"]["answer"]
    (row,) = refunds(home)
    assert row[0] == 40.0

    twice = tether(home, "approve", approval_id)
    assert twice.returncode == 1
    assert approval_id in twice.stderr and "already approved" in twice.stderr
    assert "Traceback" not in twice.stderr
    assert refunds(home) == [row]

    assert ok_json(tether(home, "approvals", "list", "--json")) == []
    (decided,) = ok_json(tether(home, "approvals", "list", "--all", "--json"))
    assert (decided["status"], decided["decided_by"]) == ("approved", "lead@example.com")

    events = ok_json(tether(home, "ledger", "show", "T1", "--json"))
    assert {e["thread_id"] for e in events} == {"T1"}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    kinds = [e["event"] for e in events]
    refund_events = [e["event"] for e in events if e["tool"] == "issue_refund"]
    assert refund_events == ["proposed", "approval_requested", "approved", "executing", "executed"]
    (ran,) = executed(events)
    assert ran["approver"] == "lead@example.com"
    assert ran["idempotency_key"] == row[1]
    assert ran["result"]["amount_usd"] == 40.0
    assert any(any(c.startswith("KB-REFUND@v3#") for c in e["evidence"]) for e in events if e["tool"] == "issue_refund")
    assert kinds[0] == "run_started" and kinds[-1] == "responded"

    table = tether(home, "ledger", "show", "T1")
    assert table.returncode == 0
    assert "approval_requested" in table.stdout and "lead@example.com" in table.stdout

    # nothing pending: resume reports where the thread stands and does nothing again
    again = ok_json(tether(home, "resume", "T1", "--json"))
    assert again["status"] == "resolved" and again["waiting_for"] == []
    assert again["outcome"] == done["outcome"]
    assert refunds(home) == [row]
    assert len(executed(ok_json(tether(home, "ledger", "show", "T1", "--json")))) == 1


@pytest.fixture
def pending(desk: SupportDesk, home: Home) -> str:
    """A refund of $40 waiting for approval on thread T2, requested in this process."""
    r = desk.run(REQUEST_40, customer_id="C-1042", thread_id="T2")
    assert r.status == "awaiting_approval"
    assert refunds(home.root) == []
    return r.waiting_for[0].approval_id


def test_reject_in_another_process_refunds_nothing(pending: str, home: Home) -> None:
    out = ok_json(tether(home.root, "reject", pending, "--reason", "not eligible", "--json"))
    assert out["status"] == "resolved"
    assert "not eligible" in out["outcome"]["answer"]
    assert refunds(home.root) == []
    events = ok_json(tether(home.root, "ledger", "show", "T2", "--json"))
    assert executed(events) == []
    (rejected,) = [e for e in events if e["event"] == "rejected"]
    assert rejected["approval_id"] == pending
    again = tether(home.root, "approve", pending)
    assert again.returncode == 1 and "already rejected" in again.stderr
    assert refunds(home.root) == []


def test_edited_amount_is_rechecked_and_executed(pending: str, home: Home) -> None:
    out = ok_json(tether(home.root, "approve", pending, "--edit", '{"amount_usd": 20}', "--json"))
    assert out["status"] == "resolved"
    assert [r[0] for r in refunds(home.root)] == [20.0]
    events = ok_json(tether(home.root, "ledger", "show", "T2", "--json"))
    (edited,) = [e for e in events if e["event"] == "edited"]
    assert edited["args"]["amount_usd"] == 20.0
    assert edited["decision"] == "allow"
    (ran,) = executed(events)
    assert ran["result"]["amount_usd"] == 20.0


def test_edited_amount_over_the_limit_is_refused_and_the_approval_stays_pending(pending: str, home: Home) -> None:
    proc = tether(home.root, "approve", pending, "--edit", '{"amount_usd": 80}', "--json")
    assert proc.returncode == 1
    err = json.loads(proc.stderr)  # errors under --json are JSON on stderr
    assert err["error"] == "ApprovalError" and "tools.issue_refund.max_amount_usd" in err["message"]
    assert refunds(home.root) == []
    events = ok_json(tether(home.root, "ledger", "show", "T2", "--json"))
    assert not [e for e in events if e["event"] in ("edited", "approved", "rejected")]
    assert executed(events) == []
    (listed,) = ok_json(tether(home.root, "approvals", "list", "--json"))
    assert listed["approval_id"] == pending and listed["state"] == "pending"


@pytest.mark.parametrize("edit", ["not json", "[]"])
def test_bad_edit_is_refused_before_anything_is_decided(tmp_path: Path, edit: str) -> None:
    proc = tether(tmp_path / "home", "approve", "A-0000000000", "--edit", edit)
    assert proc.returncode == 1
    assert "--edit" in proc.stderr and "JSON object" in proc.stderr


def test_unknown_approval_id(tmp_path: Path) -> None:
    proc = tether(tmp_path / "home", "approve", "A-0000000000")
    assert proc.returncode == 1
    assert "A-0000000000" in proc.stderr and "no such approval" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_thread_in_ledger(tmp_path: Path) -> None:
    proc = tether(tmp_path / "home", "ledger", "show", "nope")
    assert proc.returncode == 1 and "nope" in proc.stderr


def test_resume_of_an_unknown_thread_is_an_error(tmp_path: Path) -> None:
    proc = tether(tmp_path / "home", "resume", "no-such-thread")
    assert proc.returncode == 1
    assert "no-such-thread" in proc.stderr


def test_policy_check_good_file(tmp_path: Path) -> None:
    out = ok_json(tether(tmp_path, "policy", "check", str(ARTICLE), "--json"))
    assert out["version"] == Policy.from_yaml(ARTICLE).version
    assert out["policy"]["tools"]["issue_refund"]["max_amount_usd"] == 50
    human = tether(tmp_path, "policy", "check", str(POLICY_PATH))
    assert human.returncode == 0
    assert "OK" in human.stdout and Policy.from_yaml(POLICY_PATH).version in human.stdout
    assert "issue_refund" in human.stdout and "handoff_to_human" in human.stdout


def test_policy_check_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "agent-policy.yaml"
    bad.write_text(
        ARTICLE.read_text().replace("require_approval_over_usd: 25", "require_aproval_over_usd: 25")
    )
    proc = tether(tmp_path, "policy", "check", str(bad))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert str(bad) in proc.stderr
    assert "tools.issue_refund.require_aproval_over_usd" in proc.stderr
    assert "require_approval_over_usd" in proc.stderr.replace("require_aproval_over_usd", "")
    assert "Traceback" not in proc.stderr
    missing = tether(tmp_path, "policy", "check", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 1 and "missing.yaml" in missing.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    proc = tether(tmp_path, "run", "support")
    assert proc.returncode == 2
    assert "text" in proc.stderr


def test_a_workflow_that_needs_a_subject_refuses_a_run_without_one(tmp_path: Path) -> None:
    proc = tether(tmp_path, "run", "support", "hello")
    assert proc.returncode == 1
    assert "needs a subject" in proc.stderr and "--subject" in proc.stderr


@pytest.mark.slow
def test_demo_plays_every_scenario(tmp_path: Path) -> None:
    proc = tether(tmp_path / "home", "demo")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "tether demo: support" in proc.stdout and "tether demo: itdesk" in proc.stdout
    played = proc.stdout.strip().splitlines()[-1]
    done, total = played.split()[0].split("/")
    assert done == total and int(total) >= 8
    assert "FAILED" not in proc.stdout + proc.stderr
    assert (tmp_path / "home" / "demo").is_dir()


@pytest.mark.parametrize("argv", [["workflows"], ["policy", "check", str(ARTICLE)], ["demo", "support", "--json"]])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path, argv: list[str]) -> None:
    """``tether ... | head``: the reader is gone before tether writes; tether exits quietly."""
    import shlex

    env = {**os.environ, "TETHER_HOME": str(tmp_path)}
    line = " ".join(shlex.quote(a) for a in [*CMD, *argv]) + " | true"
    proc = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
