"""The governed workflow driven by scripted models: validation, policy, budgets, approvals.

Each test builds the real support workflow (real tools, real policy, real ledger and business
database) with a ``ScriptedChatModel`` standing in for the reasoning model, and asserts on the
business database, the ledger and the messages the model was shown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from tether.agents.support.desk import SupportDesk, world_path
from tether.checkpoints.checkpointer import open_checkpointer
from tether.checkpoints.ledger import Ledger
from tether.config import Home
from tether.errors import ApprovalError
from tether.graphs.state import ApprovalRequest, Approve, Edit, Escalated, Reject, Resolved
from tether.guards.decisions import EscalationAction
from tether.guards.policy import Policy
from tether.models import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import (
    ACCOUNT_TEXT,
    KETTLE_ORDER,
    ORDER_TEXT,
    REFUND_EVIDENCE,
    REFUND_TEXT,
    agent_refunds,
    answer,
    build_workflow,
    call,
    calls,
    count,
    events,
    make_policy,
    memory_saver,
    model_position,
    pending,
    recorder,
    resume,
    start,
    state,
    tc,
    unanswered_tool_calls,
    world_query,
)


@pytest.fixture
def ledger(home: Home) -> Iterator[Ledger]:
    with Ledger.open(home.ledger_url) as led:
        yield led


class Harness:
    """One compiled workflow with a scripted model, on a fresh home."""

    def __init__(self, home: Home, ledger: Ledger, script: list[AIMessage], policy: Policy | None = None,
                 by_request: dict[str, list[AIMessage]] | None = None) -> None:
        self.home, self.ledger = home, ledger
        self.wf = build_workflow(home, ledger, policy=policy, script=script, by_request=by_request)
        self.app = self.wf.compile(checkpointer=memory_saver())
        self.model = recorder(self.wf)

    def close(self) -> None:
        self.wf.close()

    def start(self, text: str, thread: str = "t1") -> dict[str, Any]:
        return start(self.app, text, thread)

    def resume(self, decision: Any, thread: str = "t1") -> dict[str, Any]:
        return resume(self.app, thread, decision)

    def pending(self, thread: str = "t1") -> list[ApprovalRequest]:
        return pending(self.app, thread)

    def outcome(self, thread: str = "t1") -> Any:
        return state(self.app, thread).get("outcome")

    def events(self, kind: str | None = None, tool: str | None = None, thread: str = "t1") -> list[Any]:
        return events(self.ledger, thread, kind, tool)

    def assert_refused(self, fragment: str, thread: str = "t1") -> ApprovalRequest:
        """The decision sent was not applied: nothing recorded, the same approval asked again."""
        (req,) = self.pending(thread)
        assert req.refused is not None and fragment in req.refused, req.refused
        assert self.ledger.approval(req.approval_id).status == "pending"
        assert not [e for e in self.events(thread=thread) if e.event in ("approved", "rejected", "edited")]
        assert agent_refunds(world_path(self.home)) == []
        return req

    def assert_closed(self, thread: str = "t1") -> None:
        """Every tool call the model made has its ToolMessage (OpenAI refuses the history otherwise)."""
        assert unanswered_tool_calls(state(self.app, thread)["messages"]) == []


@pytest.fixture
def harness(home: Home, ledger: Ledger) -> Iterator[Any]:
    made: list[Harness] = []

    def make(script: list[AIMessage], policy: Policy | None = None,
             by_request: dict[str, list[AIMessage]] | None = None) -> Harness:
        h = Harness(home, ledger, script, policy, by_request)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def refund(amount: float, call_id: str, *, cite: bool = True, order: str = KETTLE_ORDER) -> dict[str, Any]:
    args: dict[str, Any] = {"order_id": order, "amount_usd": amount, "reason": "damaged kettle"}
    if cite:
        args["citation_ids"] = [REFUND_EVIDENCE]
    return tc("issue_refund", args, call_id)


SEARCH = tc("search_policy", {"query": "refund damaged item"}, "s1")


def approval_script(amount: float = 40.0) -> list[AIMessage]:
    """Retrieve the refund policy, then propose a cited refund, then answer."""
    return [calls(SEARCH), calls(refund(amount, "r1")), answer("done")]


# ---------------------------------------------------------------- malformed arguments


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": "lots", "reason": "damaged"}, "amount_usd"),
        ("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 10}, "reason"),
        ("issue_refund", {"order_id": 20417, "amount_usd": 10, "reason": "damaged"}, "order_id"),
        ("issue_refund", {"order_id": "20417", "amount_usd": 10, "reason": "damaged"}, "order_id"),
        ("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": -5, "reason": "damaged"}, "amount_usd"),
        ("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 10, "reason": "damaged", "citation_ids": "x"},
         "citation_ids"),
        ("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 10, "reason": "ok", "force": True}, "force"),
        ("lookup_order", {}, "order_id"),
        ("lookup_order", {"order_id": ["O-20417"]}, "order_id"),
        ("search_policy", {"query": 7}, "query"),
    ],
)
def test_malformed_arguments_are_returned_to_the_model_naming_the_field(
    harness: Any, tool: str, args: dict[str, Any], field: str
) -> None:
    h = harness([call(tool, args, "bad1"), answer("sorry")])
    out = h.start(REFUND_TEXT)
    assert isinstance(out["outcome"], Resolved)
    payload = h.model.last_seen_tool_messages()["bad1"]
    assert payload["status"] == "invalid_arguments"
    assert payload["code"] == "invalid_arguments"
    assert any(err.startswith(field) for err in payload["errors"]), payload["errors"]
    (proposed,) = h.events("proposed")
    assert (proposed.tool_call_id, proposed.decision, proposed.rule_id) == ("bad1", "invalid", f"schema.{tool}")
    assert field in (proposed.error or "")
    assert not h.events("executing") and not h.events("executed")
    assert agent_refunds(world_path(h.home)) == []
    h.assert_closed()


def test_consecutive_malformed_calls_escalate_after_the_retry_limit(harness: Any) -> None:
    policy = make_policy()
    limit = policy.max_tool_error_retries
    bad = [call("issue_refund", {"amount_usd": "x"}, f"bad{i}") for i in range(limit + 1)]
    h = harness([*bad, answer("never reached")], policy)
    out = h.start(REFUND_TEXT)
    outcome = out["outcome"]
    assert isinstance(outcome, Escalated)
    assert outcome.rule_id == "agent.max_tool_error_retries"
    assert outcome.action is EscalationAction.HANDOFF_TO_HUMAN
    assert model_position(h.wf) == limit + 1  # the answer was never requested
    assert [e.decision for e in h.events("proposed")] == ["invalid"] * (limit + 1)
    assert not h.events("executed")
    assert h.events()[-1].event == "escalated"
    h.assert_closed()


def test_retry_limit_counts_bad_calls_within_one_message(harness: Any) -> None:
    policy = make_policy(agent={"max_tool_error_retries": 1})
    h = harness([calls(tc("lookup_order", {}, "b1"), tc("nope", {}, "b2"), tc("lookup_order", {}, "b3")),
                 answer()], policy)
    outcome = h.start(REFUND_TEXT)["outcome"]
    assert isinstance(outcome, Escalated) and outcome.rule_id == "agent.max_tool_error_retries"
    assert not h.events("executed")
    h.assert_closed()


def test_a_successful_call_resets_the_error_streak(harness: Any) -> None:
    h = harness([
        call("lookup_order", {}, "b1"),
        call("lookup_order", {"order_id": "bad"}, "b2"),
        call("lookup_order", {"order_id": KETTLE_ORDER}, "ok1"),
        call("lookup_order", {}, "b3"),
        call("lookup_order", {}, "b4"),
        answer("fine"),
    ])
    out = h.start(REFUND_TEXT)
    assert isinstance(out["outcome"], Resolved) and out["outcome"].answer == "fine"
    assert [e.tool_call_id for e in h.events("executed")] == ["ok1"]
    h.assert_closed()


# ---------------------------------------------------------------- unknown / not offered / malformed JSON


def test_unknown_tool_is_denied_as_unlisted(harness: Any) -> None:
    h = harness([call("drop_all_tables", {"really": True}, "x1"), answer()])
    h.start(REFUND_TEXT)
    (proposed,) = h.events("proposed")
    assert (proposed.tool, proposed.decision, proposed.rule_id) == ("drop_all_tables", "invalid",
                                                                    "default.unlisted_tool")
    payload = h.model.last_seen_tool_messages()["x1"]
    assert payload["status"] == "invalid_arguments" and payload["code"] == "unknown_tool"
    assert "issue_refund" in payload["hint"]  # the model is told what it may use
    assert not h.events("executed")
    h.assert_closed()


def test_tool_not_offered_on_the_route_is_refused(harness: Any, home: Home) -> None:
    h = harness([call("update_crm_record", {"fields": {"phone": "+1-555-0000"}}, "x1"), answer()])
    h.start(REFUND_TEXT)  # refund route: update_crm_record is not offered
    assert "update_crm_record" not in h.model.offered[0]
    (proposed,) = h.events("proposed")
    assert (proposed.decision, proposed.rule_id) == ("invalid", "route.tool_not_offered")
    assert h.model.last_seen_tool_messages()["x1"]["code"] == "unknown_tool"
    assert count(world_path(home), "crm_changes") == 0
    h.assert_closed()


def test_route_decides_the_tools_offered(harness: Any) -> None:
    h = harness([answer("a"), answer("b"), answer("c")])
    h.start(REFUND_TEXT, "r")
    h.start(ORDER_TEXT, "o")
    h.start(ACCOUNT_TEXT, "u")
    assert [sorted(o) for o in h.model.offered] == [
        sorted(["lookup_customer", "lookup_order", "search_policy", "issue_refund", "handoff_to_human"]),
        sorted(["lookup_order", "run_sql_query", "handoff_to_human"]),
        sorted(["lookup_customer", "update_crm_record", "handoff_to_human"]),
    ]


def test_invalid_tool_calls_with_malformed_json_are_refused_and_answered(harness: Any) -> None:
    broken = AIMessage(content="", invalid_tool_calls=[
        {"type": "invalid_tool_call", "name": "issue_refund", "args": '{"amount_usd": 40, "order_id": ',
         "id": "j1", "error": "JSONDecodeError"},
    ])
    h = harness([broken, answer("retry later")])
    out = h.start(REFUND_TEXT)
    assert isinstance(out["outcome"], Resolved)
    (proposed,) = h.events("proposed")
    assert (proposed.tool_call_id, proposed.tool, proposed.decision) == ("j1", "issue_refund", "invalid")
    assert proposed.rule_id == "schema.malformed_json"
    payload = h.model.last_seen_tool_messages()["j1"]
    assert payload["status"] == "invalid_arguments"
    assert agent_refunds(world_path(h.home)) == []
    h.assert_closed()


# ---------------------------------------------------------------- approvals: reject / edit / payloads


def test_refund_over_threshold_waits_for_a_human_before_any_side_effect(harness: Any) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    (req,) = h.pending()
    assert req.tool == "issue_refund" and req.tool_call_id == "r1"
    assert req.rule_id == "tools.issue_refund.require_approval_over_usd"
    assert "$40.00" in req.preview
    assert agent_refunds(world_path(h.home)) == []
    assert not h.events("executing", "issue_refund")
    assert h.ledger.approval(req.approval_id).status == "pending"


def test_reject_resume_does_not_execute_and_the_model_sees_the_rejection(harness: Any) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    (req,) = h.pending()
    out = h.resume(Reject(approver="lead", reason="not covered"))
    assert isinstance(out["outcome"], Resolved)
    assert agent_refunds(world_path(h.home)) == []
    assert not h.events("executed", "issue_refund")
    payload = h.model.last_seen_tool_messages()["r1"]
    assert payload == {"status": "rejected", "reason": "not covered", "approver": "lead"}
    (rejected,) = h.events("rejected")
    assert rejected.approver == "lead"
    appr = h.ledger.approval(req.approval_id)
    assert (appr.status, appr.decided_by) == ("rejected", "lead")
    h.assert_closed()


def test_edit_to_a_lower_amount_executes_the_edited_refund(harness: Any) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    out = h.resume(Edit(approver="lead", args={"amount_usd": 20}))
    assert isinstance(out["outcome"], Resolved)
    assert [(o, a) for _, o, a, *_ in agent_refunds(world_path(h.home))] == [(KETTLE_ORDER, 20.0)]
    (edited,) = h.events("edited")
    assert edited.args is not None and edited.args["amount_usd"] == 20.0
    assert (edited.decision, edited.approver) == ("allow", "lead")
    (executed,) = h.events("executed", "issue_refund")
    assert executed.args is not None and executed.args["amount_usd"] == 20.0
    assert executed.result["amount_usd"] == 20.0
    assert h.model.last_seen_tool_messages()["r1"]["status"] == "ok"
    assert h.ledger.approvals(status="edited")[0].decided_by == "lead"
    h.assert_closed()


def test_edit_above_the_maximum_is_refused_and_the_approval_stays_pending(harness: Any) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    h.resume(Edit(approver="lead", args={"amount_usd": 80}))
    h.assert_refused("tools.issue_refund.max_amount_usd")
    h.resume(Reject(approver="lead", reason="too much"))  # a valid decision still applies
    assert h.model.last_seen_tool_messages()["r1"]["status"] == "rejected"
    assert not h.events("executed", "issue_refund")
    h.assert_closed()


@pytest.mark.parametrize(
    "patch",
    [
        {"amount_usd": "lots"},
        {"amount_usd": -1},
        {"order_id": "DROP TABLE refunds"},
        {"unexpected": 1},
        {"citation_ids": "not-a-list"},
        {"reason": ""},
    ],
)
def test_edit_with_invalid_arguments_is_refused_before_anything_is_recorded(
    harness: Any, patch: dict[str, Any]
) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    h.resume(Edit(approver="lead", args=patch))
    h.assert_refused("edited arguments are invalid")
    assert [e.tool for e in h.events("executed")] == ["search_policy"]  # only the search ran
    h.resume(Approve(approver="lead"))  # the original proposal can still be approved
    assert len(h.events("executed", "issue_refund")) == 1
    h.assert_closed()


def test_edit_citing_unretrieved_evidence_is_denied(harness: Any) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    h.resume(Edit(approver="lead", args={"citation_ids": ["KB-MADE-UP#p9"]}))
    h.assert_refused("tools.issue_refund.require_citation")


def test_raw_dict_resume_payload_is_accepted(harness: Any) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    (req,) = h.pending()
    out = h.resume({"kind": "approve", "approver": "x"})
    assert isinstance(out["outcome"], Resolved)
    assert [a for _, _, a, *_ in agent_refunds(world_path(h.home))] == [40.0]
    (approved,) = h.events("approved")
    assert approved.approver == "x"
    assert h.ledger.approval(req.approval_id).decided_by == "x"
    h.assert_closed()


@pytest.mark.parametrize(
    "payload",
    [
        "approve",
        42,
        "",
        {"kind": "approve"},  # no approver
        {"kind": "yes", "approver": "x"},
        {"kind": "edit", "approver": "x"},  # no args
        {"kind": "approve", "approver": "x", "extra": True},
        ["approve"],
    ],
)
def test_a_resume_payload_that_is_not_a_decision_is_refused_naming_the_accepted_shapes(
    harness: Any, payload: Any
) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    (req,) = h.pending()
    h.resume(payload)
    again = h.assert_refused('"kind": "approve"')  # never silently a rejection "by system"
    assert again.approval_id == req.approval_id
    assert not h.events("executed", "issue_refund")
    h.resume(Reject(approver="lead", reason="no"))
    assert h.ledger.approval(req.approval_id).status == "rejected"
    assert h.pending() == []
    h.assert_closed()


# ---------------------------------------------------------------- budgets


def test_spend_cap_escalates_before_the_model_is_called(harness: Any) -> None:
    h = harness([call("lookup_order", {"order_id": KETTLE_ORDER}, "c1"), answer()],
                make_policy(agent={"max_model_spend_usd": 0.001}))
    out = h.start(REFUND_TEXT)
    outcome = out["outcome"]
    assert isinstance(outcome, Escalated)
    assert outcome.rule_id == "agent.max_model_spend_usd"
    assert outcome.action is EscalationAction.HANDOFF_TO_HUMAN
    assert model_position(h.wf) == 0 and h.model.seen == []
    assert not h.events("proposed")
    usage = state(h.app, "t1")["usage"]
    assert usage.spend_usd <= 0.001 and usage.model_calls == 1  # only the router ran


def test_zero_tool_budget_escalates_before_any_tool_call(harness: Any) -> None:
    h = harness([calls(tc("lookup_order", {"order_id": KETTLE_ORDER}, "c1"), SEARCH), answer()],
                make_policy(agent={"max_tool_calls": 0}))
    out = h.start(REFUND_TEXT)
    outcome = out["outcome"]
    assert isinstance(outcome, Escalated) and outcome.rule_id == "agent.max_tool_calls"
    assert [e.event for e in h.events() if e.tool] == ["budget_exceeded"]
    assert not h.events("proposed") and not h.events("executing")
    assert model_position(h.wf) == 1
    h.assert_closed()


@pytest.mark.parametrize("agent", [{"max_tool_calls": 0}, {"max_model_spend_usd": 0.001}])
def test_budget_exceeded_with_halt_ends_with_a_halt(harness: Any, agent: dict[str, Any]) -> None:
    h = harness([call("lookup_order", {"order_id": KETTLE_ORDER}, "c1"), answer()],
                make_policy(agent=agent, escalation={"on_budget_exceeded": "halt"}))
    out = h.start(REFUND_TEXT)
    outcome = out["outcome"]
    assert isinstance(outcome, Escalated)
    assert outcome.action is EscalationAction.HALT
    assert "I had to stop here." in str(out["messages"][-1].content)
    assert not h.events("executed")
    h.assert_closed()


def test_tool_budget_caps_calls_across_turns(harness: Any) -> None:
    script = [call("lookup_order", {"order_id": KETTLE_ORDER}, f"c{i}") for i in range(6)] + [answer()]
    h = harness(script, make_policy(agent={"max_tool_calls": 4}))
    outcome = h.start(REFUND_TEXT)["outcome"]
    assert isinstance(outcome, Escalated) and outcome.rule_id == "agent.max_tool_calls"
    assert [e.tool_call_id for e in h.events("executed")] == ["c0", "c1", "c2", "c3"]
    assert [e.tool_call_id for e in h.events("budget_exceeded")] == ["c4"]
    h.assert_closed()


def test_a_flood_of_calls_in_one_message_is_cut_at_the_cap(harness: Any) -> None:
    flood = calls(*[tc("lookup_order", {"order_id": KETTLE_ORDER}, f"f{i}") for i in range(20)])
    h = harness([flood, answer()])
    outcome = h.start(REFUND_TEXT)["outcome"]
    assert isinstance(outcome, Escalated) and outcome.rule_id == "agent.max_tool_calls"
    assert len(h.events("proposed")) == 8
    assert len(h.events("budget_exceeded")) == 1
    assert len(h.events("executed")) <= 8
    h.assert_closed()


def test_malformed_call_skipped_after_a_budget_halt_is_still_answered(harness: Any) -> None:
    msg = AIMessage(content="", tool_calls=[tc("lookup_order", {"order_id": KETTLE_ORDER}, "a1"),
                                            tc("lookup_order", {"order_id": KETTLE_ORDER}, "a2")],
                    invalid_tool_calls=[{"type": "invalid_tool_call", "name": "issue_refund",
                                         "args": "{oops", "id": "j1", "error": "bad json"}])
    h = harness([msg, answer()], make_policy(agent={"max_tool_calls": 1}))
    outcome = h.start(REFUND_TEXT)["outcome"]
    assert isinstance(outcome, Escalated) and outcome.rule_id == "agent.max_tool_calls"
    h.assert_closed()


# ---------------------------------------------------------------- several calls in one message


def test_each_call_of_a_multi_call_message_is_decided_on_its_own(harness: Any, home: Home) -> None:
    mixed = calls(
        tc("lookup_order", {"order_id": KETTLE_ORDER}, "m_allow"),
        refund(40.0, "m_approve"),
        refund(80.0, "m_deny"),
        tc("update_crm_record", {"fields": {"credit_limit_usd": "9999"}}, "m_offroute"),
        tc("issue_refund", {"order_id": KETTLE_ORDER}, "m_invalid"),
    )
    h = harness([calls(SEARCH), mixed, answer("done")])
    h.start(REFUND_TEXT)
    (req,) = h.pending()
    assert req.tool_call_id == "m_approve"
    assert not h.events("executed", "lookup_order")  # nothing of the message runs before the decision
    out = h.resume(Approve(approver="lead"))
    assert isinstance(out["outcome"], Resolved)
    decided = {e.tool_call_id: (e.decision, e.rule_id) for e in h.events("proposed")}
    assert decided == {
        "s1": ("allow", "tools.search_policy.allowed"),
        "m_allow": ("allow", "tools.lookup_order.allowed"),
        "m_approve": ("require_approval", "tools.issue_refund.require_approval_over_usd"),
        "m_deny": ("deny", "tools.issue_refund.max_amount_usd"),
        "m_offroute": ("invalid", "route.tool_not_offered"),
        "m_invalid": ("invalid", "schema.issue_refund"),
    }
    assert sorted(e.tool_call_id for e in h.events("executed")) == ["m_allow", "m_approve", "s1"]
    assert [(o, a) for _, o, a, *_ in agent_refunds(world_path(home))] == [(KETTLE_ORDER, 40.0)]
    seen = h.model.last_seen_tool_messages()
    assert {k: v["status"] for k, v in seen.items()} == {
        "s1": "ok", "m_allow": "ok", "m_approve": "ok", "m_deny": "denied",
        "m_offroute": "invalid_arguments", "m_invalid": "invalid_arguments",
    }
    assert count(world_path(home), "crm_changes") == 0
    h.assert_closed()


def test_two_approvals_in_one_message_are_asked_one_after_the_other(harness: Any, home: Home) -> None:
    h = harness([calls(SEARCH), calls(refund(30.0, "p1"), refund(45.0, "p2", order="O-20388")), answer()])
    h.start(REFUND_TEXT)
    assert [r.tool_call_id for r in h.pending()] == ["p1"]
    h.resume(Approve(approver="lead"))
    assert [r.tool_call_id for r in h.pending()] == ["p2"]
    assert agent_refunds(world_path(home)) == []  # still nothing: the message acts as a whole
    h.resume(Reject(approver="lead", reason="too much"))
    assert [(o, a) for _, o, a, *_ in agent_refunds(world_path(home))] == [(KETTLE_ORDER, 30.0)]
    assert isinstance(h.outcome(), Resolved)
    h.assert_closed()


def test_citation_must_be_retrieved_earlier_in_the_same_run(harness: Any, home: Home) -> None:
    # citing evidence in the same message that retrieves it does not count; nor does an invented id
    h = harness([calls(SEARCH, refund(10.0, "r_same")),
                 call("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 10, "reason": "damaged",
                                       "citation_ids": ["KB-REFUND@v3#p99"]}, "r_fake"),
                 call("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 10, "reason": "damaged"},
                      "r_none"),
                 calls(refund(10.0, "r_ok")),
                 answer()])
    h.start(REFUND_TEXT)
    decided = {e.tool_call_id: e.rule_id for e in h.events("proposed", "issue_refund")}
    assert decided == {
        "r_same": "tools.issue_refund.require_citation",
        "r_fake": "tools.issue_refund.require_citation",
        "r_none": "tools.issue_refund.require_citation",
        "r_ok": "tools.issue_refund.allowed",
    }
    assert [a for _, _, a, *_ in agent_refunds(world_path(home))] == [10.0]


def test_evidence_retrieved_in_an_earlier_run_cannot_be_cited(harness: Any, home: Home) -> None:
    h = harness([calls(SEARCH), answer("found the policy")],
                by_request={"Now refund": [calls(refund(10.0, "r_later")), answer()]})
    h.start(REFUND_TEXT)
    h.start("Now refund $10 on O-20417 please")  # same thread, new run: nothing retrieved yet
    (proposed,) = h.events("proposed", "issue_refund")
    assert (proposed.decision, proposed.rule_id) == ("deny", "tools.issue_refund.require_citation")
    assert agent_refunds(world_path(home)) == []


def test_sql_tool_refuses_free_sql_and_other_customers(harness: Any, home: Home) -> None:
    h = harness([
        call("run_sql_query", {"template": "orders_last_month", "sql": "SELECT * FROM customers"}, "q_sql"),
        call("run_sql_query", {"template": "orders_last_month", "customer_id": "C-1043"}, "q_other"),
        call("run_sql_query", {"template": "order_items", "params": {"order_id": "' OR 1=1 --"}}, "q_inj"),
        call("run_sql_query", {"template": "orders_last_month"}, "q_ok"),
        answer(),
    ])
    h.start(ORDER_TEXT)
    decided = {e.tool_call_id: (e.decision, e.rule_id) for e in h.events("proposed")}
    assert decided["q_sql"] == ("deny", "tools.run_sql_query.mode")
    assert decided["q_other"] == ("deny", "tools.run_sql_query.row_level_security")
    assert decided["q_ok"][0] == "allow"
    results = {e.tool_call_id: e.result for e in h.events("executed")}
    assert set(results) <= {"q_inj", "q_ok"}
    assert "q_inj" not in results or results["q_inj"]["rows"] == []
    assert {r[0] for r in results["q_ok"]["rows"]} == {"O-20417", "O-20431"}


def test_crm_update_writes_only_allowed_fields(harness: Any, home: Home) -> None:
    h = harness([
        call("update_crm_record", {"fields": {"phone": "+1-555-0100", "credit_limit_usd": "1e9"}}, "u_mixed"),
        call("update_crm_record", {"fields": {}}, "u_empty"),
        call("update_crm_record", {"fields": {"email": "dana@new.example"}}, "u_ok"),
        answer(),
    ])
    h.start("Please update my email to dana@new.example")  # new contact details come from the request
    decided = {e.tool_call_id: (e.decision, e.rule_id) for e in h.events("proposed")}
    assert decided["u_mixed"] == ("deny", "tools.update_crm_record.allowed_fields")
    assert decided["u_empty"] == ("deny", "tools.update_crm_record.allowed_fields")
    assert decided["u_ok"] == ("allow", "tools.update_crm_record.allowed")
    assert world_query(world_path(home), "SELECT field, new_value FROM crm_changes") == [("email", "dana@new.example")]
    assert world_query(world_path(home), "SELECT credit_limit_usd, phone FROM crm_contacts WHERE customer_id='C-1042'") \
        == [(500, "+1-555-0142")]


# ---------------------------------------------------------------- restart


def test_a_pending_approval_survives_a_restart(home: Home) -> None:
    thread = "restart-1"
    with Ledger.open(home.ledger_url) as ledger, open_checkpointer(home.checkpoint_url) as saver:
        wf = build_workflow(home, ledger, script=approval_script(40.0)[:2])
        app = wf.compile(checkpointer=saver)
        start(app, REFUND_TEXT, thread)
        (req,) = pending(app, thread)
        wf.close()
    assert agent_refunds(world_path(home)) == []

    # a new process: new ledger, new checkpointer, new business-DB connection, new model
    with Ledger.open(home.ledger_url) as ledger, open_checkpointer(home.checkpoint_url) as saver:
        # the same script: a new process continues at the turn the conversation has reached
        wf = build_workflow(home, ledger, script=[*approval_script(40.0)[:2], answer("refunded after approval")])
        app = wf.compile(checkpointer=saver)
        (again,) = pending(app, thread)
        assert again == req
        out = resume(app, thread, Approve(approver="lead"))
        assert isinstance(out["outcome"], Resolved) and out["outcome"].answer == "refunded after approval"
        assert len(events(ledger, thread, "executed", "issue_refund")) == 1
        # the resumed model saw the whole earlier conversation, restored from the checkpoint
        seen = recorder(wf).seen[0]
        assert any(isinstance(m, ToolMessage) and m.tool_call_id == "r1" for m in seen)
        wf.close()

    with Ledger.open(home.ledger_url) as ledger, open_checkpointer(home.checkpoint_url) as saver:
        wf = build_workflow(home, ledger, script=[])
        app = wf.compile(checkpointer=saver)
        assert pending(app, thread) == []
        assert isinstance(state(app, thread)["outcome"], Resolved)
        assert unanswered_tool_calls(state(app, thread)["messages"]) == []
        wf.close()
    assert [(o, a) for _, o, a, *_ in agent_refunds(world_path(home))] == [(KETTLE_ORDER, 40.0)]


# ---------------------------------------------------------------- regressions (bugs found by these tests)


def test_a_resume_cannot_override_the_decision_recorded_in_the_ledger(harness: Any, home: Home) -> None:
    h = harness(approval_script(40.0))
    h.start(REFUND_TEXT)
    (req,) = h.pending()
    h.ledger.decide(req.approval_id, status="rejected", decided_by="lead",
                    decision=Reject(approver="lead", reason="no").model_dump(mode="json"))
    h.resume(Approve(approver="mallory"))
    assert h.ledger.approval(req.approval_id).status == "rejected"
    assert agent_refunds(world_path(home)) == []


def test_tool_calls_without_ids_are_each_executed(harness: Any) -> None:
    no_id = [
        AIMessage(content="", tool_calls=[{"name": "lookup_order", "args": {"order_id": KETTLE_ORDER},
                                           "id": None, "type": "tool_call"}]),
        AIMessage(content="", tool_calls=[{"name": "search_policy", "args": {"query": "refund damaged"},
                                           "id": None, "type": "tool_call"}]),
        answer(),
    ]
    h = harness(no_id)
    h.start(REFUND_TEXT)
    assert sorted(e.tool for e in h.events("executed")) == ["lookup_order", "search_policy"]


def test_a_reused_tool_call_id_is_not_answered_with_another_calls_result(harness: Any, home: Home) -> None:
    h = harness([calls(SEARCH), call("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 12,
                                                       "reason": "damaged", "citation_ids": [REFUND_EVIDENCE]},
                                      "call_0"), answer("first")],
                by_request={"also need": [
                    calls(tc("search_policy", {"query": "refund damaged item"}, "s2")),
                    call("issue_refund", {"order_id": "O-20388", "amount_usd": 10, "reason": "stale beans arrived damaged",
                                          "citation_ids": [REFUND_EVIDENCE]}, "call_0"),
                    answer("second")]})
    h.start(REFUND_TEXT)
    h.start("I also need a refund of $10 for order O-20388")
    payload = h.model.last_seen_tool_messages()["call_0"]
    refunds = [(o, a) for _, o, a, *_ in agent_refunds(world_path(home))]
    # both refunds really happened, each under its own idempotency key, and nothing was "replayed"
    assert refunds == [(KETTLE_ORDER, 12.0), ("O-20388", 10.0)]
    assert payload["status"] == "ok" and not payload.get("replayed")
    assert payload["result"]["order_id"] == "O-20388"
    executed = h.events("executed", "issue_refund")
    assert len({e.idempotency_key for e in executed}) == 2


def test_an_argument_the_checkpointer_cannot_encode_does_not_crash_the_run(harness: Any, home: Home) -> None:
    h = harness([calls(SEARCH),
                 calls(refund(10.0, "r1"), tc("lookup_order", {"order_id": 2**64}, "big")),
                 answer("done")])
    out = h.start(REFUND_TEXT)  # used to raise TypeError from the checkpointer
    assert out["outcome"] is not None
    assert state(h.app, "t1").get("outcome") is not None
    assert len(agent_refunds(world_path(home))) == 1
    h.assert_closed()


def test_an_edit_with_an_oversized_integer_is_refused_not_crashing_the_thread(home: Home) -> None:
    with SupportDesk(home=home, models=ModelConfig()) as desk:
        r = desk.run("Please refund $40 for order O-20417, the kettle arrived damaged",
                     customer_id="C-1042", thread_id="big-edit")
        (req,) = r.waiting_for
        with pytest.raises(ApprovalError, match="invalid"):  # refused before anything is recorded
            desk.decide(req.approval_id, Edit(approver="lead", args={"amount_usd": 10**20}))
        assert desk.ledger.approval(req.approval_id).status == "pending"
        r2 = desk.decide(req.approval_id, Reject(approver="lead", reason="typo"))
        assert r2.status != "awaiting_approval" and r2.outcome is not None
        assert agent_refunds(world_path(home)) == []
        assert not events(desk.ledger, "big-edit", "executed", "issue_refund")
        # the thread is usable again
        assert desk.run("What did I order last month?", customer_id="C-1042", thread_id="big-edit").status \
            == "resolved"


def test_nothing_runs_after_a_hand_off_in_the_same_message(harness: Any, home: Home) -> None:
    h = harness([calls(SEARCH),
                 calls(tc("handoff_to_human", {"summary": "customer wants a refund", "reason": "needs a human"}, "h1"),
                       refund(10.0, "r_after")),
                 answer()])
    outcome = h.start(REFUND_TEXT)["outcome"]
    assert isinstance(outcome, Escalated) and outcome.rule_id == "tools.handoff_to_human"
    assert world_query(world_path(home), "SELECT COUNT(*) FROM support_tickets") == [(1,)]
    assert agent_refunds(world_path(home)) == []
    assert not h.events("executed", "issue_refund")


def test_a_thread_does_not_carry_one_customers_memory_into_anothers_run(harness: Any) -> None:
    h = harness([answer("noted"), answer("hello")])
    h.start("Please update my phone to +1-555-0199, my address is 12 Secret Lane", "shared")
    start(h.app, "hello", "shared", customer="C-1043")
    prompts = [str(m.content) for m in h.model.seen[-1]] if len(h.model.seen) == 2 else []
    assert not any("12 Secret Lane" in p or "+1-555-0199" in p for p in prompts)
