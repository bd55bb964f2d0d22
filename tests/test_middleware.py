"""TetherMiddleware on a real ``create_agent`` agent with an offline model and SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

import middleware_agent as m  # noqa: E402


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _events(ledger: Any, thread: str) -> list[str]:
    return [r.event for r in ledger.events(thread)]


@pytest.fixture
def env(tmp_path: Path) -> Any:
    agent, ledger, conn = m.build(tmp_path)
    yield agent, ledger, tmp_path
    ledger.close()
    conn.close()


def _ask(agent: Any, thread: str, text: str) -> dict[str, Any]:
    out: dict[str, Any] = agent.invoke({"messages": [{"role": "user", "content": text}]}, _cfg(thread))
    return out


def _resume_elsewhere(data: Path, thread: str, decision: Any) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(FIXTURES / "middleware_agent.py"), str(data), thread,
                           json.dumps(decision)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_allowed_read_runs_and_leaves_rows(env: Any) -> None:
    agent, ledger, _ = env
    out = _ask(agent, "r", "look up my order")
    assert out["messages"][-1].content == "Order O-1 totals $40."
    assert _events(ledger, "r") == ["run_started", "proposed", "executing", "executed", "responded"]
    proposed = ledger.events("r")[1]
    assert (proposed.decision, proposed.rule_id, proposed.tool) == ("allow", "tools.lookup_order.allowed",
                                                                   "lookup_order")
    assert proposed.idempotency_key and proposed.idempotency_key.startswith("r:act-")


def test_denied_call_is_refused_with_the_rule(env: Any) -> None:
    agent, ledger, _ = env
    out = _ask(agent, "d", "delete that account")
    reply = json.loads(out["messages"][2].content)
    assert reply["status"] == "denied" and reply["rule_id"] == "tools.delete_account.allowed"
    assert "executing" not in _events(ledger, "d")
    assert ledger.events("d")[1].decision == "deny"


def test_budget_stops_before_the_model_call(tmp_path: Path) -> None:
    agent, ledger, conn = m.build(tmp_path, max_model_calls=2)
    try:
        out = _ask(agent, "b", "chatty request")
        ais = [x for x in out["messages"] if type(x).__name__ == "AIMessage"]
        assert len(ais) == 3 and "budget exceeded" in str(ais[-1].content)  # 2 model replies + the stop
        assert m.MODEL.calls[0] >= 2
        row = next(r for r in ledger.events("b") if r.event == "budget_exceeded")
        assert row.rule_id == "agent.max_model_calls"
        assert _events(ledger, "b").count("executed") == 2
    finally:
        ledger.close()
        conn.close()


def test_approval_in_a_new_process_executes_exactly_once(env: Any) -> None:
    agent, ledger, data = env
    out = _ask(agent, "w", "refund part of O-1")
    (pause,) = out["__interrupt__"]
    appr = pause.value
    assert appr.tool == "issue_refund" and appr.rule_id == "tools.issue_refund.require_approval_over_usd"
    assert ledger.approval(appr.approval_id).status == "pending"
    assert not (data / "refunds.jsonl").exists()

    bad = _resume_elsewhere(data, "w", {"kind": "approve"})  # no approver: refused, nothing recorded
    assert bad["interrupts"] and "not a decision" in bad["interrupts"][0]["refused"]
    assert ledger.approval(appr.approval_id).status == "pending"
    assert "approved" not in _events(ledger, "w")

    done = _resume_elsewhere(data, "w", {"kind": "approve", "approver": "lead@example.com"})
    assert done["interrupts"] == [] and done["last"] == "Refund handled."
    lines = (data / "refunds.jsonl").read_text().splitlines()
    assert len(lines) == 1
    events = _events(ledger, "w")
    assert events.count("approved") == 1 and events.count("executing") == 1 and events.count("executed") == 1
    executed = next(r for r in ledger.events("w") if r.event == "executed")
    assert executed.approver == "lead@example.com" and executed.approval_id == appr.approval_id

    again = agent.invoke(Command(resume={"kind": "approve", "approver": "lead@example.com"}), _cfg("w"))
    assert again["messages"][-1].content == "Refund handled."
    assert len((data / "refunds.jsonl").read_text().splitlines()) == 1
    assert _events(ledger, "w").count("executed") == 1


def test_edit_is_rechecked_by_the_policy(env: Any) -> None:
    agent, ledger, data = env
    (pause,) = _ask(agent, "e", "refund part of O-1")["__interrupt__"]
    too_much = agent.invoke(Command(resume={"kind": "edit", "approver": "lead", "args": {"amount_usd": 80}}),
                            _cfg("e"))
    (again,) = too_much["__interrupt__"]
    assert "tools.issue_refund.max_amount_usd" in (again.value.refused or "")
    assert ledger.approval(pause.value.approval_id).status == "pending"
    ok = agent.invoke(Command(resume={"kind": "edit", "approver": "lead", "args": {"amount_usd": 10}}),
                      _cfg("e"))
    assert ok["messages"][-1].content == "Refund handled."
    assert json.loads((data / "refunds.jsonl").read_text())["amount"] == 10
    edited = next(r for r in ledger.events("e") if r.event == "edited")
    assert edited.args == {"order_id": "O-1", "amount_usd": 10.0} and edited.decision == "allow"


def test_plain_langchain_tools_with_writes_and_traits(tmp_path: Path) -> None:
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool as lc_tool
    from langgraph.checkpoint.memory import InMemorySaver

    from tether import Ledger, Policy, ScriptedChatModel, ToolTraits
    from tether.checkpoints.narrative import explain, render
    from tether.graphs.middleware import TetherMiddleware

    sent: list[str] = []

    @lc_tool
    def send_credit(customer: str, amount_usd: float) -> str:
        """Send store credit."""
        sent.append(customer)
        return f"credited {customer}"

    policy = Policy.from_text(m.POLICY.replace("delete_account: {allowed: false}",
                                               "send_credit: {allowed: true, max_amount_usd: 20}"))
    ledger = Ledger.open(tmp_path / "l.db")
    with pytest.raises(ValueError, match="not in langchain_tools"):
        TetherMiddleware(policy=policy, ledger=ledger, writes={"nope"})
    mw = TetherMiddleware(policy=policy, ledger=ledger, langchain_tools=[send_credit], writes={"send_credit"},
                          traits={"send_credit": ToolTraits(amount_arg="amount_usd")})
    calls = [{"name": "send_credit", "args": {"customer": "C-1", "amount_usd": a}, "id": f"c{a}"} for a in (50, 5)]
    model = ScriptedChatModel(script=[AIMessage(content="", id="x1", tool_calls=[calls[0]]),
                                      AIMessage(content="", id="x2", tool_calls=[calls[1]]),
                                      AIMessage(content="ok", id="x3")])
    agent = create_agent(model, tools=[send_credit], middleware=[mw], checkpointer=InMemorySaver())
    try:
        out = agent.invoke({"messages": [{"role": "user", "content": "credit"}]}, _cfg("p"))
        assert out["messages"][-1].content == "ok"
        assert sent == ["C-1"]  # the $50 call was denied by max_amount_usd, the $5 one ran once
        rows = ledger.events("p")
        assert [r.decision for r in rows if r.event == "proposed"] == ["deny", "allow"]
        assert rows[1].rule_id == "tools.send_credit.max_amount_usd"
        text = render(explain("p", rows))
        assert "send_credit" in text and "tools.send_credit.max_amount_usd" in text
    finally:
        ledger.close()
