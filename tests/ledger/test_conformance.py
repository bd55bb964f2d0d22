"""The ledger contract, run against every backend (``ledger`` fixture: SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tether.checkpoints.chain import GENESIS, Anchor, row_hash
from tether.checkpoints.ledger import SCHEMA_VERSION, Attempts, Ledger, LedgerEvent
from tether.errors import ApprovalError


def ev(i: int = 0, *, thread: str = "T", event: str = "proposed", **kw: Any) -> LedgerEvent:
    return LedgerEvent(thread_id=thread, run_id="r1", event=event, args={"i": i}, **kw)  # type: ignore[arg-type]


def fill(ledger: Ledger, n: int = 8) -> None:
    for i in range(n):
        ledger.append(ev(i, thread="T" if i % 2 else "U", spend_usd=i * 0.25))


def raw(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Tamper with the tables directly, as an attacker with database access would."""
    with ledger._tx() as q:
        return q(sql, params)[0]


def approval(ledger: Ledger, call: str = "c1") -> Any:
    return ledger.request_approval(
        thread_id="T", run_id="r1", tool_call_id=call, tool="issue_refund", args={"amount_usd": 40},
        preview="refund $40", rule_id="tools.issue_refund.require_approval_over_usd",
        reason="over $25", policy_version="sha256:p", subject_id="C-1042")


# ---------------------------------------------------------------- schema and events


def test_migrations_are_named_and_recorded(ledger: Ledger, ledger_url: str) -> None:
    assert ledger.migrations() == ["0001_events_and_approvals", "0002_hash_chain", "0003_subjects_and_expiry",
                                   "0004_evidence_columns", "0005_append_only_indexes",
                                   "0006_wide_step"]
    assert ledger.migrations()[-1] == SCHEMA_VERSION
    with Ledger.open(ledger_url) as again:  # reopening applies nothing twice
        assert again.migrations() == ledger.migrations()


def test_append_round_trips_every_field(ledger: Ledger) -> None:
    full = LedgerEvent(
        thread_id="T", run_id="r1", event="executed", step=3, tool_call_id="call_1",
        tool="issue_refund", tool_schema_version="v2", args={"amount_usd": 18.0, "order_id": "O-1"},
        decision="allow", rule_id="tools.issue_refund.allowed", matched_rules=("a", "b"),
        policy_version="sha256:p", approval_id="A-1", approver="ana", evidence=("KB@v3#p1",),
        result={"refund_id": "R-1", "amount_usd": 18.0}, error=None, detail="d",
        model_id="offline:support-v1", principal="tether-agent", subject_id="C-1042",
        spend_usd=0.0123, idempotency_key="T:call_1")
    row = ledger.append(full)
    [stored] = ledger.events("T")
    assert stored == row
    assert stored.model_dump(include=set(LedgerEvent.model_fields)) == full.model_dump()
    assert row.seq == 1 and row.prev_hash == GENESIS and row.args_hash and row.row_hash
    assert ledger.completed("T:call_1") == row


def test_rows_are_chained_in_order(ledger: Ledger) -> None:
    fill(ledger, 6)
    rows = ledger.events()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.prev_hash for r in rows] == [GENESIS, *(r.row_hash for r in rows[:-1])]
    assert [r.seq for r in ledger.events("T")] == [2, 4, 6]
    assert ledger.head().seq == 6 and ledger.head().row_hash == rows[-1].row_hash


def test_started_and_completed_by_idempotency_key(ledger: Ledger) -> None:
    assert not ledger.started("T:c") and ledger.completed("T:c") is None
    assert ledger.attempts("T:c") == Attempts(executed=None, started=False)
    ledger.append(ev(event="executing", idempotency_key="T:c"))
    ledger.append(ev(event="executed", idempotency_key="T:other"))
    assert ledger.started("T:c") and ledger.completed("T:c") is None
    assert ledger.attempts("T:c") == Attempts(executed=None, started=True)
    done = ledger.append(ev(event="executed", idempotency_key="T:c", result={"ok": 1}))
    assert ledger.completed("T:c") == done
    assert ledger.attempts("T:c") == Attempts(executed=done, started=True)
    other = ledger.attempts("T:other")
    assert other.executed is not None and not other.started


def test_iter_events_reads_in_batches(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tether.checkpoints.ledger._BATCH", 3)
    fill(ledger, 10)
    assert [r.seq for r in ledger.iter_events()] == list(range(1, 11))
    assert ledger.verify().ok and ledger.verify().rows == 10


# ---------------------------------------------------------------- approvals


def test_request_approval_is_idempotent_and_decided_once(ledger: Ledger) -> None:
    a = approval(ledger)
    assert approval(ledger) == a and a.status == "pending"
    assert [x.approval_id for x in ledger.approvals()] == [a.approval_id]
    assert ledger.approvals(thread_id="other") == []
    done = ledger.decide(a.approval_id, status="approved", decided_by="ana", decision={"kind": "approve"})
    assert done.status == "approved" and done.decided_by == "ana" and done.decided_at
    assert ledger.approvals() == [] and ledger.approvals(status="approved") == [done]
    with pytest.raises(ApprovalError, match="already approved") as info:
        ledger.decide(a.approval_id, status="rejected", decided_by="bob", decision={})
    assert info.value.approval_id == a.approval_id
    assert ledger.approval(a.approval_id).decided_by == "ana"


def test_unknown_approval_and_pending_decision_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ApprovalError, match="no such approval"):
        ledger.approval("A-nope")
    with pytest.raises(ApprovalError, match="no such approval"):
        ledger.decide("A-nope", status="approved", decided_by="x", decision={})
    with pytest.raises(ValueError):
        ledger.decide(approval(ledger).approval_id, status="pending", decided_by="x", decision={})


# ---------------------------------------------------------------- tamper evidence


def test_empty_and_intact_ledgers_verify(ledger: Ledger) -> None:
    report = ledger.verify()
    assert report.ok and report.rows == 0 and report.head_hash == GENESIS
    fill(ledger)
    report = ledger.verify(anchor=ledger.head())
    assert report.ok and report.rows == 8 and report.problem is None
    assert "chain intact" in report.describe()


def _break(ledger: Ledger) -> tuple[str, int]:
    report = ledger.verify()
    assert not report.ok and report.problem is not None
    assert "BROKEN" in report.describe()
    return report.problem.kind, report.problem.seq


def test_edited_row_is_named(ledger: Ledger) -> None:
    fill(ledger)
    raw(ledger, "UPDATE ledger_events SET args_json=? WHERE seq=5", ('{"i":999}',))
    assert _break(ledger) == ("edited", 5)


def test_edited_row_with_recomputed_hash_is_named(ledger: Ledger) -> None:
    fill(ledger)
    [row] = raw(ledger, "SELECT * FROM ledger_events WHERE seq=4")
    row["detail"] = "forged"
    forged = row_hash(row, seq=4, prev_hash=row["prev_hash"])
    raw(ledger, "UPDATE ledger_events SET detail='forged', row_hash=? WHERE seq=4", (forged,))
    assert _break(ledger) == ("edited", 4)


@pytest.mark.parametrize("victim", [1, 3])
def test_deleted_row_is_named(ledger: Ledger, victim: int) -> None:
    fill(ledger)
    raw(ledger, "DELETE FROM ledger_events WHERE seq=?", (victim,))
    assert _break(ledger) == ("deleted", victim)


def test_inserted_row_is_named(ledger: Ledger) -> None:
    fill(ledger)
    raw(ledger, "UPDATE ledger_events SET seq = -(seq + 1) WHERE seq > 5")
    raw(ledger, "UPDATE ledger_events SET seq = -seq WHERE seq < 0")
    [five] = raw(ledger, "SELECT * FROM ledger_events WHERE seq=5")
    forged = {**five, "event_id": "forged", "detail": "inserted"}
    h = row_hash(forged, seq=6, prev_hash=five["row_hash"])
    cols = [c for c in forged if c not in ("seq", "prev_hash", "row_hash")]
    raw(ledger, f"INSERT INTO ledger_events (seq, prev_hash, row_hash, {', '.join(cols)})"
                f" VALUES (?, ?, ?, {', '.join('?' * len(cols))})",
        (6, five["row_hash"], h, *(forged[c] for c in cols)))
    assert _break(ledger) == ("inserted", 6)


def test_row_without_chain_link_is_inserted(ledger: Ledger) -> None:
    fill(ledger, 3)
    [one] = raw(ledger, "SELECT * FROM ledger_events WHERE seq=1")
    cols = [c for c in one if c not in ("seq", "prev_hash", "row_hash")]
    raw(ledger, f"INSERT INTO ledger_events (seq, {', '.join(cols)}) VALUES (?, {', '.join('?' * len(cols))})",
        (4, *({**one, "event_id": "x"}[c] for c in cols)))
    raw(ledger, "UPDATE ledger_head SET seq=4")
    assert _break(ledger) == ("inserted", 4)


def test_reordered_rows_are_named(ledger: Ledger) -> None:
    fill(ledger)
    raw(ledger, "UPDATE ledger_events SET seq=-5 WHERE seq=5")
    raw(ledger, "UPDATE ledger_events SET seq=5 WHERE seq=6")
    raw(ledger, "UPDATE ledger_events SET seq=6 WHERE seq=-5")
    assert _break(ledger) == ("reordered", 5)


def test_truncated_tail_is_caught_by_head_record(ledger: Ledger) -> None:
    fill(ledger)
    raw(ledger, "DELETE FROM ledger_events WHERE seq > 6")
    assert _break(ledger) == ("truncated", 7)


def test_truncated_tail_with_forged_head_is_caught_by_anchor(ledger: Ledger, tmp_path: Any) -> None:
    fill(ledger)
    ledger.head().write(tmp_path / "anchor.json")
    [six] = raw(ledger, "SELECT row_hash FROM ledger_events WHERE seq=6")
    raw(ledger, "DELETE FROM ledger_events WHERE seq > 6")
    raw(ledger, "UPDATE ledger_head SET seq=6, row_hash=?", (six["row_hash"],))
    assert ledger.verify().ok  # without the anchor, a consistent truncation cannot be seen
    report = ledger.verify(anchor=Anchor.read(tmp_path / "anchor.json"))
    assert report.problem is not None and (report.problem.kind, report.problem.seq) == ("truncated", 7)


def test_rows_added_past_the_head_record_are_inserted(ledger: Ledger) -> None:
    fill(ledger, 4)
    raw(ledger, "UPDATE ledger_head SET seq=3, row_hash=(SELECT row_hash FROM ledger_events WHERE seq=3)")
    assert _break(ledger) == ("inserted", 4)


def test_a_step_beyond_64_bits_is_refused_before_anything_is_written(ledger: Ledger) -> None:
    from pydantic import ValidationError

    big = 2**63 - 1
    ledger.append(ev(1, step=big))
    ledger.append(ev(2, step=-(2**63)))
    with pytest.raises(ValidationError, match="step"):
        ev(3, step=2**63)
    assert [r.step for r in ledger.events()] == [big, -(2**63)] and ledger.verify().ok
