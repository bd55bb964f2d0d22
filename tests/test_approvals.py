"""Approvals are bound to the arguments they were asked for, expire, and edits are re-decided."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tether.agents.support.desk import POLICY_PATH, SupportDesk, world_path
from tether.config import Home
from tether.errors import ApprovalError
from tether.graphs.state import Approve, Edit
from tether.guards.policy import Policy
from tether.models import ModelConfig

REFUND_40 = "Please refund $40 for order O-20417, the kettle arrived damaged"


def refunds(home: Home) -> list[tuple[str, float]]:
    with sqlite3.connect(world_path(home)) as db:
        return db.execute(
            "SELECT order_id, amount_usd FROM refunds WHERE idempotency_key IS NOT NULL"
        ).fetchall()


def tickets(home: Home) -> int:
    with sqlite3.connect(world_path(home)) as db:
        return int(db.execute("SELECT COUNT(*) FROM support_tickets").fetchone()[0])


def policy_with_ttl(tmp_path: Path, ttl: float) -> Policy:
    text = POLICY_PATH.read_text().replace(
        "  max_model_spend_usd: 0.35\n", f"  max_model_spend_usd: 0.35\n  approval_ttl_seconds: {ttl}\n"
    )
    path = tmp_path / "ttl.yaml"
    path.write_text(text)
    return Policy.from_yaml(path)


def test_ttl_key_is_optional_and_does_not_change_the_shipped_version(tmp_path: Path) -> None:
    shipped = Policy.from_yaml(POLICY_PATH)
    with_ttl = policy_with_ttl(tmp_path, 600)
    assert with_ttl.spec.agent.approval_ttl_seconds == 600.0
    assert shipped.spec.agent.approval_ttl_seconds is None
    assert with_ttl.version != shipped.version


def test_an_expired_approval_rejects_the_action(home: Home, tmp_path: Path) -> None:
    with SupportDesk(home=home, policy=policy_with_ttl(tmp_path, 0.5), models=ModelConfig()) as desk:
        (req,) = desk.run(REFUND_40, customer_id="C-1042", thread_id="ttl").waiting_for
        time.sleep(1.0)
        assert [(p.approval.approval_id, p.state) for p in desk.pending()] == [(req.approval_id, "expired")]
        with pytest.raises(ApprovalError, match="expired"):  # refused, nothing recorded
            desk.decide(req.approval_id, Approve(approver="lead"))
        assert desk.ledger.approval(req.approval_id).status == "pending"
        r = desk.resume("ttl")
        rejected = [e for e in desk.ledger.events("ttl") if e.event == "rejected"]
    assert refunds(home) == []
    assert r.status == "resolved"
    assert rejected and rejected[0].approver == "system" and "expired" in (rejected[0].detail or "")


def test_an_approval_inside_its_ttl_executes(home: Home, tmp_path: Path) -> None:
    with SupportDesk(home=home, policy=policy_with_ttl(tmp_path, 600), models=ModelConfig()) as desk:
        (req,) = desk.run(REFUND_40, customer_id="C-1042", thread_id="ttl-ok").waiting_for
        desk.decide(req.approval_id, Approve(approver="lead"))
        assert desk.resume("ttl-ok").status == "resolved"
    assert refunds(home) == [("O-20417", 40.0)]


def test_an_approval_bound_to_other_arguments_is_void(desk: SupportDesk, home: Home) -> None:
    (req,) = desk.run(REFUND_40, customer_id="C-1042", thread_id="bound").waiting_for
    desk.record(req.approval_id, Approve(approver="lead"))  # recorded, not yet applied
    # someone rewrites the stored request after the fact: the approval no longer matches
    with sqlite3.connect(home.ledger) as db:
        db.execute("UPDATE approvals SET args_hash='sha256:forged' WHERE approval_id=?", (req.approval_id,))
    desk.resume("bound")
    assert refunds(home) == []
    assert any(
        e.event == "rejected" and "other arguments" in (e.detail or "") for e in desk.ledger.events("bound")
    )


def test_an_edit_can_switch_to_another_offered_tool_under_its_own_rules(
    desk: SupportDesk, home: Home
) -> None:
    (req,) = desk.run(REFUND_40, customer_id="C-1042", thread_id="switch").waiting_for
    before = tickets(home)
    edit = Edit(
        approver="lead",
        tool="handoff_to_human",
        args={"summary": "customer wants $40 back for a damaged kettle", "reason": "lead prefers billing"},
    )
    desk.decide(req.approval_id, edit)
    r = desk.resume("switch")
    assert refunds(home) == []
    assert tickets(home) == before + 1
    assert r.status == "escalated"
    edited = [e for e in desk.ledger.events("switch") if e.event == "edited"]
    assert edited and edited[0].tool == "handoff_to_human" and edited[0].decision == "allow"


@pytest.mark.parametrize("tool", ["update_crm_record", "drop_database"])
def test_an_edit_to_a_tool_not_offered_on_the_route_is_refused(
    desk: SupportDesk, home: Home, tool: str
) -> None:
    (req,) = desk.run(REFUND_40, customer_id="C-1042", thread_id=f"bad-{tool}").waiting_for
    with pytest.raises(ApprovalError, match="not offered"):
        desk.decide(req.approval_id, Edit(approver="lead", tool=tool, args={"fields": {"phone": "1"}}))
    assert desk.ledger.approval(req.approval_id).status == "pending"
    assert desk.waiting(f"bad-{tool}") == (req,)
    assert refunds(home) == []
    assert not [e for e in desk.ledger.events(f"bad-{tool}") if e.event in ("rejected", "edited")]
