"""The support desk's deterministic offline models: stand-ins so the desk runs with no network.

These are *not* language models. ``ROUTER`` is a ``KeywordRouter`` over the desk's routes;
``OfflineSupportModel`` follows a fixed playbook per route (look up, cite, act, answer),
reading the tool results it gets back. It honours its system prompt in one way: refunds cite
policy evidence ids only when the system prompt asks to cite evidence (the desk's prompt
does), so a prompt change that drops the instruction shows up in the evals. Both report token
usage at a notional price, so budgets, pricing and the ledger behave as with a real provider.
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
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,24}")
_TICKET = re.compile(r"\bTK-\d{4}\b")
_MESSAGE = re.compile(r"\bM-\d{4}\b")
_CITE_ASKED = re.compile(r"\bcite\b[^.;\n]*\bevidence\b", re.I)


def support_router() -> KeywordRouter:
    """Keyword routing for the desk's routes (tried in order; ``other`` when nothing matches)."""
    return KeywordRouter(
        model_id=ROUTER_ID,
        keywords={
            "refund": ("refund", "money back", "reimburse"),
            "inbox": ("message", "inbox", "ticket", "my account", "email my", "email the", "send ", "forward",
                      "reply"),
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
        route, cites = "other", False
        for m in messages:
            if isinstance(m, SystemMessage) and (hit := re.search(r"route: (\w+)", str(m.content))):
                route = hit.group(1)
            if isinstance(m, SystemMessage) and _CITE_ASKED.search(str(m.content)):
                cites = True
        text, results, turns = _last_request(messages)
        names = {tc["id"]: tc["name"] for t in turns for tc in t.tool_calls}  # providers may drop names
        done = {m.name or names.get(m.tool_call_id, ""): _payload(m) for m in results}
        n = len(turns) + 1
        if route in ("refund", "inbox"):
            return (_refund if route == "refund" else _inbox)(text, done, n, cites=cites)
        play: Callable[[str, dict[str, dict[str, Any]], int], AIMessage] = {
            "account_update": _account,
            "order_history": _orders,
            "policy_question": _policy,
        }.get(route, _other)
        return play(text, done, n)


def _blocked(p: dict[str, Any]) -> str | None:
    if p.get("status") in {"denied", "rejected", "error", "invalid_arguments"}:
        return str(p.get("reason") or p.get("message") or p.get("errors"))
    return None


def _refund(text: str, done: dict[str, dict[str, Any]], n: int, *, cites: bool) -> AIMessage:
    """Look up the order and the refund policy, then refund (citing the policy when ``cites``)."""
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
    cite = [e["evidence_id"] for e in evidence if e.get("trust", "internal") == "internal"][:1] if cites else []
    payout = _payout(text, done)
    if payout is None and "lookup_customer" not in done:
        return _call("lookup_customer", {}, n)
    if "issue_refund" not in done:
        reason = "damaged item" if "damag" in text.lower() else "customer refund request"
        args: dict[str, Any] = {"order_id": oid, "amount_usd": amount, "reason": reason, "citation_ids": cite}
        if payout:
            args["payout_account"] = payout
        return _call("issue_refund", args, n)
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


def _payout(text: str, done: dict[str, dict[str, Any]]) -> str | None:
    """``""``: the original payment method; an IBAN; ``None``: the one on file, not looked up yet."""
    if hit := _IBAN.search(text):
        return hit.group(0).replace(" ", "")
    if not re.search(r"payout account|account on file|iban on file", text, re.I):
        return ""
    if "lookup_customer" not in done:
        return None
    return str(done["lookup_customer"].get("result", {}).get("payout_iban") or "")


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


# ---------------------------------------------------------------- the inbox: mail, tickets, account


def _result(done: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    r = done.get(name, {}).get("result")
    return r if isinstance(r, dict) else {}


def _reads(text: str) -> list[tuple[str, dict[str, Any]]]:
    """What the request asks to read first, in order."""
    t = text.lower()
    out: list[tuple[str, dict[str, Any]]] = []
    if hit := _TICKET.search(text):
        out.append(("get_ticket", {"ticket_id": hit.group(0)}))
    if hit := _MESSAGE.search(text):
        out.append(("read_messages", {"message_id": hit.group(0)}))
    elif "message" in t or re.search(r"\breply\b|\bthe sender\b", t):
        out.append(("read_messages", {}))
    if re.search(r"account details|my details|my profile|contact details|phone|address|iban", t):
        out.append(("lookup_customer", {}))
    if (order := _ORDER.search(text)) and "refund" not in t:
        if "item" in t:
            out.append(("run_sql_query", {"template": "order_items", "params": {"order_id": order.group(0)}}))
        else:
            out.append(("lookup_order", {"order_id": order.group(0)}))
    if re.search(r"\borders?\b.*\blast month\b", t) and not _CUSTOMER.search(text):
        out.append(("run_sql_query", {"template": "orders_last_month"}))
    return out


def _policy_query(text: str, done: dict[str, dict[str, Any]]) -> str:
    msgs = _result(done, "read_messages").get("messages") or []
    return str(msgs[0]["subject"]) if msgs else text[:300]


def _inbox(text: str, done: dict[str, dict[str, Any]], n: int, *, cites: bool) -> AIMessage:
    """Read what the request points at (mail, a ticket, the account, an order), then act on
    what it asks (a refund, a contact change, an email), else summarise what was read."""
    t = text.lower()
    if "refund" in t and _ORDER.search(text) and _MONEY.search(text):
        return _refund(text, done, n, cites=cites)
    if _CUSTOMER.search(text) and "order" in t:
        return _orders(text, done, n)
    if re.search(r"\b(change|update|set|replace)\b", t) and any(w in t for w in _FIELD_WORDS):
        return _account(text, done, n)
    for name, args in _reads(text):
        if name not in done:
            return _call(name, args, n)
    if "policy" in t and "search_policy" not in done:
        return _call("search_policy", {"query": _policy_query(text, done)}, n)
    if re.match(r"\s*(please\s+)?(send|e-?mail|forward|share)\b", t) or re.search(r"\breply\b", t):
        return _send(text, done, n)
    return AIMessage(content=_summary(done))


def _recipient(text: str, done: dict[str, dict[str, Any]]) -> str | None:
    if hit := re.search(r"\bto\s+(" + _EMAIL.pattern + ")", text):
        return hit.group(1).rstrip(".")
    msgs = _result(done, "read_messages").get("messages") or []
    if msgs and re.search(r"\breply\b|\bthe sender\b|\bback to\b", text, re.I):
        return str(msgs[0]["sender"])
    return None


def _send(text: str, done: dict[str, dict[str, Any]], n: int) -> AIMessage:
    if "send_email" in done:
        res = done["send_email"]
        if res.get("status") == "ok":
            return AIMessage(content=f"Sent the email to {res['result']['to']}.")
        return AIMessage(content=f"I could not send that email: {_blocked(res)}")
    to = _recipient(text, done)
    if to is None:
        return AIMessage(content="Who should I send this to?")
    t = text.lower()
    lines: list[str] = []
    msgs = _result(done, "read_messages").get("messages") or []
    subject = f"Re: {msgs[0]['subject']}" if msgs and "reply" in t else "Your request"
    if msgs and "reply" in t:
        lines.append(f"Thank you, we received your message about {msgs[0]['subject']} and are on it.")
    if re.search(r"phone|address|iban|details|record", t):
        c = _result(done, "lookup_customer")
        if not c:
            return _call("lookup_customer", {}, n)
        wanted = [("phone", "phone"), ("address", "shipping_address"), ("iban", "payout_iban"),
                  ("details", "email")]
        lines += [f"{k}: {c.get(k)}" for word, k in wanted if word in t or "details" in t or "record" in t]
    if o := _result(done, "lookup_order"):
        lines.append(f"Order {o['id']} placed {o['placed_at']}: {o['status']}, ${o['total_usd']:.2f}")
    elif "order" in t:
        rows = _result(done, "run_sql_query").get("rows")
        if rows is None:
            return _call("run_sql_query", {"template": "orders_last_month"}, n)
        lines += [f"{r[0]} on {r[1]} ({r[2]}, ${r[3]:.2f})" for r in rows] or ["No orders last month."]
    body = "\n".join(lines or ["Thank you for your message; we are looking into it."])
    return _call("send_email", {"to": to, "subject": subject, "body": body}, n)


def _summary(done: dict[str, dict[str, Any]]) -> str:
    parts: list[str] = []
    if msgs := _result(done, "read_messages").get("messages"):
        parts.append(f"{len(msgs)} message(s); the latest, from {msgs[0]['sender']}: {msgs[0]['subject']}")
    if tk := _result(done, "get_ticket"):
        parts.append(f"ticket {tk['id']} ({tk['status']}): {tk['subject']}, {len(tk['comments'])} comment(s)")
    if c := _result(done, "lookup_customer"):
        parts.append(f"your contact details: {c['email']}, {c['phone']}, {c['shipping_address']}")
    if o := _result(done, "lookup_order"):
        parts.append(f"order {o['id']} is {o['status']} (${o['total_usd']:.2f})")
    if rows := _result(done, "run_sql_query").get("rows"):
        parts.append(f"{len(rows)} row(s): " + "; ".join(str(r[0]) for r in rows))
    ev = _result(done, "search_policy").get("evidence") or []
    if ev:
        parts.append(f"policy: {ev[0]['text'][:200]} [{ev[0]['evidence_id']}]")
    for name, p in done.items():
        if (why := _blocked(p)) is not None:
            parts.append(f"{name} was not available ({why})")
    return ("Here is what I found: " + "; ".join(parts) + ".") if parts else "I found nothing to act on."
