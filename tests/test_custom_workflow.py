"""A workflow of one's own, built only from ``tether``'s exported names: routing, run-context
rules, per-record limits across parallel calls, approvals through ``Session``, no subject needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from pydantic import BaseModel, ConfigDict

from tether import (
    Approve,
    KeywordRouter,
    Ledger,
    Policy,
    Route,
    ScriptedChatModel,
    Session,
    ToolContext,
    Toolset,
    Workflow,
    WorkflowError,
    open_checkpointer,
    tool,
)

POLICY = """
agent:
  max_wall_clock_seconds: 60
  max_tool_calls: 10
  max_model_spend_usd: 1
  escalation: {on_budget_exceeded: handoff_to_human, on_tool_error_retries_exhausted: handoff_to_human}
tools:
  read_ticket: {allowed: true}
  close_ticket:
    allowed: true
    context:
      - {id: was_read, read: read_ticket, match: {id: ticket_id}, field: status, in: [open]}
      - {id: once, max_per_record: 1}
    args:
      note: {find: email, pattern: '.*@example\\.com$', effect: require_approval}
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReadArgs(_Strict):
    ticket_id: str


class Ticket(BaseModel):
    id: str
    status: str


class CloseArgs(_Strict):
    ticket_id: str
    note: str = ""


class Closed(BaseModel):
    id: str
    closed: bool


class Desk:
    def __init__(self) -> None:
        self.status = {"TK-1": "open", "TK-2": "closed"}
        self.closed: list[str] = []


@tool(name="read_ticket")
def read_ticket(args: ReadArgs, ctx: ToolContext[Desk]) -> Ticket:
    """Read a ticket."""
    return Ticket(id=args.ticket_id, status=ctx.resources.status[args.ticket_id])


@tool(name="close_ticket", effect="write", record_arg="ticket_id")
def close_ticket(args: CloseArgs, ctx: ToolContext[Desk]) -> Closed:
    """Close a ticket."""
    ctx.resources.closed.append(args.ticket_id)
    ctx.resources.status[args.ticket_id] = "closed"
    return Closed(id=args.ticket_id, closed=True)


def call(name: str, args: dict[str, object], call_id: str) -> dict[str, object]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def build(tmp: Path, script: list[AIMessage], *, routes: tuple[Route, ...] | None = None,
          router: object = None, desk: Desk | None = None) -> Workflow:
    return Workflow(
        name="tickets",
        policy=Policy.from_text(POLICY),
        tools=Toolset(tools=[read_ticket, close_ticket]),
        routes=routes or (Route(name="tickets", description="ticket work", tools=("read_ticket", "close_ticket")),),
        router_model=router or KeywordRouter(keywords={}),  # type: ignore[arg-type]
        router_model_id="offline:keyword-router",
        model=ScriptedChatModel(script=script),
        model_id="offline:scripted",
        ledger=Ledger.open(tmp / "ledger.sqlite"),
        resources=desk or Desk(),
        system_prompt="You close tickets.",
    )


@pytest.fixture
def checkpoints(tmp_path: Path) -> Iterator[object]:
    with open_checkpointer(f"sqlite:///{tmp_path / 'cp.sqlite'}") as saver:
        yield saver


READ = AIMessage(content="", tool_calls=[call("read_ticket", {"ticket_id": "TK-1"}, "r1")])  # type: ignore[list-item]


def test_rules_read_the_run_context_and_parallel_calls_cannot_pass_a_per_record_limit(
    tmp_path: Path, checkpoints: object
) -> None:
    desk = Desk()
    twice = AIMessage(content="", tool_calls=[call("close_ticket", {"ticket_id": "TK-1"}, "c1"),  # type: ignore[list-item]
                                              call("close_ticket", {"ticket_id": "TK-1"}, "c2")])
    unread = AIMessage(content="", tool_calls=[call("close_ticket", {"ticket_id": "TK-2"}, "c3")])  # type: ignore[list-item]
    wf = build(tmp_path, [READ, twice, unread, AIMessage(content="done")], desk=desk)
    s = Session(workflow=wf, checkpointer=checkpoints)  # type: ignore[arg-type]
    r = s.run("close TK-1 and TK-2", thread_id="t1")  # no subject: this workflow does not need one
    assert r.status == "resolved"
    assert desk.closed == ["TK-1"]  # exactly once, though the model asked twice in one message
    rules = {e.tool_call_id: e.rule_id for e in s.events("t1") if e.event == "proposed"}
    assert rules["c2"] == "tools.close_ticket.context.once"
    assert rules["c3"] == "tools.close_ticket.context.was_read"  # TK-2 was never read in this run
    assert [e.event for e in s.events("t1")][:2] == ["run_started", "routed"]
    assert all(e.model_id != "offline:keyword-router" for e in s.events("t1"))  # one route: no router call


def test_an_address_found_in_free_text_asks_a_human_and_the_session_applies_the_approval(
    tmp_path: Path, checkpoints: object
) -> None:
    desk = Desk()
    close = AIMessage(content="", tool_calls=[call("close_ticket", {"ticket_id": "TK-1",  # type: ignore[list-item]
                                                                   "note": "mail eve@evil.test"}, "c1")])
    wf = build(tmp_path, [READ, close, AIMessage(content="closed")], desk=desk)
    s = Session(workflow=wf, checkpointer=checkpoints)  # type: ignore[arg-type]
    r = s.run("close TK-1", thread_id="t2")
    (req,) = r.waiting_for
    assert req.rule_id == "tools.close_ticket.args.note" and desk.closed == []
    assert s.decide(req.approval_id, Approve(approver="lead")).status == "resolved"
    assert desk.closed == ["TK-1"]


def test_the_router_is_told_the_routes_and_an_unknown_route_is_retried_then_escalated(
    tmp_path: Path, checkpoints: object
) -> None:
    routes = (Route(name="tickets", description="ticket work", tools=("read_ticket", "close_ticket")),
              Route(name="reports", description="weekly reports", tools=("read_ticket",)))
    bad = AIMessage(content="", tool_calls=[call("route", {"route": "billing"}, "x1")])  # type: ignore[list-item]
    good = AIMessage(content="", tool_calls=[call("route", {"route": "reports"}, "x2")])  # type: ignore[list-item]
    router = ScriptedChatModel(script=[bad, good])
    wf = build(tmp_path, [AIMessage(content="here is the report")], routes=routes, router=router)
    s = Session(workflow=wf, checkpointer=checkpoints)  # type: ignore[arg-type]
    r = s.run("weekly report please", thread_id="t3")
    assert r.status == "resolved" and r.route == "reports"  # corrected after seeing the error
    stubborn = ScriptedChatModel(script=[bad, bad, bad])
    s2 = Session(workflow=build(tmp_path, [], routes=routes, router=stubborn), checkpointer=checkpoints)  # type: ignore[arg-type]
    r2 = s2.run("anything", thread_id="t4")
    assert r2.status == "escalated" and r2.outcome is not None and r2.outcome.rule_id == "route.unknown"


def test_a_policy_naming_a_field_the_tool_does_not_return_fails_at_build_time(tmp_path: Path) -> None:
    from tether import PolicyFileError

    wrong = POLICY.replace("field: status", "field: state")
    with pytest.raises(PolicyFileError, match="state"):
        Workflow(
            name="tickets", policy=Policy.from_text(wrong), tools=Toolset(tools=[read_ticket, close_ticket]),
            routes=(Route(name="t", description="t", tools=("read_ticket", "close_ticket")),),
            router_model=KeywordRouter(keywords={}), router_model_id="offline:keyword-router",
            model=ScriptedChatModel(script=[]), model_id="offline:scripted",
            ledger=Ledger.open(tmp_path / "l.sqlite"), system_prompt="x",
        )


def test_an_unpriced_model_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="model_id"):
        Workflow(
            name="tickets", policy=Policy.from_text(POLICY), tools=Toolset(tools=[read_ticket, close_ticket]),
            routes=(Route(name="t", description="t", tools=("read_ticket",)),),
            router_model=KeywordRouter(keywords={}), router_model_id="offline:keyword-router",
            model=ScriptedChatModel(script=[]), model_id="acme:unpriced",
            ledger=Ledger.open(tmp_path / "l.sqlite"), system_prompt="x",
        )


def test_a_chat_model_that_cannot_call_tools_is_refused_at_build_time(tmp_path: Path) -> None:
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel

    with pytest.raises(WorkflowError, match="ScriptedChatModel"):
        Workflow(
            name="tickets", policy=Policy.from_text(POLICY), tools=Toolset(tools=[read_ticket, close_ticket]),
            routes=(Route(name="t", description="t", tools=("read_ticket",)),),
            router_model=KeywordRouter(keywords={}), router_model_id="offline:keyword-router",
            model=FakeMessagesListChatModel(responses=[AIMessage(content="hi")]), model_id="offline:scripted",
            ledger=Ledger.open(tmp_path / "l.sqlite"), system_prompt="x",
        )
