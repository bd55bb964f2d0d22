"""Every tool of a real MCP server (FastMCP on stdio, started through langchain-mcp-adapters)
wrapped as tool contracts: a gated write runs exactly once, across resumes and a crash."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from tether import (
    ApprovalError,
    Approve,
    KeywordRouter,
    Ledger,
    Policy,
    PolicyFileError,
    Route,
    ScriptedChatModel,
    Session,
    Toolset,
    Workflow,
    mcp_toolset,
    open_checkpointer,
)
from tether.graphs.faults import install_fault_hook
from tether.tools.adapters import run_coroutine

SERVER = Path(__file__).parent / "fixtures" / "mcp_server.py"
POLICY = """
agent: {max_wall_clock_seconds: 60, max_tool_calls: 10, max_model_spend_usd: 1}
tools:
  lookup_invoice: {allowed: true, effect: read, traits: {record_arg: invoice_id}}
  pay_invoice:
    allowed: true
    effect: write
    traits: {amount_arg: amount_usd, record_arg: invoice_id}
    require_approval_over_usd: 100
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "billing.json"


def servers(state: Path) -> dict[str, Any]:
    return {"billing": {"transport": "stdio", "command": sys.executable, "args": [str(SERVER), str(state)]}}


@pytest.fixture(scope="module")
def tools(state: Path) -> Toolset:
    return mcp_toolset(servers(state), Policy.from_text(POLICY))


def payments(state: Path) -> list[dict[str, Any]]:
    return list(json.loads(state.read_text())["payments"]) if state.exists() else []


def call(name: str, args: dict[str, object], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])


@pytest.fixture
def session(tmp_path: Path, tools: Toolset, request: pytest.FixtureRequest) -> Iterator[Session]:
    script: list[AIMessage] = request.param
    wf = Workflow(
        name="billing", policy=Policy.from_text(POLICY), tools=tools,
        routes=(Route(name="billing", description="invoices", tools=tuple(tools.names())),),
        router_model=KeywordRouter(keywords={}), router_model_id="offline:keyword-router",
        model=ScriptedChatModel(script=script), model_id="offline:scripted",
        ledger=Ledger.open(tmp_path / "ledger.sqlite"), system_prompt="You pay invoices.",
    )
    with open_checkpointer(f"sqlite:///{tmp_path / 'cp.sqlite'}") as saver:
        yield Session(workflow=wf, checkpointer=saver)


def test_every_server_tool_is_wrapped_with_its_schema_and_the_policy_contract(tools: Toolset) -> None:
    assert tools.names() == ["lookup_invoice", "pay_invoice", "void_invoice"]
    read, pay, void = (tools.get(n) for n in tools.names())
    assert read is not None and pay is not None and void is not None
    assert (read.effect, pay.effect, pay.traits.amount_arg) == ("read", "write", "amount_usd")
    assert set(pay.args_model.model_fields) == {"invoice_id", "amount_usd"}  # the key is tether's, not the model's
    assert pay.idempotent is True  # the server takes idempotency_key
    assert void.effect == "write" and void.idempotent is False  # unlisted: denied, and never re-run blind
    assert pay.parse({"invoice_id": "INV-1", "amount_usd": "lots"}).code == "invalid_arguments"  # type: ignore[union-attr]


GATED = [call("lookup_invoice", {"invoice_id": "INV-2"}, "r1"),
         call("void_invoice", {"invoice_id": "INV-2"}, "v1"),
         call("pay_invoice", {"invoice_id": "INV-2", "amount_usd": 250}, "p1"),
         AIMessage(content="paid")]


@pytest.mark.parametrize("session", [GATED], indirect=True)
def test_a_gated_write_runs_once_after_approval_and_never_again_on_resume(session: Session, state: Path) -> None:
    before = len(payments(state))
    r = session.run("pay INV-2", thread_id="t1")
    (req,) = r.waiting_for
    assert req.tool == "pay_invoice" and req.rule_id == "tools.pay_invoice.require_approval_over_usd"
    assert len(payments(state)) == before  # nothing paid while waiting
    assert session.decide(req.approval_id, Approve(approver="lead@example.com")).status == "resolved"
    assert len(payments(state)) == before + 1
    assert session.resume("t1").status == "resolved"  # resumed again: a finished thread stays as it is
    with pytest.raises(ApprovalError):
        session.decide(req.approval_id, Approve(approver="lead@example.com"))
    assert len(payments(state)) == before + 1
    events = session.events("t1")
    rules = {e.tool: (e.decision, e.rule_id) for e in events if e.event == "proposed"}
    assert rules["lookup_invoice"] == ("allow", "tools.lookup_invoice.allowed")
    assert rules["void_invoice"] == ("deny", "default.unlisted_tool")
    assert "voided" not in json.loads(state.read_text())
    (paid,) = [e for e in events if e.event == "executed" and e.tool == "pay_invoice"]
    assert paid.result["structured"]["key"] == paid.idempotency_key == payments(state)[-1]["key"]  # type: ignore[index]
    (read,) = [e for e in events if e.event == "executed" and e.tool == "lookup_invoice"]
    assert read.result["structured"] == {"id": "INV-2", "amount_usd": 250.0, "status": "open"}  # type: ignore[index]


CRASH = [call("pay_invoice", {"invoice_id": "INV-1", "amount_usd": 40}, "p1"), AIMessage(content="paid")]


@pytest.mark.parametrize("session", [CRASH], indirect=True)
def test_a_crash_after_the_call_re_runs_it_with_the_same_key_and_the_server_does_not_pay_twice(
    session: Session, state: Path
) -> None:
    before = len(payments(state))

    def crash(point: str, tool: str) -> None:
        if point == "after_tool" and tool == "pay_invoice":
            raise SystemExit("crash after the tool ran, before completion was recorded")

    install_fault_hook(crash)
    try:
        with pytest.raises(SystemExit):
            session.run("pay INV-1", thread_id="t2")
    finally:
        install_fault_hook(None)
    assert len(payments(state)) == before + 1
    assert session.resume("t2").status == "resolved"
    assert len(payments(state)) == before + 1  # re-run with the same key: deduped by the server
    (done,) = [e for e in session.events("t2") if e.event == "executed"]
    assert done.result["structured"]["replayed"] is True  # type: ignore[index]


@pytest.mark.parametrize(("old", "new", "key", "fragment"), [
    ("effect: write", "effect: wirte", "tools.pay_invoice.effect", "Did you mean 'write'"),
    ("effect: write", "effect: deny", "tools.pay_invoice.effect", "not a decision"),
    ("{amount_arg: amount_usd,", "{amount_ar: amount_usd,", "tools.pay_invoice.traits.amount_ar",
     "Did you mean 'amount_arg'"),
])
def test_a_typo_in_effect_or_traits_is_refused_by_the_loader_naming_the_key(
    old: str, new: str, key: str, fragment: str
) -> None:
    with pytest.raises(PolicyFileError) as err:
        Policy.from_text(POLICY.replace(old, new))
    assert err.value.key == key and fragment in err.value.reason and err.value.problems[0].line is not None


@pytest.mark.parametrize(("old", "new", "key", "fragment"), [
    ("amount_arg: amount_usd", "amount_arg: amount", "tools.pay_invoice.traits.amount_arg", "no argument 'amount'"),
    ("effect: write\n    ", "", "tools.pay_invoice.effect", "effect: read or effect: write"),
])
def test_a_contract_that_does_not_fit_the_server_tool_is_refused_naming_the_key(
    state: Path, old: str, new: str, key: str, fragment: str
) -> None:
    policy = Policy.from_text(POLICY.replace(old, new))  # loads: only the server's tool shows the mistake
    with pytest.raises(PolicyFileError) as err:
        mcp_toolset(servers(state), policy)
    assert err.value.key == key and fragment in err.value.reason
    assert "amount_usd" in err.value.reason or "effect" in key


def test_tools_run_from_code_that_already_runs_an_event_loop(tools: Toolset) -> None:
    from tether import ToolContext

    spec = tools.get("lookup_invoice")
    assert spec is not None
    ctx = ToolContext(subject=None, thread_id="t", run_id="r", tool_call_id="c", idempotency_key="k", resources=None)

    async def inside_a_loop() -> Any:
        return spec.run(spec.args_model(invoice_id="INV-1"), ctx)

    out = asyncio.run(inside_a_loop())
    assert out.structured == {"id": "INV-1", "amount_usd": 40.0, "status": "open"}
    assert run_coroutine(lambda: asyncio.sleep(0, result=7)) == 7
