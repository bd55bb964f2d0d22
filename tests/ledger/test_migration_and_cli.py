"""Upgrading a pre-chain SQLite ledger; backend choice by URL; the ``tether ledger`` commands."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.checkpoints.chain import GENESIS
from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.checkpoints.migrations import MIGRATIONS
from tether.cli import LEDGER_HEADERS, ledger_rows, main, table
from tether.errors import LedgerError, MissingExtra


def _legacy_ledger(path: Path, rows: int) -> None:
    """A ledger as the 0001-only schema wrote it (before the hash chain)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for stmt in MIGRATIONS[0][1]("sqlite"):
        assert isinstance(stmt, str)
        db.execute(stmt)
    db.execute("INSERT INTO schema_migrations VALUES ('0001_events_and_approvals', 'then')")
    for i in range(rows):
        db.execute(
            "INSERT INTO ledger_events (event_id, ts, thread_id, run_id, event, matched_rules,"
            " evidence, spend_usd, args_json) VALUES (?,?,?,?,?,?,?,?,?)",
            (f"e{i}", f"2025-01-01T00:00:0{i}", "OLD", "r0", "proposed", "[]", "[]", 0, '{"i":1}'))
    db.commit()
    db.close()


def test_pre_chain_sqlite_ledger_is_migrated_and_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _legacy_ledger(path, 3)
    with Ledger.open(path) as ledger:
        assert ledger.migrations() == ["0001_events_and_approvals", "0002_hash_chain", "0003_subjects_and_expiry",
                                   "0004_evidence_columns", "0005_append_only_indexes",
                                   "0006_wide_step"]
        old = ledger.events("OLD")
        assert [r.seq for r in old] == [1, 2, 3] and old[0].prev_hash == GENESIS
        assert all(r.row_hash for r in old)
        new = ledger.append(LedgerEvent(thread_id="NEW", run_id="r1", event="run_started"))
        assert new.seq == 4 and new.prev_hash == old[-1].row_hash
        assert ledger.verify().ok and ledger.verify().rows == 4


def test_backend_is_chosen_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/a.sqlite") as a:
        assert type(a).__name__ == "SqliteLedger" and a.url == f"sqlite:///{tmp_path}/a.sqlite"
    with pytest.raises(LedgerError) as info:
        Ledger.open("mysql://x/y")
    assert info.value.url == "mysql://x/y"
    monkeypatch.setitem(sys.modules, "psycopg", None)  # the postgres extra is not installed
    with pytest.raises(MissingExtra) as missing:
        Ledger.open("postgresql://u:secret@127.0.0.1:1/db")
    assert missing.value.extra == "postgres" and "pip install" in str(missing.value)


def test_unreachable_postgres_is_a_ledger_error_without_password() -> None:
    with pytest.raises(LedgerError) as info:
        Ledger.open("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")
    assert "secret" not in str(info.value) and "***" in info.value.url


# ---------------------------------------------------------------- CLI


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    with Ledger.open(tmp_path / "home" / "ledger.sqlite") as ledger:
        for e in [
            LedgerEvent(thread_id="T", run_id="r1", event="run_started", detail="refund $40 please",
                        subject_id="C-1042", principal="tether-agent"),
            LedgerEvent(thread_id="T", run_id="r1", event="routed", detail="refund",
                        model_id="offline:router-v1", spend_usd=0.001),
            LedgerEvent(thread_id="T", run_id="r1", event="proposed", tool="issue_refund",
                        tool_call_id="c1", args={"amount_usd": 40}, decision="require_approval",
                        rule_id="tools.issue_refund.require_approval_over_usd",
                        evidence=("KB-REFUND@v3#p1",), policy_version="sha256:p"),
            LedgerEvent(thread_id="T", run_id="r1", event="approved", tool="issue_refund",
                        tool_call_id="c1", approver="ana", approval_id="A-1"),
            LedgerEvent(thread_id="T", run_id="r1", event="executing", tool="issue_refund",
                        tool_call_id="c1"),
            LedgerEvent(thread_id="T", run_id="r1", event="executed", tool="issue_refund",
                        tool_call_id="c1", result={"refund_id": "R-1"}),
            LedgerEvent(thread_id="T", run_id="r1", event="responded", detail="Refunded $40.",
                        spend_usd=0.004),
            LedgerEvent(thread_id="U", run_id="r2", event="run_started", detail="other"),
        ]:
            ledger.append(e)
    return tmp_path / "home" / "ledger.sqlite"


def test_verify_and_anchor_commands(filled: Path, tmp_path: Path, capsys: Any) -> None:
    anchor = tmp_path / "anchor.json"
    assert main(["ledger", "anchor", str(anchor)]) == 0
    assert json.loads(anchor.read_text())["seq"] == 8
    assert main(["ledger", "verify", "--anchor", str(anchor)]) == 0
    assert "chain intact" in capsys.readouterr().out
    db = sqlite3.connect(filled)
    db.execute("DELETE FROM ledger_events WHERE seq=8")
    db.execute("UPDATE ledger_head SET seq=7, row_hash=(SELECT row_hash FROM ledger_events WHERE seq=7)")
    db.commit()
    assert main(["ledger", "verify"]) == 0
    assert main(["ledger", "verify", "--anchor", str(anchor), "--json"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n"):])
    assert report["ok"] is False and report["problem"]["kind"] == "truncated"
    assert report["problem"]["seq"] == 8
    db.execute("UPDATE ledger_events SET detail='changed' WHERE seq=2")
    db.commit()
    assert main(["ledger", "verify"]) == 1
    assert "BROKEN at seq 2: edited" in capsys.readouterr().out


def test_explain_tells_the_story(filled: Path, capsys: Any) -> None:
    assert main(["ledger", "explain", "T"]) == 0
    text = capsys.readouterr().out
    for part in ("Asked: 'refund $40 please'", "Route: refund", "issue_refund(",
                 "tools.issue_refund.require_approval_over_usd", "KB-REFUND@v3#p1",
                 "approved by ana", "result: executed", "Outcome: resolved", "$0.004"):
        assert part in text, part
    assert main(["ledger", "explain", "T", "--json"]) == 0
    story = json.loads(capsys.readouterr().out)
    [run] = story["runs"]
    [action] = run["actions"]
    assert run["route"] == "refund" and run["outcome"] == "resolved" and story["cost_usd"] == 0.004
    assert action["status"] == "executed" and action["approver"] == "ana"
    assert action["evidence"] == ["KB-REFUND@v3#p1"] and action["result"] == {"refund_id": "R-1"}
    assert main(["ledger", "explain", "NOPE"]) == 1


def test_export_writes_jsonl(filled: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["ledger", "export"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["seq"] for r in rows] == list(range(1, 9)) and rows[0]["row_hash"]
    out = tmp_path / "t.jsonl"
    assert main(["ledger", "export", "--thread", "U", "-o", str(out)]) == 0
    assert [json.loads(x)["thread_id"] for x in out.read_text().splitlines()] == ["U"]


def test_show_still_renders(filled: Path, capsys: Any) -> None:
    assert main(["ledger", "show", "T"]) == 0
    assert "issue_refund" in capsys.readouterr().out
    with Ledger.open(filled) as ledger:
        assert "seq" in table(ledger_rows(ledger.events("T")), LEDGER_HEADERS)
