"""Shared helpers for test_scenarios / test_workflow / test_adversarial (not a test module).

Import from a test file with::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from helpers import ...  # noqa: E402
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import Field

from tether.agents.support.desk import POLICY_PATH, support_workflow
from tether.checkpoints.checkpointer import serializer
from tether.checkpoints.ledger import Ledger, LedgerRow
from tether.config import Home
from tether.graphs.state import ApprovalRequest
from tether.graphs.workflow import Workflow
from tether.guards.policy import Policy
from tether.models import ModelConfig, ScriptedChatModel

CUSTOMER = "C-1042"
OTHER_CUSTOMER = "C-1043"
REFUND_TEXT = "I need a refund for the damaged kettle in order O-20417"
ORDER_TEXT = "Tell me about my order O-20417"
ACCOUNT_TEXT = "Please update my phone number"
OTHER_TEXT = "hello there"
KETTLE_ORDER = "O-20417"
REFUND_EVIDENCE = "KB-REFUND@v3#54f9cf3e"
SCRIPTED_MODEL_ID = "offline:support-v1"
"""The scripted model is billed as the offline support model (it needs a price)."""


# ---------------------------------------------------------------- policies


def default_policy_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    return data


def make_policy(*, agent: Mapping[str, Any] | None = None, escalation: Mapping[str, Any] | None = None,
                tools: Mapping[str, Mapping[str, Any]] | None = None) -> Policy:
    """The shipped policy with overrides, built through ``Policy.from_text`` (the real loader)."""
    data = default_policy_data()
    data["agent"].update(agent or {})
    data["agent"]["escalation"].update(escalation or {})
    for name, rule in (tools or {}).items():
        data["tools"].setdefault(name, {}).update(rule)
    return Policy.from_text(yaml.safe_dump(data, sort_keys=False), source="<test>")


# ---------------------------------------------------------------- scripted messages


def tc(name: str, args: Mapping[str, Any], call_id: str) -> dict[str, Any]:
    """One tool call as LangChain represents it."""
    return {"name": name, "args": dict(args), "id": call_id, "type": "tool_call"}


def calls(*tool_calls: Mapping[str, Any], content: str = "") -> AIMessage:
    """An AIMessage proposing these tool calls."""
    return AIMessage(content=content, tool_calls=[dict(t) for t in tool_calls])  # type: ignore[misc]


def call(name: str, args: Mapping[str, Any], call_id: str) -> AIMessage:
    return calls(tc(name, args, call_id))


def answer(text: str = "Done.") -> AIMessage:
    return AIMessage(content=text)


class RecordingModel(ScriptedChatModel):
    """A ``ScriptedChatModel`` that also records what it was shown on each turn."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    offered: list[list[str]] = Field(default_factory=list)

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        self.seen.append(list(messages))
        self.offered.append([t["function"]["name"] for t in tools])
        return super().reply(messages, tools)

    def last_seen_tool_messages(self) -> dict[str, dict[str, Any]]:
        """tool_call_id -> payload of the ToolMessages in the latest prompt."""
        return tool_messages(self.seen[-1]) if self.seen else {}


def scripted(wf: Workflow, script: Sequence[AIMessage],
             by_request: Mapping[str, Sequence[AIMessage]] | None = None) -> Workflow:
    model = RecordingModel(script=list(script), by_request={k: list(v) for k, v in (by_request or {}).items()})
    return dataclasses.replace(wf, model=model, model_id=SCRIPTED_MODEL_ID)


def recorder(wf: Workflow) -> RecordingModel:
    assert isinstance(wf.model, RecordingModel)
    return wf.model


def memory_saver() -> InMemorySaver:
    """An in-memory checkpointer with tether's serializer allowlist (as the SQLite one has)."""
    return InMemorySaver(serde=serializer())


def build_workflow(home: Home, ledger: Ledger, *, policy: Policy | None = None,
                   script: Sequence[AIMessage] | None = None,
                   by_request: Mapping[str, Sequence[AIMessage]] | None = None) -> Workflow:
    wf = support_workflow(home=home, ledger=ledger, policy=policy, models=ModelConfig())
    return scripted(wf, script, by_request) if script is not None else wf


def model_position(wf: Workflow) -> int:
    """How many scripted turns the model has served."""
    model = wf.model
    assert isinstance(model, ScriptedChatModel)
    return model.calls[0]


# ---------------------------------------------------------------- running


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 200}


def start(app: Any, text: str, thread: str, *, customer: str = CUSTOMER) -> dict[str, Any]:
    out: dict[str, Any] = app.invoke({"messages": [HumanMessage(content=text)], "subject": {"id": customer}},
                                     config(thread))
    return out


def resume(app: Any, thread: str, decision: Any) -> dict[str, Any]:
    out: dict[str, Any] = app.invoke(Command(resume=decision), config(thread))
    return out


def pending(app: Any, thread: str) -> list[ApprovalRequest]:
    snap = app.get_state(config(thread))
    return [i.value for t in snap.tasks for i in t.interrupts if isinstance(i.value, ApprovalRequest)]


def state(app: Any, thread: str) -> dict[str, Any]:
    values: dict[str, Any] = app.get_state(config(thread)).values or {}
    return values


def tool_messages(messages: Iterable[AnyMessage]) -> dict[str, dict[str, Any]]:
    """tool_call_id -> parsed JSON payload of its ToolMessage."""
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        if isinstance(m, ToolMessage):
            out[m.tool_call_id] = json.loads(str(m.content))
    return out


def unanswered_tool_calls(messages: Sequence[AnyMessage]) -> list[str]:
    """Ids of tool calls (valid or malformed) in AIMessages with no ToolMessage answering them.

    OpenAI rejects a conversation in which any assistant tool call lacks its tool reply; LangChain
    sends ``invalid_tool_calls`` to OpenAI as tool calls too.
    """
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    missing: list[str] = []
    for m in messages:
        if isinstance(m, AIMessage):
            ids = [t.get("id") for t in m.tool_calls] + [t.get("id") for t in m.invalid_tool_calls]
            missing += [str(i) for i in ids if i not in answered]
    return missing


# ---------------------------------------------------------------- ledger and business DB


def events(ledger: Ledger, thread: str, kind: str | None = None, tool: str | None = None) -> list[LedgerRow]:
    return [e for e in ledger.events(thread)
            if (kind is None or e.event == kind) and (tool is None or e.tool == tool)]


def world_query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the business database with a separate connection (what another process would see)."""
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute(sql, params).fetchall()]
    finally:
        db.close()


def count(path: Path, table: str, where: str = "1=1", params: Sequence[Any] = ()) -> int:
    return int(world_query(path, f"SELECT COUNT(*) FROM {table} WHERE {where}", params)[0][0])


def agent_refunds(path: Path) -> list[tuple[Any, ...]]:
    """Refund rows written by the agent (the seeded world's refunds have no idempotency key)."""
    return world_query(path, "SELECT id, order_id, amount_usd, reason, evidence, idempotency_key FROM refunds"
                             " WHERE idempotency_key IS NOT NULL ORDER BY id")


def customer_order_ids(path: Path, customer: str) -> set[str]:
    return {r[0] for r in world_query(path, "SELECT id FROM orders WHERE customer_id=?", (customer,))}
