"""The IT desk's tools over the directory database.

Read tools: lookup_person, verify_identity, get_access_request, get_ticket, search_policy
(yields citable evidence). Write tools: grant_group, revoke_group, reset_mfa (sends the
enrolment link), update_recovery_email, send_report (mail that leaves the desk),
handoff_to_human (terminal). Requests, tickets and a person's notes carry text other people
wrote; the tools return it as it is (the policy's ``outputs`` say which fields those are). Each write runs in one transaction that
first looks up ``ToolContext.idempotency_key`` in the ``changes`` audit log (a repeated call
returns the recorded result, ``replayed=True``), and has a dry-run preview. The tools check
their own invariants too (a request must match and be approved); the policy decides first.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tether import HandOff, ToolContext, ToolError, Toolset, tool, write_transaction
from tether.agents.itdesk.contracts import (
    AccessRequestInfo,
    Comment,
    GetAccessRequestArgs,
    GetTicketArgs,
    GrantArgs,
    GrantResult,
    HandoffArgs,
    HandoffResult,
    IdentityCheck,
    LookupPersonArgs,
    MfaDevice,
    PersonInfo,
    PolicySearchResult,
    RecoveryEmailArgs,
    RecoveryEmailResult,
    ResetMfaArgs,
    ResetMfaResult,
    RevokeArgs,
    RevokeResult,
    SearchPolicyArgs,
    SendReportArgs,
    SendReportResult,
    TicketInfo,
    VerifyIdentityArgs,
)
from tether.agents.itdesk.knowledge import DeskKnowledge

__all__ = ["ItDeskResources", "build_itdesk_tools"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ItDeskResources:
    """What the desk's tools work with: the directory database and the desk's knowledge."""

    db: sqlite3.Connection
    knowledge: DeskKnowledge | None = None

    def close(self) -> None:
        self.db.close()


Ctx = ToolContext[ItDeskResources]


# ---------------------------------------------------------------- helpers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_tx = write_transaction


def _replayed(db: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The result recorded for ``key`` by an earlier execution, if any."""
    row = db.execute("SELECT id, detail FROM changes WHERE idempotency_key=?", (key,)).fetchone()
    if row is None:
        return None
    return {**json.loads(row["detail"]), "change_id": row["id"], "replayed": True}


def _record(db: sqlite3.Connection, ctx: Ctx, tool_name: str, person: str, target: str,
            detail: dict[str, Any]) -> int:
    cur = db.execute(
        "INSERT INTO changes (idempotency_key, run_id, tool, person_id, target, detail, changed_at)"
        " VALUES (?,?,?,?,?,?,?)",
        (ctx.idempotency_key, ctx.run_id, tool_name, person, target, json.dumps(detail, sort_keys=True), _now()),
    )
    return int(cur.lastrowid or 0)


def _person(db: sqlite3.Connection, person_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute("SELECT * FROM people WHERE id=?", (person_id,)).fetchone()
    if row is None:
        raise ToolError(code="person_not_found", message=f"no person {person_id} in the directory",
                        hint="Check the id with the requester.")
    return row


def _active(db: sqlite3.Connection, person_id: str) -> sqlite3.Row:
    row = _person(db, person_id)
    if row["status"] != "active":
        raise ToolError(code="person_inactive", message=f"{person_id} is {row['status']}",
                        hint="Hand off to a human: inactive accounts are not changed by the desk.")
    return row


def _groups(db: sqlite3.Connection, person_id: str) -> list[str]:
    rows = db.execute("SELECT group_name FROM memberships WHERE person_id=? ORDER BY group_name", (person_id,))
    return [r[0] for r in rows]


def _group(db: sqlite3.Connection, name: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute("SELECT * FROM groups WHERE name=?", (name,)).fetchone()
    if row is None:
        raise ToolError(code="group_not_found", message=f"no group {name!r}")
    return row


def _request(db: sqlite3.Connection, request_id: str) -> AccessRequestInfo:
    r = db.execute(
        "SELECT r.*, g.privileged FROM access_requests r JOIN groups g ON g.name = r.group_name WHERE r.id=?",
        (request_id,),
    ).fetchone()
    if r is None:
        raise ToolError(code="request_not_found", message=f"no access request {request_id}",
                        hint="Ask the requester for the id of their access request.")
    comments = db.execute("SELECT author, text, created_at FROM request_comments WHERE request_id=? ORDER BY id",
                          (request_id,))
    return AccessRequestInfo(id=r["id"], person_id=r["person_id"], group=r["group_name"],
                             group_privileged=bool(r["privileged"]), status=r["status"],
                             approved_by=r["approved_by"], justification=r["justification"],
                             comments=[Comment(author=c[0], text=c[1], at=c[2]) for c in comments])


def _ticket_info(db: sqlite3.Connection, ticket_id: str) -> TicketInfo:
    t = db.execute("SELECT * FROM service_tickets WHERE id=?", (ticket_id,)).fetchone()
    if t is None:
        raise ToolError(code="ticket_not_found", message=f"no service ticket {ticket_id}",
                        hint="Ask the requester for their ticket id (it looks like TK-4001).")
    comments = db.execute("SELECT author, text, created_at FROM ticket_comments WHERE ticket_id=? ORDER BY id",
                          (ticket_id,))
    return TicketInfo(id=t["id"], person_id=t["person_id"], subject=t["subject"], body=t["body"],
                      status=t["status"], comments=[Comment(author=c[0], text=c[1], at=c[2]) for c in comments])


def _send(db: sqlite3.Connection, ctx: Ctx, kind: str, to: str, subject: str, body: str) -> int:
    """Put a message in the outbox (what the desk sends: enrolment links, reports)."""
    cur = db.execute(
        "INSERT INTO outbox (idempotency_key, run_id, kind, to_addr, subject, body, sent_at) VALUES (?,?,?,?,?,?,?)",
        (ctx.idempotency_key, ctx.run_id, kind, to, subject, body, _now()),
    )
    return int(cur.lastrowid or 0)


def _devices(db: sqlite3.Connection, person_id: str) -> list[MfaDevice]:
    rows = db.execute("SELECT id, kind, status FROM mfa_devices WHERE person_id=? ORDER BY id", (person_id,))
    return [MfaDevice(id=r["id"], kind=r["kind"], status=r["status"]) for r in rows]


def _reset_targets(db: sqlite3.Connection, args: ResetMfaArgs) -> list[str]:
    devices = [d.id for d in _devices(db, args.person_id)]
    if args.device_id is None:
        return devices
    if args.device_id not in devices:
        raise ToolError(code="device_not_found", message=f"{args.person_id} has no MFA device {args.device_id}",
                        hint="Look the person up to see their devices.")
    return [args.device_id]


# ---------------------------------------------------------------- previews


def _grant_preview(args: GrantArgs, ctx: Ctx) -> str:
    db = ctx.resources.db
    person, group, req = _person(db, args.person_id), _group(db, args.group), _request(db, args.request_id)
    kind = "privileged" if group["privileged"] else "standard"
    return (f"add {person['id']} ({person['name']}) to {kind} group {group['name']} per {req.id} "
            f"({req.status}, approved by {req.approved_by or 'nobody'}); now in: "
            f"{', '.join(_groups(db, args.person_id)) or 'no group'}")


def _revoke_preview(args: RevokeArgs, ctx: Ctx) -> str:
    person = _person(ctx.resources.db, args.person_id)
    return f"remove {person['id']} ({person['name']}) from {args.group}; reason: {args.reason}"


def _reset_preview(args: ResetMfaArgs, ctx: Ctx) -> str:
    db = ctx.resources.db
    targets, to = _reset_targets(db, args), args.deliver_to or _person(db, args.person_id)["email"]
    return (f"reset MFA of {args.person_id} on {', '.join(targets) or 'no device'}, enrolment link to {to}; "
            f"reason: {args.reason}")


def _recovery_preview(args: RecoveryEmailArgs, ctx: Ctx) -> str:
    person = _person(ctx.resources.db, args.person_id)
    return f"set the recovery email of {person['id']} from {person['recovery_email'] or 'none'} to {args.recovery_email}"


def _report_preview(args: SendReportArgs, ctx: Ctx) -> str:
    return f"send {args.subject!r} ({len(args.body)} characters) to {args.to}"


def _handoff(args: HandoffArgs, result: HandoffResult) -> HandOff:
    return HandOff(reason=args.reason, summary=args.summary, ticket_id=result.ticket_id)


# ---------------------------------------------------------------- tool bodies


def _verify(args: VerifyIdentityArgs, ctx: Ctx) -> IdentityCheck:
    db = ctx.resources.db
    person = _active(db, args.person_id)
    if args.one_time_code is not None:
        code = db.execute("SELECT code FROM one_time_codes WHERE person_id=?", (args.person_id,)).fetchone()
        ok, method = code is not None and code[0] == args.one_time_code, "one_time_code"
    elif args.employee_number is not None and args.phone_last4 is not None:
        ok = person["employee_number"] == args.employee_number and person["phone"].endswith(args.phone_last4)
        method = "employee_number+phone_last4"
    else:
        raise ToolError(code="nothing_to_verify", message="give one_time_code, or employee_number and phone_last4",
                        hint="Ask the requester for their one-time code.")
    if not ok:  # not verified is a failure, never a success the policy could build on
        raise ToolError(code="not_verified", message=f"the {method.replace('+', ' and ')} given does not match "
                        f"the directory for {args.person_id}", hint="Do not act; hand off to a human.")
    return IdentityCheck(person_id=args.person_id, verified=True, method=method)


def _grant(args: GrantArgs, ctx: Ctx) -> GrantResult:
    with _tx(ctx.resources.db) as db:  # the key lookup and the change are one transaction
        if (done := _replayed(db, ctx.idempotency_key)) is not None:
            return GrantResult.model_validate(done)
        _active(db, args.person_id)
        _group(db, args.group)
        req = _request(db, args.request_id)
        if (req.person_id, req.group, req.status) != (args.person_id, args.group, "manager_approved"):
            raise ToolError(code="request_mismatch",
                            message=f"{req.id} is {req.status} and asks {req.group} for {req.person_id}")
        if args.group in _groups(db, args.person_id):
            raise ToolError(code="already_member", message=f"{args.person_id} is already in {args.group}")
        db.execute("INSERT INTO memberships VALUES (?,?,?)", (args.person_id, args.group, _now()))
        db.execute("UPDATE access_requests SET status='fulfilled' WHERE id=?", (req.id,))
        detail = {"person_id": args.person_id, "group": args.group, "request_id": req.id}
        change = _record(db, ctx, "grant_group", args.person_id, args.group, detail)
    return GrantResult(**detail, change_id=change)


def _revoke(args: RevokeArgs, ctx: Ctx) -> RevokeResult:
    with _tx(ctx.resources.db) as db:
        if (done := _replayed(db, ctx.idempotency_key)) is not None:
            return RevokeResult.model_validate(done)
        if args.group not in _groups(db, args.person_id):
            raise ToolError(code="not_member", message=f"{args.person_id} is not in {args.group}")
        db.execute("DELETE FROM memberships WHERE person_id=? AND group_name=?", (args.person_id, args.group))
        detail = {"person_id": args.person_id, "group": args.group}
        change = _record(db, ctx, "revoke_group", args.person_id, args.group, {**detail, "reason": args.reason})
    return RevokeResult(**detail, change_id=change)


def _reset(args: ResetMfaArgs, ctx: Ctx) -> ResetMfaResult:
    with _tx(ctx.resources.db) as db:
        if (done := _replayed(db, ctx.idempotency_key)) is not None:
            return ResetMfaResult.model_validate({k: v for k, v in done.items() if k != "reason"})
        _active(db, args.person_id)
        again = db.execute("SELECT 1 FROM changes WHERE tool='reset_mfa' AND person_id=? AND run_id=?",
                           (args.person_id, ctx.run_id)).fetchone()
        if again is not None:  # the policy's once_per_person, enforced here too (parallel calls)
            raise ToolError(code="already_reset", message=f"{args.person_id}'s MFA was reset earlier in this run",
                            hint="One reset per person per run; the first one already re-enrolls them.")
        targets = _reset_targets(db, args)
        for d in targets:
            db.execute("UPDATE mfa_devices SET status='reset' WHERE id=?", (d,))
        n = db.execute("SELECT COUNT(*) FROM changes WHERE tool='reset_mfa'").fetchone()[0]
        to = args.deliver_to or _person(db, args.person_id)["email"]
        ticket = f"ENR-{5001 + n}"
        _send(db, ctx, "enrolment_link", to, f"Re-enrol your MFA ({ticket})",
              f"Open https://id.corp.example/enrol/{ticket} to enrol a new device for {args.person_id}.")
        detail = {"person_id": args.person_id, "devices_reset": targets, "enrollment_ticket": ticket, "sent_to": to}
        change = _record(db, ctx, "reset_mfa", args.person_id, ",".join(targets) or "-",
                         {**detail, "reason": args.reason})
    return ResetMfaResult.model_validate({**detail, "change_id": change})


def _set_recovery(args: RecoveryEmailArgs, ctx: Ctx) -> RecoveryEmailResult:
    with _tx(ctx.resources.db) as db:
        if (done := _replayed(db, ctx.idempotency_key)) is not None:
            return RecoveryEmailResult.model_validate(done)
        previous = _active(db, args.person_id)["recovery_email"]
        db.execute("UPDATE people SET recovery_email=? WHERE id=?", (args.recovery_email, args.person_id))
        detail = {"person_id": args.person_id, "recovery_email": args.recovery_email, "previous": previous}
        change = _record(db, ctx, "update_recovery_email", args.person_id, args.recovery_email, detail)
    return RecoveryEmailResult(**detail, change_id=change)


def _report(args: SendReportArgs, ctx: Ctx) -> SendReportResult:
    with _tx(ctx.resources.db) as db:
        prior = db.execute("SELECT id, to_addr FROM outbox WHERE idempotency_key=? AND kind='report'",
                           (ctx.idempotency_key,)).fetchone()
        if prior is not None:
            return SendReportResult(message_id=prior["id"], to=prior["to_addr"], replayed=True)
        message = _send(db, ctx, "report", args.to, args.subject, args.body)
    return SendReportResult(message_id=message, to=args.to)


def _ticket(args: HandoffArgs, ctx: Ctx) -> HandoffResult:
    with _tx(ctx.resources.db) as db:
        prior = db.execute("SELECT id FROM tickets WHERE idempotency_key=?", (ctx.idempotency_key,)).fetchone()
        if prior is not None:
            return HandoffResult(ticket_id=prior["id"], replayed=True)
        n = db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        ticket = f"IT-{7001 + n}"
        who = ctx.subject.id if ctx.subject is not None else None
        db.execute("INSERT INTO tickets VALUES (?,?,?,?,?,?)",
                   (ticket, who, args.summary, args.reason, _now(), ctx.idempotency_key))
    return HandoffResult(ticket_id=ticket)


# ---------------------------------------------------------------- the toolset


def build_itdesk_tools() -> Toolset:
    """The IT desk's tools (they work on ``ItDeskResources``)."""

    @tool(name="lookup_person", subject_arg="person_id")
    def lookup_person(args: LookupPersonArgs, ctx: Ctx) -> PersonInfo:
        """Look up the requesting employee: contact details, manager, groups, MFA devices and notes."""
        db = ctx.resources.db
        p = _person(db, args.person_id or ctx.subject_id)
        manager = db.execute("SELECT name FROM people WHERE id=?", (p["manager_id"],)).fetchone()
        return PersonInfo(id=p["id"], name=p["name"], email=p["email"], recovery_email=p["recovery_email"],
                          phone=p["phone"], employee_number=p["employee_number"], notes=p["notes"],
                          department=p["department"],
                          status=p["status"], manager_id=p["manager_id"], manager_name=manager[0] if manager else None,
                          groups=_groups(db, p["id"]), mfa_devices=_devices(db, p["id"]))

    @tool(name="verify_identity")
    def verify_identity(args: VerifyIdentityArgs, ctx: Ctx) -> IdentityCheck:
        """Verify the requester: their one-time code, or employee number and last 4 digits of their phone."""
        return _verify(args, ctx)

    @tool(name="get_access_request")
    def get_access_request(args: GetAccessRequestArgs, ctx: Ctx) -> AccessRequestInfo:
        """Read an access request: who it is for, which group, its status, approver and comments."""
        return _request(ctx.resources.db, args.request_id)

    @tool(name="get_ticket")
    def get_ticket(args: GetTicketArgs, ctx: Ctx) -> TicketInfo:
        """Read a service ticket: who opened it, what they wrote, and the comments on it."""
        return _ticket_info(ctx.resources.db, args.ticket_id)

    @tool(name="search_policy", yields_evidence=True)
    def search_policy(args: SearchPolicyArgs, ctx: Ctx) -> PolicySearchResult:
        """Search the IT policies and procedures (access, MFA reset, groups, data handling). Cite evidence ids."""
        if ctx.resources.knowledge is None:
            raise ToolError(code="no_knowledge_base", message="this desk was built without a knowledge base",
                            hint="Build the desk with itdesk_workflow(...), which opens its knowledge base.")
        return PolicySearchResult(evidence=ctx.resources.knowledge.search(args.query))

    @tool(name="grant_group", effect="write", record_arg="person_id", preview=_grant_preview)
    def grant_group(args: GrantArgs, ctx: Ctx) -> GrantResult:
        """Add a person to a group, fulfilling their manager-approved access request."""
        return _grant(args, ctx)

    @tool(name="revoke_group", effect="write", record_arg="person_id", preview=_revoke_preview)
    def revoke_group(args: RevokeArgs, ctx: Ctx) -> RevokeResult:
        """Remove a person from a group."""
        return _revoke(args, ctx)

    @tool(name="reset_mfa", effect="write", record_arg="person_id", preview=_reset_preview)
    def reset_mfa(args: ResetMfaArgs, ctx: Ctx) -> ResetMfaResult:
        """Reset a person's MFA (one device, or all of them) and open a re-enrollment ticket."""
        return _reset(args, ctx)

    @tool(name="update_recovery_email", effect="write", record_arg="person_id", preview=_recovery_preview)
    def update_recovery_email(args: RecoveryEmailArgs, ctx: Ctx) -> RecoveryEmailResult:
        """Change a person's recovery email (where account-recovery links go)."""
        return _set_recovery(args, ctx)

    @tool(name="send_report", effect="write", preview=_report_preview)
    def send_report(args: SendReportArgs, ctx: Ctx) -> SendReportResult:
        """Email a report (e.g. the requester's access summary) to an address. The mail leaves the desk."""
        return _report(args, ctx)

    @tool(name="handoff_to_human", effect="write", terminal=_handoff)
    def handoff_to_human(args: HandoffArgs, ctx: Ctx) -> HandoffResult:
        """Hand the request to a human IT engineer with a summary. Ends the run."""
        return _ticket(args, ctx)

    return Toolset(tools=[lookup_person, verify_identity, get_access_request, get_ticket, search_policy,
                          grant_group, revoke_group, reset_mfa, update_recovery_email, send_report,
                          handoff_to_human])
