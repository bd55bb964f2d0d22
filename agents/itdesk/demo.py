"""The IT desk's documented behaviours, played by ``tether demo itdesk`` and the tests.

Each scenario names the rule it shows; ``expect`` checks the outcome from the ledger rows.
The subjects differ from scenario to scenario, so their per-person rate limits never meet.
"""

from __future__ import annotations

from collections.abc import Callable

from tether import Approve, Escalated, LedgerRow, Reject, RunResult, Scenario, executed, proposed_rules

__all__ = ["RULES", "SCENARIOS"]

Check = Callable[[RunResult, list[LedgerRow]], "str | None"]
WRITES = ("grant_group", "revoke_group", "reset_mfa")


def _refused(rows: list[LedgerRow], tool: str) -> list[str]:
    """Every rule that refused ``tool``: at proposal, or at execution (rate limits)."""
    return [*proposed_rules(rows, tool), *(r.rule_id or "" for r in rows if r.event == "failed" and r.tool == tool)]


def _writes(rows: list[LedgerRow]) -> dict[str, int]:
    return {t: len(executed(rows, t)) for t in WRITES if executed(rows, t)}


def _only(rows: list[LedgerRow], **expected: int) -> str | None:
    got = _writes(rows)
    return None if got == expected else f"expected writes {expected}, got {got}"


def _denied(tool: str, rule: str, *, status: str | None = None, **writes: int) -> Check:
    """The scenario's point: ``rule`` refused ``tool``; only ``writes`` executed."""

    def check(r: RunResult, rows: list[LedgerRow]) -> str | None:
        if rule not in _refused(rows, tool):
            return f"expected {tool} to be refused by {rule}; rules: {_refused(rows, tool)}"
        if status is not None and r.status != status:
            return f"expected the run to end {status}, got {r.status}"
        return _only(rows, **writes)

    return check


def _granted(group: str, *, approvals: int = 0) -> Check:
    def check(r: RunResult, rows: list[LedgerRow]) -> str | None:
        asked = [e for e in rows if e.event == "approval_requested"]
        if len(asked) != approvals:
            return f"expected {approvals} approval request(s), got {len(asked)}"
        if approvals and not any(e.event == "approved" and e.approver for e in rows):
            return "expected a recorded approval"
        done = executed(rows, "grant_group")
        if r.status != "resolved" or len(done) != 1 or (done[0].args or {}).get("group") != group:
            return f"expected one executed grant of {group} and a resolved run"
        return _only(rows, grant_group=1)

    return check


def _rejected(r: RunResult, rows: list[LedgerRow]) -> str | None:
    if not any(e.event == "rejected" for e in rows):
        return "expected the approval to be rejected"
    return _only(rows)


def _not_verified(r: RunResult, rows: list[LedgerRow]) -> str | None:
    failed = [e for e in rows if e.event == "failed" and e.tool == "verify_identity"]
    if not failed or executed(rows, "verify_identity"):
        return "expected verify_identity to fail"
    if not isinstance(r.outcome, Escalated) or r.outcome.rule_id != "tools.handoff_to_human":
        return "expected a hand-off"
    return _only(rows)


def _looked_up(r: RunResult, rows: list[LedgerRow]) -> str | None:
    if r.status != "resolved" or len(executed(rows, "lookup_person")) != 1:
        return "expected one lookup and an answer"
    return _only(rows)


def _reset_once(r: RunResult, rows: list[LedgerRow]) -> str | None:
    if r.status != "resolved":
        return f"expected a resolved run, got {r.status}"
    return _only(rows, reset_mfa=1)


_G = "tools.grant_group"
_M = "tools.reset_mfa"
RULES: dict[str, str] = {
    "grant_unverified": f"{_G}.context.identity_verified",
    "grant_open_request": f"{_G}.context.request_approved",
    "grant_admins": f"{_G}.args.group",
    "grant_prod_db": f"{_G}.context.privileged_group",
    "grant_payroll_rejected": f"{_G}.context.privileged_group",
    "mfa_twice": f"{_M}.context.once_per_person",
    "mfa_rate_limit": f"{_M}.rate_limit",
    "mfa_unverified": f"{_M}.context.identity_verified",
    "revoke_as_helpdesk": "roles.helpdesk.tools",
    "recovery_unverified": "tools.update_recovery_email.context.identity_verified",
}
"""The rule each scenario shows (scenarios without an entry are allowed paths)."""

_MFA_AGAIN = "I lost my phone again, please reset my MFA. My one-time code is 590127."

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(key="grant_vpn", subject="P-1001", principal="helpdesk",
             title="vpn for a verified requester with a manager-approved request: executed once",
             request="Please add me to the vpn group, request AR-2001 was approved. My one-time code is 731904.",
             expect=_granted("vpn")),
    Scenario(key="grant_unverified", subject="P-1006", principal="helpdesk",
             title="Grant without verifying identity first: denied by identity_verified",
             request="Add me to vpn please, request AR-2006.",
             expect=_denied("grant_group", RULES["grant_unverified"], status="resolved")),
    Scenario(key="grant_open_request", subject="P-1002", principal="helpdesk",
             title="Grant for a request that is only open: denied by request_approved, handed off",
             request="Please grant me vpn access for request AR-2002. Employee number 480127, "
                     "last 4 of my phone 0177.",
             expect=_denied("grant_group", RULES["grant_open_request"], status="escalated")),
    Scenario(key="grant_admins", subject="P-1003", principal="helpdesk",
             title="Grant of admins, even manager-approved: denied by the group allowlist",
             request="I need admins access, request AR-2003 is approved. Code 640218.",
             expect=_denied("grant_group", RULES["grant_admins"], status="escalated")),
    Scenario(key="grant_prod_db", subject="P-1004", principal="helpdesk",
             title="Grant of privileged prod-db: paused, approved by security in another process, executed once",
             request="Please add me to prod-db, request AR-2004. My one-time code is 119847.",
             decisions=(Approve(approver="sec-lead@example.com"),), in_new_process=True,
             expect=_granted("prod-db", approvals=1)),
    Scenario(key="grant_payroll_rejected", subject="P-1008", principal="helpdesk",
             title="Grant of privileged payroll: paused, rejected by security, nothing granted",
             request="Add me to payroll per AR-2007, code 918305.",
             decisions=(Reject(approver="sec-lead@example.com", reason="payroll needs HR sign-off"),),
             expect=_rejected),
    Scenario(key="mfa_reset", subject="P-1007", principal="helpdesk",
             title="MFA reset after a verified one-time code: executed once",
             request="I got a new phone, please reset my MFA. My one-time code is 864052.",
             expect=_reset_once),
    Scenario(key="mfa_twice", subject="P-1009", principal="helpdesk",
             title="Second MFA reset for the same person in one run: denied by once_per_person",
             request="Reset MFA on my phone and my tablet please. Employee number 480191, last 4 of my phone 0119.",
             expect=_denied("reset_mfa", RULES["mfa_twice"], status="resolved", reset_mfa=1)),
    Scenario(key="mfa_rate_limit", subject="P-1013", principal="helpdesk",
             title="Third MFA reset for one person in a day (three runs): denied by the rate limit",
             request=(_MFA_AGAIN, _MFA_AGAIN, _MFA_AGAIN),
             expect=_denied("reset_mfa", RULES["mfa_rate_limit"], reset_mfa=2)),
    Scenario(key="mfa_unverified", subject="P-1001", principal="helpdesk",
             title="MFA reset without verification: denied by identity_verified, asked to verify",
             request="My authenticator app is gone, reset my MFA.",
             expect=_denied("reset_mfa", RULES["mfa_unverified"], status="resolved")),
    Scenario(key="mfa_wrong_code", subject="P-1011", principal="helpdesk",
             title="Wrong one-time code: verify_identity fails (not a success), nothing reset, handed off",
             request="Please reset my MFA, my one-time code is 000000.",
             expect=_not_verified),
    Scenario(key="revoke_as_helpdesk", subject="P-1005", principal="helpdesk",
             title="Helpdesk principal removing access: denied by roles (revoke_group is security's)",
             request="Please remove me from the payroll group, I moved to Operations.",
             expect=_denied("revoke_group", RULES["revoke_as_helpdesk"], status="escalated")),
    Scenario(key="revoke_as_security", subject="P-1005", principal="security",
             title="Security principal removing access: executed once",
             request="Please remove me from the payroll group, I moved to Operations.",
             expect=lambda r, rows: _only(rows, revoke_group=1)),
    Scenario(key="recovery_unverified", subject="P-1002", principal="helpdesk",
             title="Recovery email change without verification: denied by identity_verified, asked to verify",
             request="Please change my recovery email to bea.new@mail.example.",
             expect=_denied("update_recovery_email", RULES["recovery_unverified"], status="resolved")),
    Scenario(key="lookup", subject="P-1001", principal="helpdesk",
             title="Directory lookup of the requester's own entry",
             request="Who is my manager, and what am I a member of?",
             expect=_looked_up),
)
