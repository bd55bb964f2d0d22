"""The demo scenarios (a)-(f2), each played through ``SupportDesk`` with the offline models.

Every test asserts the documented outcome directly against the business database and the
ledger, then also runs the scenario's own ``expect`` check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from langgraph.types import Command

from tether.agents.support.demo import SCENARIOS, Scenario
from tether.agents.support.desk import RunResult, SupportDesk, world_path
from tether.config import Home
from tether.errors import ApprovalError
from tether.graphs.state import ApprovalRequest, Approve, Escalated, Memory, Resolved
from tether.graphs.workflow import MEMORY_WINDOW
from tether.guards.decisions import EscalationAction
from tether.models import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import (
    CUSTOMER,
    OTHER_CUSTOMER,
    agent_refunds,
    config,
    count,
    customer_order_ids,
    events,
    unanswered_tool_calls,
    world_query,
)

BY_KEY: dict[str, Scenario] = {s.key: s for s in SCENARIOS}


def play(desk: SupportDesk, key: str, thread: str | None = None) -> RunResult:
    s = BY_KEY[key]
    return desk.run(s.request, customer_id=s.subject, thread_id=thread or f"demo-{key}")


def check_expect(desk: SupportDesk, key: str, r: RunResult, thread: str | None = None) -> None:
    problem = BY_KEY[key].expect(r, desk.ledger.events(thread or f"demo-{key}"))
    assert problem is None, problem


def contact(home: Home, customer: str = CUSTOMER) -> dict[str, object]:
    rows = world_query(world_path(home), "SELECT email, phone, shipping_address, credit_limit_usd FROM crm_contacts"
                                   " WHERE customer_id=?", (customer,))
    assert len(rows) == 1
    return dict(zip(("email", "phone", "shipping_address", "credit_limit_usd"), rows[0], strict=True))


def test_every_demo_scenario_has_a_test() -> None:
    assert {s.key for s in SCENARIOS} == {"a", "b", "c", "d1", "d2", "e", "f1", "f2"}


# ---------------------------------------------------------------- (a) refund $18


def test_a_small_refund_is_cited_allowed_and_executed_once(desk: SupportDesk, home: Home) -> None:
    r = play(desk, "a")
    assert r.status == "resolved" and r.route == "refund"
    assert isinstance(r.outcome, Resolved) and "$18.00" in r.outcome.answer

    rows = agent_refunds(world_path(home))
    assert len(rows) == 1
    _, order_id, amount, _, evidence, key = rows[0]
    assert (order_id, amount) == ("O-20417", 18.0)
    assert evidence.startswith("KB-REFUND@")
    executed = events(desk.ledger, "demo-a", "executed", "issue_refund")
    assert len(executed) == 1
    assert key.startswith("demo-a:") and key == executed[0].idempotency_key
    assert executed[0].args is not None and executed[0].args["amount_usd"] == 18.0
    assert all(c.startswith("KB-REFUND@") for c in executed[0].args["citation_ids"])
    # the cited evidence was retrieved earlier in the same run
    retrieved = {ev for e in events(desk.ledger, "demo-a", "executed", "search_policy") for ev in e.evidence}
    assert set(executed[0].args["citation_ids"]) <= retrieved
    proposed = events(desk.ledger, "demo-a", "proposed", "issue_refund")
    assert [(p.decision, p.rule_id) for p in proposed] == [("allow", "tools.issue_refund.allowed")]
    assert not events(desk.ledger, "demo-a", "approval_requested")
    check_expect(desk, "a", r)


# ---------------------------------------------------------------- (b) refund $40 with approval


def test_b_refund_over_threshold_pauses_and_resumes_in_a_new_desk_exactly_once(home: Home) -> None:
    thread = "demo-b"
    with SupportDesk(home=home, models=ModelConfig()) as first:
        r = play(first, "b")
        assert r.status == "awaiting_approval" and r.outcome is None
        (req,) = r.waiting_for
        assert isinstance(req, ApprovalRequest)
        assert req.tool == "issue_refund" and req.thread_id == thread
        assert req.rule_id == "tools.issue_refund.require_approval_over_usd"
        assert req.args["amount_usd"] == 40.0
        assert "$40.00" in req.preview and "O-20417" in req.preview
        assert agent_refunds(world_path(home)) == []  # nothing happened before the human decided
        assert [a.approval_id for a in first.ledger.approvals(thread_id=thread)] == [req.approval_id]
        # the thread refuses a new request while it waits
        with pytest.raises(ApprovalError):
            first.run("refund $5 on O-20417", customer_id=CUSTOMER, thread_id=thread)

    # "another process": a brand-new desk on the same data directory decides and resumes
    with SupportDesk(home=home, models=ModelConfig()) as second:
        assert [w.approval_id for w in second.waiting(thread)] == [req.approval_id]
        second.decide(req.approval_id, Approve(approver="lead@example.com"))
        r2 = second.resume(thread)
        assert r2.status == "resolved"
        assert isinstance(r2.outcome, Resolved) and "$40.00" in r2.outcome.answer
        rows = agent_refunds(world_path(home))
        assert [(o, a) for _, o, a, *_ in rows] == [("O-20417", 40.0)]
        assert len(events(second.ledger, thread, "executed", "issue_refund")) == 1
        approved = events(second.ledger, thread, "approved")
        assert [(e.approver, e.tool_call_id) for e in approved] == [("lead@example.com", req.tool_call_id)]
        assert second.ledger.approval(req.approval_id).status == "approved"
        check_expect(second, "b", r2)

        # resuming again (same desk) does nothing
        assert second.resume(thread).status == "resolved"
        # even a raw resume command on the finished thread does not run the refund again
        second.app.invoke(Command(resume=Approve(approver="lead@example.com")), config(thread))
        assert len(agent_refunds(world_path(home))) == 1

    with SupportDesk(home=home, models=ModelConfig()) as third:
        assert third.resume(thread).status == "resolved"
        assert len(agent_refunds(world_path(home))) == 1
        assert len(events(third.ledger, thread, "executed", "issue_refund")) == 1
        assert third.ledger.approvals(status="pending") == []
        # a decision is final
        with pytest.raises(ApprovalError):
            third.decide(req.approval_id, Approve(approver="someone-else"))


# ---------------------------------------------------------------- (c) refund $80


def test_c_refund_over_max_is_denied_and_escalated_with_a_ticket(desk: SupportDesk, home: Home) -> None:
    r = play(desk, "c")
    assert agent_refunds(world_path(home)) == []
    assert r.status == "escalated"
    assert isinstance(r.outcome, Escalated)
    assert r.outcome.action is EscalationAction.HANDOFF_TO_HUMAN

    tickets = world_query(world_path(home), "SELECT id, customer_id, summary, reason FROM support_tickets")
    assert len(tickets) == 1
    ticket_id, customer, summary, reason = tickets[0]
    assert customer == CUSTOMER
    assert "$80.00" in summary and "O-20417" in summary and "$50.00 limit" in summary
    assert "max_amount_usd" in reason
    assert r.outcome.ticket_id == ticket_id and r.outcome.summary == summary

    denied = events(desk.ledger, "demo-c", "proposed", "issue_refund")
    assert [(e.decision, e.rule_id) for e in denied] == [("deny", "tools.issue_refund.max_amount_usd")]
    assert not events(desk.ledger, "demo-c", "executed", "issue_refund")
    assert not events(desk.ledger, "demo-c", "approval_requested")
    check_expect(desk, "c", r)


# ---------------------------------------------------------------- (d) CRM updates


def test_d1_phone_update_is_written(desk: SupportDesk, home: Home) -> None:
    before = contact(home)
    r = play(desk, "d1")
    assert r.status == "resolved" and r.route == "account_update"
    after = contact(home)
    assert after["phone"] == "+1-555-0199"
    assert {k: v for k, v in after.items() if k != "phone"} == {k: v for k, v in before.items() if k != "phone"}
    assert after["credit_limit_usd"] == 500
    changes = world_query(world_path(home), "SELECT customer_id, field, old_value, new_value FROM crm_changes")
    assert changes == [(CUSTOMER, "phone", before["phone"], "+1-555-0199")]
    check_expect(desk, "d1", r)


def test_d2_credit_limit_update_is_denied(desk: SupportDesk, home: Home) -> None:
    before = contact(home)
    r = play(desk, "d2")
    assert contact(home) == before
    assert before["credit_limit_usd"] == 500
    assert count(world_path(home), "crm_changes") == 0
    proposed = events(desk.ledger, "demo-d2", "proposed", "update_crm_record")
    assert [(e.decision, e.rule_id) for e in proposed] == [("deny", "tools.update_crm_record.allowed_fields")]
    assert not events(desk.ledger, "demo-d2", "executed")
    assert isinstance(r.outcome, Resolved) and "credit_limit_usd" in r.outcome.answer
    check_expect(desk, "d2", r)


# ---------------------------------------------------------------- (e) tool-call budget


def test_e_tool_call_budget_stops_the_run_at_the_cap(desk: SupportDesk, home: Home) -> None:
    r = play(desk, "e")
    assert r.status == "escalated"
    assert isinstance(r.outcome, Escalated)
    assert r.outcome.rule_id == "agent.max_tool_calls"
    assert r.outcome.action is EscalationAction.HANDOFF_TO_HUMAN
    cap = desk.policy.budgets.max_tool_calls
    assert cap == 8
    rows = desk.ledger.events("demo-e")
    executed = [e for e in rows if e.event == "executed"]
    assert 0 < len(executed) <= cap
    assert len([e for e in rows if e.event == "proposed"]) <= cap
    over = [e for e in rows if e.event == "budget_exceeded"]
    assert len(over) == 1 and over[0].rule_id == "agent.max_tool_calls"
    # nothing runs after the budget is exceeded
    assert all(e.seq < over[0].seq for e in executed)
    assert rows[-1].event == "escalated" and rows[-1].rule_id == "agent.max_tool_calls"
    # the unexecuted call is answered for the model, and nothing was written
    assert unanswered_tool_calls(desk.app.get_state(config("demo-e")).values["messages"]) == []
    assert agent_refunds(world_path(home)) == [] and count(world_path(home), "crm_changes") == 0
    check_expect(desk, "e", r)


# ---------------------------------------------------------------- (f) order history


def test_f1_last_month_lists_only_this_customers_october_orders(desk: SupportDesk, home: Home) -> None:
    r = play(desk, "f1")
    assert r.status == "resolved" and isinstance(r.outcome, Resolved)
    october = {row[0] for row in world_query(
        world_path(home), "SELECT id FROM orders WHERE customer_id=? AND placed_at >= '2026-10-01'"
                    " AND placed_at < '2026-11-01'", (CUSTOMER,))}
    assert october == {"O-20417", "O-20431"}
    (executed,) = events(desk.ledger, "demo-f1", "executed", "run_sql_query")
    assert {row[0] for row in executed.result["rows"]} == october
    assert all(row[1].startswith("2026-10") for row in executed.result["rows"])
    answer = r.outcome.answer
    for oid in october:
        assert oid in answer
    all_ids = {row[0] for row in world_query(world_path(home), "SELECT id FROM orders")}
    assert {oid for oid in all_ids if oid in answer} == october  # no other month, no other customer
    check_expect(desk, "f1", r)


def test_f2_other_customers_orders_never_reach_the_ledger(desk: SupportDesk, home: Home) -> None:
    r = play(desk, "f2")
    theirs = customer_order_ids(world_path(home), OTHER_CUSTOMER)
    assert theirs, "the world should give C-1043 some orders"
    proposed = events(desk.ledger, "demo-f2", "proposed", "run_sql_query")
    assert [(e.decision, e.rule_id) for e in proposed] == [("deny", "tools.run_sql_query.row_level_security")]
    assert not events(desk.ledger, "demo-f2", "executed")
    for e in desk.ledger.events("demo-f2"):
        blob = json.dumps(e.result) if e.result is not None else ""
        assert OTHER_CUSTOMER not in blob
        assert not any(oid in blob for oid in theirs)
    assert isinstance(r.outcome, Resolved)
    assert not any(oid in r.outcome.answer for oid in theirs)
    check_expect(desk, "f2", r)


# ---------------------------------------------------------------- threads with several requests


def test_second_request_on_the_same_thread_folds_the_first_into_memory(desk: SupportDesk, home: Home) -> None:
    thread = "two-requests"
    r1 = play(desk, "a", thread)
    assert r1.status == "resolved"
    r2 = play(desk, "f1", thread)
    assert r2.status == "resolved" and r2.route == "order_history"
    values = desk.app.get_state(config(thread)).values
    memory = values["memory"]
    assert isinstance(memory, Memory)
    (turn,) = memory.turns
    assert turn.request == BY_KEY["a"].request
    assert turn.route == "refund" and turn.outcome == "resolved"
    assert any(e.startswith("KB-REFUND@") for e in memory.evidence_seen)
    # only the second request's messages remain
    texts = [str(m.content) for m in values["messages"]]
    assert BY_KEY["a"].request not in texts and BY_KEY["f1"].request in texts
    assert len({e.run_id for e in events(desk.ledger, thread, "run_started")}) == 2
    assert len(agent_refunds(world_path(home))) == 1


def test_memory_of_an_earlier_request_records_the_actions_it_executed(desk: SupportDesk) -> None:
    thread = "memory-actions"
    assert play(desk, "a", thread).status == "resolved"
    assert play(desk, "f1", thread).status == "resolved"
    memory: Memory = desk.app.get_state(config(thread)).values["memory"]
    (turn,) = memory.turns
    assert "issue_refund:executed" in turn.actions
    assert "issue_refund:executed" in memory.render()


@pytest.mark.slow
def test_state_stays_bounded_over_many_requests_on_one_thread(desk: SupportDesk) -> None:
    thread = "long-thread"
    sizes: list[int] = []
    for n in range(1, 26):
        r = desk.run("What did I order last month?", customer_id=CUSTOMER, thread_id=thread)
        assert r.status == "resolved"
        values = desk.app.get_state(config(thread)).values
        memory: Memory = values["memory"]
        assert len(memory.turns) == min(n - 1, MEMORY_WINDOW)
        assert memory.dropped_turns == max(0, n - 1 - MEMORY_WINDOW)
        messages = values["messages"]
        assert sum(1 for m in messages if m.type == "human") == 1
        assert len(messages) <= 6
        sizes.append(len(json.dumps([str(m.content) for m in messages])) + len(memory.render()))
    assert max(sizes[MEMORY_WINDOW + 1:]) <= sizes[MEMORY_WINDOW] + 200  # flat once the window is full
