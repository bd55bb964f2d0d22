"""The IT desk's tool contracts: typed arguments (strict, no extra keys) and typed results."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccessRequestInfo",
    "GetAccessRequestArgs",
    "GrantArgs",
    "GrantResult",
    "HandoffArgs",
    "HandoffResult",
    "IdentityCheck",
    "LookupPersonArgs",
    "MfaDevice",
    "PersonInfo",
    "ResetMfaArgs",
    "ResetMfaResult",
    "RevokeArgs",
    "RevokeResult",
    "VerifyIdentityArgs",
]

PERSON_ID = r"^P-\d{4}$"
REQUEST_ID = r"^AR-\d{4}$"
DEVICE_ID = r"^D-\d{4}$"
GROUP = r"^[a-z][a-z0-9-]{1,30}$"


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


class AccessRequestInfo(_Result):
    id: str
    person_id: str
    group: str
    group_privileged: bool
    status: str
    """``open``, ``manager_approved``, ``rejected`` or ``fulfilled``."""
    approved_by: str | None


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


class ResetMfaResult(_Result):
    person_id: str
    devices_reset: list[str]
    enrollment_ticket: str
    change_id: int
    replayed: bool = False


class HandoffArgs(_Args):
    summary: str = Field(min_length=3, max_length=2000)
    reason: str = Field(min_length=3, max_length=500)


class HandoffResult(_Result):
    ticket_id: str
    replayed: bool = False
