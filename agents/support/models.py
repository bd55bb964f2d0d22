"""The support desk's deterministic offline models: stand-ins so the desk runs with no network.

These are *not* language models. ``ROUTER`` is a ``KeywordRouter`` over the desk's routes;
``OfflineSupportModel`` follows a fixed playbook per route (look up, cite, act, answer),
reading the tool results it gets back. Both report token usage at a notional price, so
budgets, pricing and the ledger behave as with a real provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from tether import KeywordRouter, ModelPrice, OfflineChatModel, register_model

__all__ = ["REASONING_ID", "ROUTER_ID", "OfflineSupportModel", "register_offline_models", "support_router"]

ROUTER_ID = "offline:router-v1"
REASONING_ID = "offline:support-v1"
_ORDER = re.compile(r"\bO-\d{5}\b")
_MONEY = re.compile(r"\$\s?(\d+(?:\.\d{1,2})?)")
_CUSTOMER = re.compile(r"\bC-\d{4}\b")


def support_router() -> KeywordRouter:
    """Keyword routing for the desk's routes (tried in order; ``other`` when nothing matches)."""
    return KeywordRouter(
        model_id=ROUTER_ID,
        keywords={
            "refund": ("refund", "money back", "reimburse"),
            "account_update": ("phone", "email", "address", "credit limit", "update my"),
            "order_history": ("order", "ordered", "purchase", "bought"),
            "policy_question": ("policy", "warranty", "shipping", "privacy", "how long"),
        },
        default="other",
    )


def register_offline_models() -> None:
    """Make the desk's offline ids loadable (notional prices: a small and a large hosted model)."""
    register_model(ROUTER_ID, support_router,
                   price=ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60, max_output_tokens=64))
    register_model(REASONING_ID, OfflineSupportModel,
                   price=ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00, max_output_tokens=512))


def _last_request(messages: Sequence[BaseMessage]) -> tuple[str, list[ToolMessage], list[AIMessage]]:
    """The latest user text and the tool results / model turns that followed it."""
    idx = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    text = str(messages[idx].content) if idx >= 0 else ""
    after = messages[idx + 1 :]
    return (
        text,
        [m for m in after if isinstance(m, ToolMessage)],
        [m for m in after if isinstance(m, AIMessage)],
    )


def _call(name: str, args: dict[str, Any], n: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n:03d}_{name}"}])


def _payload(m: ToolMessage) -> dict[str, Any]:
    try:
        data = json.loads(str(m.content))
    except ValueError:
        return {"status": "error", "message": str(m.content)}
    return data if isinstance(data, dict) else {"status": "ok", "result": data}


class OfflineSupportModel(OfflineChatModel):
    """A fixed playbook per route that reacts to tool results, denials and approvals."""

    model_id: str = REASONING_ID

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        route = "other"
        for m in messages:
            if isinstance(m, SystemMessage) and (hit := re.search(r"route: (\w+)", str(m.content))):
                route = hit.group(1)
        text, results, turns = _last_request(messages)
        names = {tc["id"]: tc["name"] for t in turns for tc in t.tool_calls}  # providers may drop names
        done = {m.name or names.get(m.tool_call_id, ""): _payload(m) for m in results}
        n = len(turns) + 1
        play: Callable[[str, dict[str, dict[str, Any]], int], AIMessage] = {
            "refund": _refund,
            "account_update": _account,
            "order_history": _orders,
            "policy_question": _policy,
        }.get(route, _other)
        return play(text, done, n)


def _blocked(p: dict[str, Any]) -> str | None:
    if p.get("status") in {"denied", "rejected", "error", "invalid_arguments"}:
        return str(p.get("reason") or p.get("message") or p.get("errors"))
    return None


def _refund(text: str, done: dict[str, dict[str, Any]], n: int) -> AIMessage:
    order = _ORDER.search(text)
    money = _MONEY.search(text)
    if order is None or money is None:
        return AIMessage(content="Which order is this about, and how much should be refunded?")
    oid, amount = order.group(0), float(money.group(1))
    if "lookup_order" not in done:
        return _call("lookup_order", {"order_id": oid}, n)
    if (why := _blocked(done["lookup_order"])) is not None:
        return AIMessage(content=f"I could not find that order: {why}")
    if "search_policy" not in done:
        return _call("search_policy", {"query": "refund damaged defective item"}, n)
    evidence = done["search_policy"].get("result", {}).get("evidence", [])
    cite = [evidence[0]["evidence_id"]] if evidence else []
    if "issue_refund" not in done:
        reason = "damaged item" if "damag" in text.lower() else "customer request"
        return _call(
            "issue_refund",
            {"order_id": oid, "amount_usd": amount, "reason": reason, "citation_ids": cite},
            n,
        )
    res = done["issue_refund"]
    if res.get("status") == "ok":
        r = res["result"]
        return AIMessage(
            content=f"Refunded ${r['amount_usd']:.2f} on {r['order_id']} (refund {r['refund_id']}), "
            f"per {', '.join(cite) or 'policy'}."
        )
    if res.get("status") == "rejected":
        return AIMessage(content=f"A support lead declined this refund: {res.get('reason')}.")
    if "handoff_to_human" not in done:
        return _call(
            "handoff_to_human",
            {
                "summary": f"Customer asks for a ${amount:.2f} refund on {oid} ({text[:200]}). "
                f"Support could not issue it: {_blocked(res)}",
                "reason": f"refund blocked by {res.get('rule_id', res.get('code', 'tool'))}",
            },
            n,
        )
    return AIMessage(content="I have handed this to a colleague who will follow up.")


_FIELD_WORDS = {
    "phone": "phone",
    "email": "email",
    "shipping address": "shipping_address",
    "address": "shipping_address",
    "credit limit": "credit_limit_usd",
}


def _account(text: str, done: dict[str, dict[str, Any]], n: int) -> AIMessage:
    if "update_crm_record" in done:
        res = done["update_crm_record"]
        if res.get("status") == "ok":
            changed = res["result"]["changed"]
            return AIMessage(content="Updated " + ", ".join(f"{k} to {v}" for k, v in changed.items()))
        return AIMessage(content=f"I can't make that change: {_blocked(res)}")
    t = text.lower()
    for words, field in _FIELD_WORDS.items():
        if words in t:
            value = re.split(r"\bto\b", text, maxsplit=1)[-1].strip().rstrip(".")
            return _call("update_crm_record", {"fields": {field: value}}, n)
    return AIMessage(content="Which contact detail should I change, and to what?")


def _orders(text: str, done: dict[str, dict[str, Any]], n: int) -> AIMessage:
    other = [c for c in _CUSTOMER.findall(text)]
    order_ids = _ORDER.findall(text)
    if len(order_ids) > 1:
        # audit every listed order: lookup, items and refunds for each, one call at a time
        plan: list[tuple[str, dict[str, Any]]] = []
        for oid in order_ids:
            plan += [
                ("lookup_order", {"order_id": oid}),
                ("run_sql_query", {"template": "order_items", "params": {"order_id": oid}}),
                ("run_sql_query", {"template": "refunds_for_order", "params": {"order_id": oid}}),
            ]
        if n - 1 < len(plan):
            name, args = plan[n - 1]
            return _call(name, args, n)
        return AIMessage(content=f"Checked {len(order_ids)} orders; nothing unusual found.")
    if "run_sql_query" not in done:
        query: dict[str, Any] = {"template": "orders_last_month"}
        if other:
            query["customer_id"] = other[0]
        return _call("run_sql_query", query, n)
    res = done["run_sql_query"]
    if res.get("status") != "ok":
        return AIMessage(content=f"I can only share your own orders ({_blocked(res)}).")
    rows = res["result"]["rows"]
    if not rows:
        return AIMessage(content="You placed no orders last month.")
    lines = "; ".join(f"{r[0]} on {r[1]} ({r[2]}, ${r[3]:.2f})" for r in rows)
    return AIMessage(content=f"Last month you ordered: {lines}.")


def _policy(text: str, done: dict[str, dict[str, Any]], n: int) -> AIMessage:
    if "search_policy" not in done:
        return _call("search_policy", {"query": text[:300]}, n)
    ev = done["search_policy"].get("result", {}).get("evidence", [])
    if not ev:
        return AIMessage(content="I found no policy that answers this; a colleague can help.")
    return AIMessage(content=f"{ev[0]['text']} [{ev[0]['evidence_id']}]")


def _other(text: str, done: dict[str, dict[str, Any]], n: int) -> AIMessage:
    return AIMessage(content="I can help with refunds, your orders, your contact details and our policies.")
