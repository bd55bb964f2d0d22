"""The IT desk's tool contracts: typed arguments (strict, no extra keys) and typed results."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tether import Evidence

__all__ = [
    "AccessRequestInfo",
    "Comment",
    "GetAccessRequestArgs",
    "GetTicketArgs",
    "GrantArgs",
    "GrantResult",
    "HandoffArgs",
    "HandoffResult",
    "IdentityCheck",
    "LookupPersonArgs",
    "MfaDevice",
    "PersonInfo",
    "PolicySearchResult",
    "RecoveryEmailArgs",
    "RecoveryEmailResult",
    "ResetMfaArgs",
    "ResetMfaResult",
    "RevokeArgs",
    "RevokeResult",
    "SearchPolicyArgs",
    "SendReportArgs",
    "SendReportResult",
    "TicketInfo",
    "VerifyIdentityArgs",
]

PERSON_ID = r"^P-\d{4}$"
REQUEST_ID = r"^AR-\d{4}$"
DEVICE_ID = r"^D-\d{4}$"
GROUP = r"^[a-z][a-z0-9-]{1,30}$"
TICKET_ID = r"^TK-\d{4}$"
EMAIL = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
PHONE = r"^\+\d[\d-]{6,18}\d$"
DESTINATION = f"^(?:{EMAIL[1:-1]}|{PHONE[1:-1]})$"
"""Where an enrolment link can go: an email address or a phone number (SMS)."""


class _Args(BaseModel):
    # strict: the model's JSON is taken as typed, never coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class LookupPersonArgs(_Args):
    person_id: str | None = Field(
        default=None, pattern=PERSON_ID, description="Omit: the requesting employee is looked up"
    )


class MfaDevice(_Result):
    id: str
    kind: str
    status: str


class PersonInfo(_Result):
    id: str
    name: str
    email: str
    recovery_email: str | None
    phone: str
    employee_number: str
    """Used for verification only: never sent anywhere."""
    notes: str
    """Free text the person and their colleagues write (a third party can write it)."""
    department: str
    status: str
    manager_id: str | None
    manager_name: str | None
    groups: list[str]
    mfa_devices: list[MfaDevice]


class VerifyIdentityArgs(_Args):
    person_id: str = Field(pattern=PERSON_ID, description="The requesting employee")
    one_time_code: str | None = Field(default=None, pattern=r"^\d{6}$",
                                      description="The 6-digit one-time code the requester typed")
    employee_number: str | None = Field(default=None, pattern=r"^\d{6}$",
                                        description="The employee number the requester typed")
    phone_last4: str | None = Field(default=None, pattern=r"^\d{4}$",
                                    description="Last 4 digits of the phone number the requester typed")


class IdentityCheck(_Result):
    person_id: str
    verified: bool
    method: str


class GetAccessRequestArgs(_Args):
    request_id: str = Field(pattern=REQUEST_ID, description="Access request id, e.g. AR-2001")


class Comment(_Result):
    author: str
    text: str
    at: str


class AccessRequestInfo(_Result):
    id: str
    person_id: str
    group: str
    group_privileged: bool
    status: str
    """``open``, ``manager_approved``, ``rejected`` or ``fulfilled``."""
    approved_by: str | None
    justification: str = ""
    comments: list[Comment] = []
    """What the requester, their manager and colleagues wrote on the request."""


class GetTicketArgs(_Args):
    ticket_id: str = Field(pattern=TICKET_ID, description="Service ticket id, e.g. TK-4001")


class TicketInfo(_Result):
    id: str
    person_id: str
    subject: str
    body: str
    status: str
    comments: list[Comment]


class SearchPolicyArgs(_Args):
    query: str = Field(min_length=2, max_length=300, description="What to look up in the IT policies")


class PolicySearchResult(_Result):
    evidence: list[Evidence]
    """Passages to cite by ``evidence_id``."""


class GrantArgs(_Args):
    person_id: str = Field(pattern=PERSON_ID)
    group: str = Field(pattern=GROUP)
    request_id: str = Field(pattern=REQUEST_ID, description="The manager-approved access request")


class GrantResult(_Result):
    person_id: str
    group: str
    request_id: str
    change_id: int
    replayed: bool = False
    """True when this idempotency key had already executed; nothing was granted twice."""


class RevokeArgs(_Args):
    person_id: str = Field(pattern=PERSON_ID)
    group: str = Field(pattern=GROUP)
    reason: str = Field(min_length=3, max_length=500)


class RevokeResult(_Result):
    person_id: str
    group: str
    change_id: int
    replayed: bool = False


class ResetMfaArgs(_Args):
    person_id: str = Field(pattern=PERSON_ID)
    device_id: str | None = Field(default=None, pattern=DEVICE_ID,
                                  description="One device to reset; omit to reset all of the person's devices")
    reason: str = Field(min_length=3, max_length=500)
    deliver_to: str | None = Field(default=None, pattern=DESTINATION, max_length=254,
                                   description="Email or phone for the enrolment link; omit: the directory email")


class ResetMfaResult(_Result):
    person_id: str
    devices_reset: list[str]
    enrollment_ticket: str
    sent_to: str = ""
    """Where the enrolment link was sent."""
    change_id: int
    replayed: bool = False


class RecoveryEmailArgs(_Args):
    person_id: str = Field(pattern=PERSON_ID)
    recovery_email: str = Field(pattern=EMAIL, max_length=254, description="The new recovery address")


class RecoveryEmailResult(_Result):
    person_id: str
    recovery_email: str
    previous: str | None
    change_id: int
    replayed: bool = False


class SendReportArgs(_Args):
    to: str = Field(pattern=EMAIL, max_length=254, description="The requester's own address")
    subject: str = Field(min_length=3, max_length=200)
    body: str = Field(min_length=3, max_length=4000)


class SendReportResult(_Result):
    message_id: int
    to: str
    replayed: bool = False


class HandoffArgs(_Args):
    summary: str = Field(min_length=3, max_length=2000)
    reason: str = Field(min_length=3, max_length=500)


class HandoffResult(_Result):
    ticket_id: str
    replayed: bool = False
