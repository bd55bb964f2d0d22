"""Per-run totals: splitting a refund into small ones gets around neither the cap nor the approval."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import (
    KETTLE_ORDER,
    REFUND_EVIDENCE,
    agent_refunds,
    answer,
    build_workflow,
    call,
    calls,
    events,
    make_policy,
    memory_saver,
    pending,
    resume,
    start,
    tc,
)

from tether.agents.support.desk import world_path
from tether.checkpoints.ledger import Ledger
from tether.config import Home
from tether.graphs.state import Approve
from tether.guards.policy import ActionRequest, Policy

SEARCH = call("search_policy", {"query": "refund damaged item"}, "s1")
TEXT = "I need a refund for the damaged kettle in order O-20417"


def refund_args(amount: float) -> dict[str, object]:
    return {
        "order_id": KETTLE_ORDER,
        "amount_usd": amount,
        "reason": "damaged",
        "citation_ids": [REFUND_EVIDENCE],
    }


@pytest.fixture
def ledger(home: Home) -> Iterator[Ledger]:
    with Ledger.open(home.ledger_url) as led:
        yield led


def totals_policy() -> Policy:
    return make_policy(
        tools={"issue_refund": {"max_total_usd_per_run": 50, "require_approval_over_total_usd": 25}}
    )


def test_rules_compare_the_running_total_not_the_single_call() -> None:
    p = totals_policy()

    def decide(amount: float, before: float) -> str:
        a = ActionRequest(
            tool="issue_refund",
            amount_usd=amount,
            run_total_usd=before,
            citations=(REFUND_EVIDENCE,),
            retrieved_evidence=frozenset({REFUND_EVIDENCE}),
        )
        return p.evaluate(a).rule_id

    assert decide(20, 0) == "tools.issue_refund.allowed"
    assert decide(20, 20) == "tools.issue_refund.require_approval_over_total_usd"
    assert decide(20, 40) == "tools.issue_refund.max_total_usd_per_run"
    shipped = make_policy()
    assert (
        shipped.version
        == Policy.from_text(
            shipped.to_dict().__repr__() and __import__("yaml").safe_dump(shipped.to_dict()), source="x"
        ).version
    )


def test_two_small_refunds_in_one_run_need_approval_for_the_second(home: Home, ledger: Ledger) -> None:
    wf = build_workflow(
        home,
        ledger,
        policy=totals_policy(),
        script=[
            SEARCH,
            call("issue_refund", refund_args(20), "r1"),
            call("issue_refund", refund_args(20), "r2"),
            answer(),
        ],
    )
    app = wf.compile(checkpointer=memory_saver())
    start(app, TEXT, "split")
    (req,) = pending(app, "split")
    assert req.rule_id == "tools.issue_refund.require_approval_over_total_usd"
    assert [r[2] for r in agent_refunds(world_path(home))] == [20.0]
    resume(app, "split", Approve(approver="lead"))
    assert [r[2] for r in agent_refunds(world_path(home))] == [20.0, 20.0]


def test_calls_in_one_message_count_against_each_other(home: Home, ledger: Ledger) -> None:
    three = calls(
        tc("issue_refund", refund_args(20), "a"),
        tc("issue_refund", refund_args(20), "b"),
        tc("issue_refund", refund_args(20), "c"),
    )
    wf = build_workflow(
        home,
        ledger,
        policy=make_policy(tools={"issue_refund": {"max_total_usd_per_run": 45}}),
        script=[SEARCH, three, answer()],
    )
    start(wf.compile(checkpointer=memory_saver()), TEXT, "burst")
    assert [r[2] for r in agent_refunds(world_path(home))] == [20.0, 20.0]
    denied = [e for e in events(ledger, "burst", "proposed", "issue_refund") if e.decision == "deny"]
    assert [e.rule_id for e in denied] == ["tools.issue_refund.max_total_usd_per_run"]
