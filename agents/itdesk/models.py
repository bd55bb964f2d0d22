"""The IT desk's deterministic offline models: stand-ins so the desk runs with no network.

These are *not* language models. ``itdesk_router`` is a ``KeywordRouter`` over the desk's
routes; ``OfflineItDeskModel`` follows a small playbook per route (verify, read, act, answer),
reading the tool results it gets back, one call per turn. Both report token usage at a
notional price, so budgets, pricing and the ledger behave as with a hosted model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from tether import KeywordRouter, ModelPrice, OfflineChatModel, register_model
from tether.agents.itdesk.world import GROUPS

__all__ = ["REASONING_ID", "ROUTER_ID", "OfflineItDeskModel", "itdesk_router", "register_offline_models"]

ROUTER_ID = "offline:itdesk-router-v1"
REASONING_ID = "offline:itdesk-v1"
_REQUEST = re.compile(r"\bAR-\d{4}\b")
_CODE = re.compile(r"\bcode\D{0,12}(\d{6})\b", re.IGNORECASE)
_EMPLOYEE = re.compile(r"\bemployee (?:number|no\.?|id)\D{0,6}(\d{6})\b", re.IGNORECASE)
_LAST4 = re.compile(r"\blast (?:4|four)\b\D{0,30}(\d{4})\b", re.IGNORECASE)
_GROUP_WORDS = tuple(sorted((g[0] for g in GROUPS), key=len, reverse=True))
_DEVICE_WORDS = ("phone", "tablet", "laptop", "security key")
_REVOKE_WORDS = ("revoke", "remove me", "take me off", "drop my")


def itdesk_router() -> KeywordRouter:
    """Keyword routing for the desk's routes (tried in order; ``other`` when nothing matches)."""
    return KeywordRouter(
        model_id=ROUTER_ID,
        keywords={
            "mfa": ("mfa", "2fa", "two-factor", "authenticator"),
            "access": ("access", "add me", "grant", "revoke", "remove me", "join the"),
            "lookup": ("who is", "member of", "look me up", "my details"),
        },
        default="other",
    )


def register_offline_models() -> None:
    """Make the desk's offline ids loadable (notional prices: a small and a large hosted model)."""
    register_model(ROUTER_ID, itdesk_router,
                   price=ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60, max_output_tokens=64))
    register_model(REASONING_ID, OfflineItDeskModel,
                   price=ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00, max_output_tokens=512))


@dataclass(frozen=True, slots=True)
class _Turn:
    """What the playbook sees: the request, the subject, and every call of this run so far."""

    text: str
    subject: str
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]]
    """(tool, args, result payload), in order."""
    n: int

    def last(self, name: str) -> dict[str, Any] | None:
        return next((p for t, _, p in reversed(self.calls) if t == name), None)

    def tried(self, name: str, **args: Any) -> bool:
        return any(t == name and all(a.get(k) == v for k, v in args.items()) for t, a, _ in self.calls)

    def call(self, name: str, args: dict[str, Any]) -> AIMessage:
        call = {"name": name, "args": args, "id": f"call_{self.n:03d}_{name}", "type": "tool_call"}
        return AIMessage(content="", tool_calls=[call])  # type: ignore[list-item]


def _payload(m: ToolMessage) -> dict[str, Any]:
    try:
        data = json.loads(str(m.content))
    except ValueError:
        return {"status": "error", "message": str(m.content)}
    return data if isinstance(data, dict) else {"status": "ok", "result": data}


def _turn(messages: Sequence[BaseMessage]) -> tuple[str, _Turn]:
    route, subject = "other", ""
    for m in messages:
        if isinstance(m, SystemMessage):
            if hit := re.search(r"route: (\w+)", str(m.content)):
                route = hit.group(1)
            if hit := re.search(r"subject: (\S+)", str(m.content)):
                subject = hit.group(1)
    idx = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    after = messages[idx + 1 :]
    results = {m.tool_call_id: _payload(m) for m in after if isinstance(m, ToolMessage)}
    turns = [m for m in after if isinstance(m, AIMessage)]
    calls = [(tc["name"], dict(tc["args"]), results.get(tc["id"] or "", {}))
             for t in turns for tc in t.tool_calls]
    text = str(messages[idx].content) if idx >= 0 else ""
    return route, _Turn(text=text, subject=subject, calls=calls, n=len(turns) + 1)


class OfflineItDeskModel(OfflineChatModel):
    """A fixed playbook per route that reacts to tool results, denials and approvals."""

    model_id: str = REASONING_ID

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        route, turn = _turn(messages)
        play: Callable[[_Turn], AIMessage] = {"access": _access, "mfa": _mfa, "lookup": _lookup}.get(route, _other)
        return play(turn)


# ---------------------------------------------------------------- playbook steps


def _blocked(p: dict[str, Any] | None) -> str | None:
    if p is None:
        return None
    if p.get("status") in {"denied", "rejected", "error", "invalid_arguments", "not_executed"}:
        return str(p.get("reason") or p.get("message") or p.get("errors"))
    return None


def _why(p: dict[str, Any]) -> str:
    return str(p.get("rule_id") or p.get("code") or p.get("status"))


def _identity(t: _Turn) -> dict[str, str] | None:
    """Verification details the requester typed (none: the playbook does not verify)."""
    if code := _CODE.search(t.text):
        return {"one_time_code": code.group(1)}
    number, last4 = _EMPLOYEE.search(t.text), _LAST4.search(t.text)
    if number and last4:
        return {"employee_number": number.group(1), "phone_last4": last4.group(1)}
    return None


def _verify_step(t: _Turn) -> AIMessage | None:
    """Verify first when the requester gave details; hand off when verification fails."""
    details = _identity(t)
    if details is None:
        return None
    res = t.last("verify_identity")
    if res is None:
        return t.call("verify_identity", {"person_id": t.subject, **details})
    if _blocked(res) is not None:
        return _handoff(t, f"identity not verified ({_why(res)})", res)
    return None


def _handoff(t: _Turn, reason: str, res: dict[str, Any]) -> AIMessage:
    if t.last("handoff_to_human") is None:
        summary = f"{t.subject} asked: {t.text[:300]!r}. The desk stopped: {_blocked(res)}"
        return t.call("handoff_to_human", {"summary": summary, "reason": reason[:500]})
    return AIMessage(content="I have handed this to an IT engineer who will follow up.")


def _after_write(t: _Turn, res: dict[str, Any], done: str) -> AIMessage:
    if res.get("status") == "ok":
        return AIMessage(content=done)
    if res.get("status") == "rejected":
        return AIMessage(content=f"Security declined this: {res.get('reason')}.")
    if "identity_verified" in str(res.get("rule_id")):
        return AIMessage(content="I need to verify your identity first: please send your one-time code, "
                                 "or your employee number and the last 4 digits of your phone.")
    return _handoff(t, f"blocked by {_why(res)}", res)


def _access(t: _Turn) -> AIMessage:
    low = t.text.lower()
    group = next((g for g in _GROUP_WORDS if re.search(rf"\b{re.escape(g)}\b", low)), None)
    if any(w in low for w in _REVOKE_WORDS):
        return _revoke(t, group)
    if (step := _verify_step(t)) is not None:
        return step
    req = _REQUEST.search(t.text)
    if req is None:
        return AIMessage(content="Which access request is this about (its id looks like AR-2001)?")
    info = t.last("get_access_request")
    if info is None:
        return t.call("get_access_request", {"request_id": req.group(0)})
    if (why := _blocked(info)) is not None:
        return AIMessage(content=f"I could not find that request: {why}")
    group = group or str(info["result"]["group"])
    res = t.last("grant_group")
    if res is None:
        return t.call("grant_group", {"person_id": t.subject, "group": group, "request_id": req.group(0)})
    return _after_write(t, res, f"Done: you are now in {group} (request {req.group(0)}).")


def _revoke(t: _Turn, group: str | None) -> AIMessage:
    if group is None:
        return AIMessage(content="Which group should I remove you from?")
    res = t.last("revoke_group")
    if res is None:
        return t.call("revoke_group", {"person_id": t.subject, "group": group, "reason": t.text[:200]})
    return _after_write(t, res, f"Done: you are no longer in {group}.")


def _mfa(t: _Turn) -> AIMessage:
    if (step := _verify_step(t)) is not None:
        return step
    reason = "lost or replaced device" if re.search(r"lost|new|replac|broke", t.text, re.I) else "requester asked"
    kinds = [k for k in _DEVICE_WORDS if k in t.text.lower()]
    if len(kinds) < 2:  # one device named, or none: reset them all in one call
        res = t.last("reset_mfa")
        if res is None:
            return t.call("reset_mfa", {"person_id": t.subject, "reason": reason})
        return _after_write(t, res, f"Your MFA is reset; re-enroll with ticket {_ticket(res)}.")
    person = t.last("lookup_person")
    if person is None:
        return t.call("lookup_person", {})
    devices = {d["kind"]: d["id"] for d in person.get("result", {}).get("mfa_devices", [])}
    for kind in kinds:  # one reset per named device, one call per turn
        if kind in devices and not t.tried("reset_mfa", device_id=devices[kind]):
            return t.call("reset_mfa", {"person_id": t.subject, "device_id": devices[kind], "reason": reason})
    done = [a["device_id"] for n, a, p in t.calls if n == "reset_mfa" and p.get("status") == "ok"]
    refused = [f"{a['device_id']} ({_why(p)})" for n, a, p in t.calls if n == "reset_mfa" and _blocked(p)]
    text = f"Reset MFA on {', '.join(done) or 'no device'}."
    return AIMessage(content=text + (f" Not reset: {', '.join(refused)}; ask IT for the rest." if refused else ""))


def _ticket(res: dict[str, Any]) -> str:
    return str(res.get("result", {}).get("enrollment_ticket", "?"))


def _lookup(t: _Turn) -> AIMessage:
    res = t.last("lookup_person")
    if res is None:
        return t.call("lookup_person", {})
    if (why := _blocked(res)) is not None:
        return AIMessage(content=f"I could not look you up: {why}")
    p = res["result"]
    return AIMessage(content=f"{p['name']} ({p['department']}); manager: {p['manager_name'] or 'none'}; "
                             f"groups: {', '.join(p['groups']) or 'none'}.")


def _other(t: _Turn) -> AIMessage:
    return AIMessage(content="I can grant or remove group access for approved requests, reset MFA, "
                             "and look up your directory entry.")
