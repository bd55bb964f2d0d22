"""LangChain tools (``@tool`` and a ``BaseTool`` subclass) wrapped as tool contracts whose effect
and traits come from the policy, used in a real governed workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as lc_tool
from pydantic import BaseModel, Field

from tether import (
    Approve,
    KeywordRouter,
    Ledger,
    Policy,
    PolicyFileError,
    Route,
    ScriptedChatModel,
    Session,
    Workflow,
    from_langchain,
    open_checkpointer,
    toolset_from_langchain,
)

POLICY = """
agent: {max_wall_clock_seconds: 60, max_tool_calls: 10, max_model_spend_usd: 1}
tools:
  lookup_expense: {allowed: true, effect: read, traits: {record_arg: expense_id}}
  pay_expense:
    allowed: true
    effect: write
    traits: {amount_arg: amount_usd, record_arg: expense_id}
    max_amount_usd: 500
    require_approval_over_usd: 100
"""
PAID: list[dict[str, Any]] = []
DELETED: list[str] = []


@lc_tool
def lookup_expense(expense_id: str) -> dict[str, Any]:
    """Look up an expense claim."""
    return {"id": expense_id, "amount_usd": 240.0, "status": "submitted"}


class PayArgs(BaseModel):
    expense_id: str = Field(pattern=r"^E-\d+$")
    amount_usd: float = Field(gt=0)


class PayExpense(BaseTool):
    name: str = "pay_expense"
    description: str = "Pay an expense claim."
    args_schema: type[BaseModel] = PayArgs

    def _run(self, expense_id: str, amount_usd: float) -> str:
        PAID.append({"expense_id": expense_id, "amount_usd": amount_usd})
        return f"paid {amount_usd} for {expense_id}"


@lc_tool
def delete_expense(expense_id: str) -> str:
    """Delete an expense claim."""
    DELETED.append(expense_id)
    return "deleted"


@lc_tool
def refund(order_id: str, amount_usd: float, idempotency_key: str) -> str:
    """Refund an order (dedupes on the key)."""
    return f"{order_id}:{amount_usd}:{idempotency_key}"


def call(name: str, args: dict[str, object], call_id: str) -> dict[str, object]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def msg(*calls: dict[str, object]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(calls))  # type: ignore[arg-type]


def workflow(tmp: Path, script: list[AIMessage]) -> Workflow:
    policy = Policy.from_text(POLICY)
    tools = toolset_from_langchain([lookup_expense, PayExpense(), delete_expense], policy)
    return Workflow(
        name="expenses", policy=policy, tools=tools,
        routes=(Route(name="x", description="expenses", tools=tuple(tools.names())),),
        router_model=KeywordRouter(keywords={}), router_model_id="offline:keyword-router",
        model=ScriptedChatModel(script=script), model_id="offline:scripted",
        ledger=Ledger.open(tmp / "ledger.sqlite"), system_prompt="You pay expenses.",
    )


def test_contract_comes_from_the_tool_schema_and_the_policy() -> None:
    policy = Policy.from_text(POLICY)
    read, write = from_langchain(lookup_expense, policy), from_langchain(PayExpense(), policy)
    assert (read.effect, read.idempotent, read.traits.record_arg) == ("read", True, "expense_id")
    assert (write.effect, write.traits.amount_arg) == ("write", "amount_usd")
    assert write.idempotent is False  # no idempotency_key argument: a crash mid-call escalates
    assert set(write.args_model.model_fields) == {"expense_id", "amount_usd"}
    assert write.parse({"expense_id": "nope", "amount_usd": 5}).code == "invalid_arguments"  # type: ignore[union-attr]
    assert write.parse({"expense_id": "E-1", "amount_usd": 5, "extra": 1}).code == "invalid_arguments"  # type: ignore[union-attr]
    unlisted = from_langchain(delete_expense, policy)
    assert unlisted.effect == "write" and unlisted.idempotent is False


def test_a_tool_with_an_idempotency_key_argument_receives_the_run_key_and_the_model_never_sets_it() -> None:
    policy = Policy.from_text(POLICY + "  refund: {allowed: true, effect: write, traits: {amount_arg: amount_usd}}\n")
    spec = from_langchain(refund, policy)
    assert spec.idempotent is True and "idempotency_key" not in spec.args_model.model_fields
    assert spec.parse({"order_id": "O-1", "amount_usd": 3, "idempotency_key": "mine"}).code == "invalid_arguments"  # type: ignore[union-attr]
    from tether import ToolContext

    ctx = ToolContext(subject=None, thread_id="t", run_id="r", tool_call_id="c", idempotency_key="K-9", resources=None)
    out = spec.run(spec.args_model(order_id="O-1", amount_usd=3), ctx)
    assert out.content == "O-1:3.0:K-9"


def test_read_allowed_write_over_the_amount_waits_for_approval_and_unlisted_is_denied(tmp_path: Path) -> None:
    PAID.clear()
    DELETED.clear()
    script = [
        msg(call("lookup_expense", {"expense_id": "E-7"}, "r1")),
        msg(call("delete_expense", {"expense_id": "E-7"}, "d1")),
        msg(call("pay_expense", {"expense_id": "E-7", "amount_usd": 240}, "p1")),
        AIMessage(content="paid"),
    ]
    with open_checkpointer(f"sqlite:///{tmp_path / 'cp.sqlite'}") as saver:
        s = Session(workflow=workflow(tmp_path, script), checkpointer=saver)
        r = s.run("pay E-7", thread_id="t1")
        (req,) = r.waiting_for
        assert req.tool == "pay_expense" and req.rule_id == "tools.pay_expense.require_approval_over_usd"
        assert PAID == [] and DELETED == []
        done = s.decide(req.approval_id, Approve(approver="lead@example.com"))
        assert done.status == "resolved"
        events = s.events("t1")
    assert PAID == [{"expense_id": "E-7", "amount_usd": 240.0}] and DELETED == []
    decided = {e.tool: (e.decision, e.rule_id) for e in events if e.event == "proposed"}
    assert decided["lookup_expense"] == ("allow", "tools.lookup_expense.allowed")
    assert decided["delete_expense"] == ("deny", "default.unlisted_tool")
    executed = [e for e in events if e.event == "executed"]
    assert [e.tool for e in executed] == ["lookup_expense", "pay_expense"]
    assert executed[0].result["structured"]["status"] == "submitted"  # type: ignore[index]
    assert all(e.idempotency_key for e in events if e.event in ("executing", "executed"))


def test_a_write_over_the_cap_is_denied_without_calling_the_tool(tmp_path: Path) -> None:
    PAID.clear()
    script = [msg(call("pay_expense", {"expense_id": "E-7", "amount_usd": 900}, "p1")), AIMessage(content="no")]
    with open_checkpointer(f"sqlite:///{tmp_path / 'cp.sqlite'}") as saver:
        s = Session(workflow=workflow(tmp_path, script), checkpointer=saver)
        assert s.run("pay E-7", thread_id="t1").status == "resolved"
        rules = [e.rule_id for e in s.events("t1") if e.event == "proposed"]
    assert rules == ["tools.pay_expense.max_amount_usd"] and PAID == []


@pytest.mark.parametrize(("rule", "key", "fragment"), [
    ("{allowed: true}", "tools.pay_expense.effect", "effect: read or effect: write"),
    ("{allowed: true, effect: write, traits: {amount_arg: amount}}", "tools.pay_expense.traits.amount_arg",
     "no argument 'amount'"),
])
def test_an_incomplete_contract_in_the_policy_is_refused_naming_the_key(rule: str, key: str, fragment: str) -> None:
    policy = Policy.from_text(POLICY.split("  pay_expense:")[0] + f"  pay_expense: {rule}\n")
    with pytest.raises(PolicyFileError) as err:
        from_langchain(PayExpense(), policy)
    assert err.value.key == key and fragment in err.value.reason


@pytest.mark.parametrize(("rule", "key", "fragment"), [
    ("{allowed: true, effect: wirte}", "tools.t.effect", "Did you mean 'write'"),
    ("{allowed: true, effect: require_approval}", "tools.t.effect", "not a decision"),
    ("{allowed: true, effect: read, traits: {amount_ar: x}}", "tools.t.traits.amount_ar", "Did you mean 'amount_arg'"),
    ("{allowed: true, traits: {record_arg: 3}}", "tools.t.traits.record_arg", "valid string"),
    ("{allowed: true, trait: {record_arg: x}}", "tools.t.trait", "Did you mean 'traits'"),
])
def test_a_typo_in_effect_or_traits_names_the_key(rule: str, key: str, fragment: str) -> None:
    text = f"agent: {{max_wall_clock_seconds: 1, max_tool_calls: 1, max_model_spend_usd: 1}}\ntools:\n  t: {rule}\n"
    with pytest.raises(PolicyFileError) as err:
        Policy.from_text(text)
    assert err.value.key == key and fragment in err.value.reason and err.value.problems[0].line == 3


def test_a_policy_without_the_new_keys_keeps_its_version() -> None:
    plain = "agent: {max_wall_clock_seconds: 1, max_tool_calls: 1, max_model_spend_usd: 1}\ntools:\n  t: {allowed: true}\n"
    with_effect = plain.replace("{allowed: true}", "{allowed: true, effect: read}")
    assert "effect" not in Policy.from_text(plain).to_dict()["tools"]["t"]
    assert Policy.from_text(plain).version != Policy.from_text(with_effect).version


def test_a_crash_mid_call_of_a_write_without_a_key_escalates_instead_of_paying_again(tmp_path: Path) -> None:
    from tether.graphs.faults import install_fault_hook

    PAID.clear()
    script = [msg(call("pay_expense", {"expense_id": "E-8", "amount_usd": 35}, "p1")), AIMessage(content="paid")]

    def crash(point: str, tool: str) -> None:
        if point == "after_tool":
            raise SystemExit("crash after the tool ran")

    with open_checkpointer(f"sqlite:///{tmp_path / 'cp.sqlite'}") as saver:
        s = Session(workflow=workflow(tmp_path, script), checkpointer=saver)
        install_fault_hook(crash)
        try:
            with pytest.raises(SystemExit):
                s.run("pay E-8", thread_id="t1")
        finally:
            install_fault_hook(None)
        r = s.resume("t1")
    assert r.status == "escalated" and r.outcome is not None and r.outcome.rule_id == "act.outcome_unknown"
    assert PAID == [{"expense_id": "E-8", "amount_usd": 35.0}]  # once, not twice
