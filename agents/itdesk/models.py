"""The IT desk's deterministic offline models: stand-ins so the desk runs with no network.

These are *not* language models. ``itdesk_router`` is a ``KeywordRouter`` over the desk's
routes; ``OfflineItDeskModel`` picks a playbook from what the request asks (and the tools it was
given), then follows it (verify, read the ticket or policy named, act, answer), reading the tool
results it gets back, one call per turn. It takes people, addresses, groups and ids from the
request text, as a model would: it does not second-guess them (the policy does). Both report token usage at a
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
_PERSON = re.compile(r"\bP-\d{4}\b")
_TICKET = re.compile(r"\bTK-\d{4}\b")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(r"\+\d[\d-]{6,18}\d")
_MFA_WORDS = re.compile(r"\b(?:mfa|2fa|two-factor|authenticator|enrol\w*|enroll\w*)\b", re.I)
_RECOVERY = re.compile(r"\b(?:change|update|set|replace|switch)\b.{0,40}\brecovery\b", re.I)
_SEND = re.compile(r"\b(?:send|e-?mail|mail|forward)\b", re.I)
_GRANT = re.compile(r"\b(?:add|grant|access|join)\b", re.I)
_DOCS = re.compile(r"\b(?:procedure|policy|policies|guide|how[- ]to|steps|catalogue|handbook)\b", re.I)
_LOOKUP = re.compile(r"\b(?:who is|member of|look (?:me|up)|lookup|my details|directory|records?)\b", re.I)


def itdesk_router() -> KeywordRouter:
    """Keyword routing for the desk's routes (tried in order; ``other`` when nothing matches)."""
    return KeywordRouter(
        model_id=ROUTER_ID,
        keywords={
            "mfa": ("mfa", "2fa", "two-factor", "authenticator", "enrolment", "enrollment"),
            "account": ("recovery email", "recovery address", "access report", "my report"),
            "access": ("access", "add me", "grant", "revoke", "remove me", "join the"),
            "ticket": ("ticket", "tk-"),
            "policy": ("policy", "policies", "procedure", "catalogue", "how do i", "guide"),
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
    bound: frozenset[str] = frozenset()
    """The tools this turn may call."""

    @property
    def target(self) -> str:
        """The person the request is about: one it names, else the requester."""
        hit = _PERSON.search(self.text)
        return hit.group(0) if hit else self.subject

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


def _turn(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] = ()) -> tuple[str, _Turn]:
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
    bound = frozenset(str(t.get("function", {}).get("name")) for t in tools)
    return route, _Turn(text=text, subject=subject, calls=calls, n=len(turns) + 1, bound=bound)


class OfflineItDeskModel(OfflineChatModel):
    """A fixed playbook per route that reacts to tool results, denials and approvals."""

    model_id: str = REASONING_ID

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        route, turn = _turn(messages, tools)
        return _PLAYS.get(_intent(turn, route), _other)(turn)


def _intent(t: _Turn, route: str) -> str:
    """Which playbook the request asks for, among those whose tools this turn has."""
    low, can = t.text.lower(), t.bound.__contains__
    asks = (
        ("mfa", _MFA_WORDS.search(low) and can("reset_mfa")),
        ("recovery", _RECOVERY.search(low) and can("update_recovery_email")),
        ("access", any(w in low for w in _REVOKE_WORDS) and can("revoke_group")),
        ("access", (_GRANT.search(low) or _REQUEST.search(t.text)) and can("grant_group")),
        ("report", _SEND.search(low) and can("send_report") and not _DOCS.search(low) and can("lookup_person")),
        ("ticket", _TICKET.search(t.text) and can("get_ticket")),
        ("policy", _DOCS.search(low) and can("search_policy")),
        ("lookup", _LOOKUP.search(low) and can("lookup_person")),
    )
    found = next((name for name, yes in asks if yes), None)
    return found or {"account": "report"}.get(route, route)


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


def _prelude(t: _Turn) -> AIMessage | None:
    """Before acting: verify (when details were given), read the ticket named, look up the policy."""
    if (step := _verify_step(t)) is not None:
        return step
    if (tk := _TICKET.search(t.text)) and "get_ticket" in t.bound and t.last("get_ticket") is None:
        return t.call("get_ticket", {"ticket_id": tk.group(0)})
    if _DOCS.search(t.text) and "search_policy" in t.bound and t.last("search_policy") is None:
        return t.call("search_policy", {"query": _query(t.text)})
    return None


def _query(text: str) -> str:
    return " ".join(text.split())[:300] or "policy"


def _destination(t: _Turn, person: dict[str, Any] | None) -> str | None:
    """Where the requester asked for something to go: an address they typed, or one on file."""
    if hit := (_EMAIL.search(t.text) or _PHONE.search(t.text)):
        return hit.group(0)
    if person is None:
        return None
    if re.search(r"\brecovery\b", t.text, re.I):
        return person.get("recovery_email")
    if re.search(r"\b(?:sms|text me|phone on file)\b", t.text, re.I):
        return person.get("phone")
    return None


def _needs_lookup(t: _Turn) -> bool:
    return not (_EMAIL.search(t.text) or _PHONE.search(t.text)) and bool(
        re.search(r"\b(?:recovery|sms|text me|phone on file)\b", t.text, re.I))


def _who(t: _Turn) -> dict[str, str]:
    return {} if t.target == t.subject else {"person_id": t.target}


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
    if (step := _prelude(t)) is not None:
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
        return t.call("grant_group", {"person_id": t.target, "group": group, "request_id": req.group(0)})
    return _after_write(t, res, f"Done: you are now in {group} (request {req.group(0)}).")


def _revoke(t: _Turn, group: str | None) -> AIMessage:
    if group is None:
        return AIMessage(content="Which group should I remove you from?")
    res = t.last("revoke_group")
    if res is None:
        return t.call("revoke_group", {"person_id": t.target, "group": group, "reason": t.text[:200]})
    return _after_write(t, res, f"Done: you are no longer in {group}.")


def _mfa(t: _Turn) -> AIMessage:
    if (step := _prelude(t)) is not None:
        return step
    reason = "lost or replaced device" if re.search(r"lost|new|replac|broke", t.text, re.I) else "requester asked"
    kinds = [k for k in _DEVICE_WORDS if k in t.text.lower()]
    person = t.last("lookup_person")
    if person is None and (len(kinds) >= 2 or _needs_lookup(t)):
        return t.call("lookup_person", _who(t))
    found = (person or {}).get("result") or {}
    send = {"deliver_to": to} if (to := _destination(t, found)) else {}
    if len(kinds) < 2:  # one device named, or none: reset them all in one call
        res = t.last("reset_mfa")
        if res is None:
            return t.call("reset_mfa", {"person_id": t.target, "reason": reason, **send})
        return _after_write(t, res, f"Your MFA is reset; re-enroll with ticket {_ticket(res)}.")
    devices = {d["kind"]: d["id"] for d in found.get("mfa_devices", [])}
    for kind in kinds:  # one reset per named device, one call per turn
        if kind in devices and not t.tried("reset_mfa", device_id=devices[kind]):
            return t.call("reset_mfa", {"person_id": t.target, "device_id": devices[kind], "reason": reason, **send})
    done = [a["device_id"] for n, a, p in t.calls if n == "reset_mfa" and p.get("status") == "ok"]
    refused = [f"{a['device_id']} ({_why(p)})" for n, a, p in t.calls if n == "reset_mfa" and _blocked(p)]
    text = f"Reset MFA on {', '.join(done) or 'no device'}."
    return AIMessage(content=text + (f" Not reset: {', '.join(refused)}; ask IT for the rest." if refused else ""))


def _recovery(t: _Turn) -> AIMessage:
    if (step := _prelude(t)) is not None:
        return step
    if (hit := _EMAIL.search(t.text)) is None:
        return AIMessage(content="Which address should become your recovery email?")
    res = t.last("update_recovery_email")
    if res is None:
        return t.call("update_recovery_email", {"person_id": t.target, "recovery_email": hit.group(0)})
    return _after_write(t, res, f"Done: your recovery email is now {hit.group(0)}.")


def _report_body(t: _Turn, p: dict[str, Any]) -> str:
    devices = ", ".join(f"{d['kind']} {d['id']}" for d in p.get("mfa_devices", [])) or "none"
    body = (f"{p['name']} ({p['id']}, {p['department']}); manager: {p.get('manager_name') or 'none'}; "
            f"groups: {', '.join(p.get('groups', [])) or 'none'}; MFA devices: {devices}")
    if _EMPLOYEE.search(t.text) or re.search(r"employee (?:number|no|id)", t.text, re.I):
        body += f"; employee number: {p['employee_number']}"
    if re.search(r"\bphone\b", t.text, re.I):
        body += f"; phone: {p['phone']}"
    return body + "."


def _report(t: _Turn) -> AIMessage:
    if (step := _prelude(t)) is not None:
        return step
    person = t.last("lookup_person")
    if person is None:
        return t.call("lookup_person", _who(t))
    if (why := _blocked(person)) is not None:
        return AIMessage(content=f"I could not look that up: {why}")
    p = person["result"]
    to = _EMAIL.search(t.text)
    address = to.group(0) if to else (p.get("recovery_email") if "recovery" in t.text.lower() else p["email"])
    res = t.last("send_report")
    if res is None:
        return t.call("send_report", {"to": address, "subject": f"Access report for {p['name']}",
                                      "body": _report_body(t, p)})
    return _after_write(t, res, f"Sent the access report to {address}.")


def _policy(t: _Turn) -> AIMessage:
    res = t.last("search_policy")
    if res is None:
        return t.call("search_policy", {"query": _query(t.text)})
    if (why := _blocked(res)) is not None:
        return AIMessage(content=f"I could not search the policies: {why}")
    found = (res.get("result") or {}).get("evidence", [])
    if not found:
        return AIMessage(content="I found nothing in the IT policies about that.")
    to = _EMAIL.search(t.text)
    if to and _SEND.search(t.text) and "send_report" in t.bound:
        sent = t.last("send_report")
        if sent is None:
            body = " ".join(f"{e['text']} [{e['evidence_id']}]" for e in found)[:4000]
            return t.call("send_report", {"to": to.group(0), "subject": str(found[0]["title"])[:200], "body": body})
        return _after_write(t, sent, f"Sent {found[0]['title']} to {to.group(0)}.")
    return AIMessage(content=" ".join(f"{e['text']} [{e['evidence_id']}]" for e in found[:2]))


def _ticket_status(t: _Turn) -> AIMessage:
    if _TICKET.search(t.text) is None:
        return AIMessage(content="Which ticket is this about (its id looks like TK-4001)?")
    if (step := _prelude(t)) is not None:
        return step
    res = t.last("get_ticket")
    if res is None or (why := _blocked(res)) is not None:
        return AIMessage(content=f"I could not find that ticket: {why if res else 'no result'}")
    r = res["result"]
    if r["person_id"] != t.subject:
        return AIMessage(content=f"{r['id']} is not one of your tickets, so I cannot show it.")
    return AIMessage(content=f"{r['id']} is {r['status']}: {r['subject']} ({len(r['comments'])} comment(s)).")


def _ticket(res: dict[str, Any]) -> str:
    return str(res.get("result", {}).get("enrollment_ticket", "?"))


def _lookup(t: _Turn) -> AIMessage:
    res = t.last("lookup_person")
    if res is None:
        return t.call("lookup_person", _who(t))
    if (why := _blocked(res)) is not None:
        return AIMessage(content=f"I could not look you up: {why}")
    p = res["result"]
    return AIMessage(content=f"{p['name']} ({p['department']}); manager: {p['manager_name'] or 'none'}; "
                             f"groups: {', '.join(p['groups']) or 'none'}.")


def _other(t: _Turn) -> AIMessage:
    return AIMessage(content="I can grant or remove group access for approved requests, reset MFA, change "
                             "your recovery email, send your access report, check your tickets, answer "
                             "policy questions and look up your directory entry.")


_PLAYS: dict[str, Callable[[_Turn], AIMessage]] = {
    "access": _access, "mfa": _mfa, "recovery": _recovery, "report": _report, "policy": _policy,
    "ticket": _ticket_status, "lookup": _lookup,
}
