"""A human's decision is validated completely before it is recorded, and never overridden.

Regression tests, each for a defect of the first release:
1. an edit with a typo or a wrong type was recorded (as a rejection) and spent the approval;
2. ``tether approve`` on a thread it could not resume recorded the decision, then failed, and a
   later, different decision sent from Studio was silently overridden;
3. an expired approval was listed as pending and ``tether approve`` exited 0;
4. a resume payload that is not a decision became a rejection "by system".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.types import Command

from tether import Approve, Home, Reject, Session, find_workflow
from tether.checkpoints.checkpointer import serializer
from tether.errors import ApprovalError, DecisionConflict, InvalidDecision
from tether.graphs.messages import parse_decision

TETHER = str(Path(sys.executable).with_name("tether"))
REFUND_40 = "Please refund $40 for order O-20417, the kettle arrived damaged"


def tether(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_HOME": str(home)}
    return subprocess.run([TETHER, *args], env=env, capture_output=True, text=True, timeout=300)


def paused(home: Path, thread: str = "T1") -> str:
    proc = tether(home, "run", "support", REFUND_40, "--subject", "C-1042", "--thread", thread, "--json")
    assert proc.returncode == 0, proc.stderr
    (waiting,) = json.loads(proc.stdout)["waiting_for"]
    return str(waiting["approval_id"])


def listed(home: Path) -> dict[str, Any]:
    proc = tether(home, "approvals", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    return dict(row)


def decisions_recorded(home: Path, thread: str = "T1") -> list[str]:
    proc = tether(home, "ledger", "show", thread, "--json")
    return [e["event"] for e in json.loads(proc.stdout) if e["event"] in ("approved", "rejected", "edited")]


@pytest.mark.parametrize("edit", ['{"amont_usd": 20}', '{"amount_usd": "twenty"}', '{"amount_usd": true}'])
def test_an_invalid_edit_exits_1_and_leaves_the_approval_pending(tmp_path: Path, edit: str) -> None:
    approval = paused(tmp_path)
    proc = tether(tmp_path, "approve", approval, "--edit", edit, "--as", "lead")
    assert proc.returncode == 1
    assert "invalid" in proc.stderr and "still pending" in proc.stderr
    assert listed(tmp_path)["state"] == "pending"
    assert decisions_recorded(tmp_path) == []
    if "amont" not in edit:
        return
    ok = tether(tmp_path, "approve", approval, "--edit", '{"amount_usd": 20}', "--as", "lead", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "resolved"  # the approval was not spent by the typo


def test_a_decision_for_a_thread_this_process_cannot_resume_is_refused_unrecorded(tmp_path: Path) -> None:
    """The thread runs elsewhere (as under ``langgraph dev``, whose checkpointer the CLI cannot see)."""
    from langgraph.checkpoint.memory import InMemorySaver

    home = Home(root=tmp_path).ensure()
    spec = find_workflow("support")
    with Session.open(spec, home=home) as s:
        elsewhere = s.workflow.compile(checkpointer=InMemorySaver(serde=serializer()))
        cfg = {"configurable": {"thread_id": "studio-1"}}
        out = elsewhere.invoke({"messages": [HumanMessage(REFUND_40)], "subject": {"id": "C-1042"}}, cfg)
        approval = out["__interrupt__"][0].value.approval_id
        proc = tether(tmp_path, "approve", approval, "--as", "lead")
        assert proc.returncode == 1 and "not waiting for it" in proc.stderr
        assert s.ledger.approval(approval).status == "pending"  # nothing recorded
        # the decision given where the thread runs is the one applied
        done = elsewhere.invoke(Command(resume=Reject(approver="studio-user", reason="duplicate")), cfg)
        assert done["outcome"].kind == "resolved"
        assert s.ledger.approval(approval).status == "rejected"
        assert not [e for e in s.events("studio-1") if e.event == "executed" and e.tool == "issue_refund"]


def test_a_conflicting_later_decision_is_reported_to_its_sender_never_applied(tmp_path: Path) -> None:
    home = Home(root=tmp_path).ensure()
    with Session.open("support", home=home) as s:
        r = s.run(REFUND_40, thread_id="T9", subject="C-1042")
        approval = r.waiting_for[0].approval_id
        s.ledger.decide(approval, status="rejected", decided_by="cli-user",
                        decision=Reject(approver="cli-user", reason="duplicate").model_dump(mode="json"))
        # a reviewer in Studio approves the same request afterwards
        out = s.app.invoke(Command(resume={"kind": "approve", "approver": "studio-user"}), s.config("T9"))
        (again,) = out["__interrupt__"]
        assert again.value.refused is not None and "already rejected by cli-user" in again.value.refused
        with pytest.raises(DecisionConflict, match="already rejected"):
            s.decide(approval, Approve(approver="someone-else"))
        final = s.resume("T9")  # applies the recorded decision: the rejection
        assert final.status == "resolved"
        assert not [e for e in s.events("T9") if e.event == "executed" and e.tool == "issue_refund"]
        assert [e.approver for e in s.events("T9") if e.event == "rejected"] == ["cli-user"]


def test_an_expired_approval_is_listed_as_expired_and_refused(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shipped = find_workflow("support").policy_path
    assert shipped is not None
    text = shipped.read_text().replace("  max_model_spend_usd: 0.35\n",
                                       "  max_model_spend_usd: 0.35\n  approval_ttl_seconds: 0.2\n")
    policy.write_text(text)
    proc = tether(tmp_path, "run", "support", REFUND_40, "--subject", "C-1042", "--thread", "T1",
                  "--policy", str(policy), "--json")
    approval = json.loads(proc.stdout)["waiting_for"][0]["approval_id"]
    row = listed(tmp_path)
    assert row["approval_id"] == approval and row["state"] == "expired"
    proc = tether(tmp_path, "approve", approval, "--as", "lead", "--policy", str(policy))
    assert proc.returncode == 1 and "expired" in proc.stderr
    assert decisions_recorded(tmp_path) == []


@pytest.mark.parametrize("payload", ["yes", 1, None, {"kind": "approve"}, {"kind": "maybe", "approver": "x"}])
def test_a_payload_that_is_not_a_decision_is_an_error_naming_the_accepted_shapes(payload: Any) -> None:
    with pytest.raises(InvalidDecision) as info:
        parse_decision(payload, approval_id="A-1")
    message = str(info.value)
    assert '"kind": "approve"' in message and '"kind": "reject"' in message and '"kind": "edit"' in message
    assert isinstance(info.value, ApprovalError)
