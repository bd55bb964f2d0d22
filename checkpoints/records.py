"""Ledger value objects and their stored columns, shared by every backend.

``LedgerEvent`` is what a caller appends; ``LedgerRow`` is what was stored (with sequence
number, timestamp and hash-chain fields); ``Approval`` is a pending or decided approval.
``COLUMNS`` is the one list of stored event columns: backends write them, the hash chain
hashes them (see ``tether.checkpoints.chain``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from operator import itemgetter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.checkpoints.columns import COLUMNS, float_text, now

__all__ = [
    "COLUMNS",
    "Approval",
    "ApprovalStatus",
    "EventKind",
    "LedgerEvent",
    "LedgerRow",
    "args_hash",
    "dumps",
    "float_text",
    "from_columns",
    "new_event_id",
    "new_event_ids",
    "to_columns",
    "to_values",
]

EventKind = Literal[
    "run_started",
    "routed",
    "proposed",
    "approval_requested",
    "approved",
    "rejected",
    "edited",
    "executing",
    "executed",
    "failed",
    "compensated",
    "budget_exceeded",
    "escalated",
    "responded",
    "flagged",
    "model_fallback",
]
ApprovalStatus = Literal["pending", "approved", "rejected", "edited"]
def new_event_id() -> str:
    """32 hex digits: the clock in nanoseconds, then 64 random bits. Ids grow with time, so the
    unique index on them is appended to at its right edge instead of rewritten all over."""
    return new_event_ids(1)[0]


def new_event_ids(n: int) -> list[str]:
    """``n`` ids as ``new_event_id`` makes them, in increasing order, from one clock reading and
    one read of random bytes (a batch of rows appended together)."""
    base, noise = time.time_ns(), os.urandom(8 * n).hex()
    return [f"{base + i:016x}{noise[16 * i:16 * i + 16]}" for i in range(n)]


_REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
"""The canonical form's specification; ``dumps`` gives the same text (a test holds them equal)."""


_C_ENCODE = getattr(json.encoder, "c_make_encoder", None)
_CHUNKS = _C_ENCODE(None, str, json.encoder.encode_basestring_ascii, float_text, ":", ",", True, False,
                    True) if _C_ENCODE is not None else None
"""The C encoder ``JSONEncoder.encode`` would build per call, built once (no circular-reference
check: ledger values are trees, a cycle recurses until Python's limit and raises)."""


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, ASCII; other types as ``str(value)``."""
    if _CHUNKS is None or type(value) is str:
        return _REFERENCE.encode(value)
    return "".join(_CHUNKS(value, 0))


def args_hash(args: Mapping[str, Any]) -> str:
    """Hash of canonical JSON arguments; an approval is bound to it."""
    return "sha256:" + hashlib.sha256(dumps(dict(args)).encode()).hexdigest()[:32]


class LedgerEvent(BaseModel):
    """One event to append. ``None`` fields are simply not applicable to the event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thread_id: str
    run_id: str
    event: EventKind
    step: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    """A 64-bit integer, as both backends store it."""
    tool_call_id: str | None = None
    tool: str | None = None
    tool_schema_version: str | None = None
    args: Mapping[str, Any] | None = None
    decision: str | None = None
    rule_id: str | None = None
    matched_rules: tuple[str, ...] = ()
    policy_version: str | None = None
    approval_id: str | None = None
    approver: str | None = None
    evidence: tuple[str, ...] = ()
    result: Any = None
    error: str | None = None
    detail: str | None = None
    model_id: str | None = None
    principal: str | None = None
    subject_id: str | None = None
    """The subject the run acts for."""
    spend_usd: float | None = Field(default=None, allow_inf_nan=False)
    idempotency_key: str | None = None
    citations: tuple[dict[str, Any], ...] | None = None
    """Per cited evidence id: what the citation gate found (retrieved, relevance, stale, trust)."""
    flags: tuple[dict[str, Any], ...] | None = None
    """Content flags: injection-screen hits, provenance findings, copied untrusted text."""


class LedgerRow(LedgerEvent):
    """A stored event, with its sequence number, timestamp and place in the hash chain."""

    seq: int
    event_id: str
    ts: str
    args_hash: str | None = None
    prev_hash: str | None = None
    """``row_hash`` of the row before (``chain.GENESIS`` for the first row)."""
    row_hash: str | None = None
    """SHA-256 over this row's columns, ``seq`` and ``prev_hash``."""


class Approval(BaseModel):
    """A pending or decided approval request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_id: str
    thread_id: str
    run_id: str
    tool_call_id: str
    tool: str
    args: dict[str, Any]
    args_hash: str
    preview: str
    rule_id: str
    reason: str
    policy_version: str
    subject_id: str | None
    status: ApprovalStatus
    decided_by: str | None = None
    decision: dict[str, Any] | None = None
    created_at: str
    decided_at: str | None = None
    expires_at: str | None = None
    """After this instant (ISO 8601, UTC) the approval can no longer be granted."""
    workflow: str | None = None
    """Name of the workflow whose run asked for it."""

    def expired(self, at: str | None = None) -> bool:
        return self.expires_at is not None and (at or now()) > self.expires_at


def _list(values: Any) -> str:
    return dumps(list(values)) if values else "[]"


_NAMES = tuple(name for name, _ in COLUMNS)
_JSON_COLUMNS = frozenset({"args_json", "matched_rules", "evidence", "result_json", "citations", "flags"})
_RAW_TEXT = itemgetter(*(i for i, (name, kind) in enumerate(COLUMNS) if kind == "text" and name not in _JSON_COLUMNS))
"""The text columns stored as given (the JSON columns are written by ``dumps``, which escapes NUL)."""


def to_values(ev: LedgerEvent, *, event_id: str, ts: str) -> list[Any]:
    """The stored columns of an event in ``COLUMNS`` order (without ``seq`` and chain fields).

    A NUL character in a text column is stored as U+FFFD on every backend (PostgreSQL cannot
    store NUL; the JSON columns escape it and keep it)."""
    args_json = dumps(ev.args) if ev.args is not None else None
    citations, flags, result = ev.citations, ev.flags, ev.result
    values = [
        event_id, ts, ev.thread_id, ev.run_id, ev.step, ev.event, ev.tool_call_id, ev.tool,
        ev.tool_schema_version, args_json,
        "sha256:" + hashlib.sha256(args_json.encode()).hexdigest()[:32] if args_json is not None
        else None,  # the same as args_hash(ev.args): one canonical serialization
        ev.decision, ev.rule_id, _list(ev.matched_rules), ev.policy_version, ev.approval_id,
        ev.approver, _list(ev.evidence), dumps(result) if result is not None else None,
        ev.error, ev.detail, ev.model_id, ev.principal, ev.subject_id,
        float(ev.spend_usd) + 0.0 if ev.spend_usd is not None else None,  # -0.0 is stored as 0.0
        ev.idempotency_key,
        _list(citations) if citations is not None else None,
        _list(flags) if flags is not None else None,
    ]
    if _has_nul(values):
        values = [v.replace("\x00", "\ufffd") if type(v) is str else v for v in values]
    return values


def _has_nul(values: list[Any]) -> bool:
    try:
        return "\x00" in "".join(filter(None, _RAW_TEXT(values)))
    except TypeError:  # a value of another type in a text column: look at every string
        return any(type(v) is str and "\x00" in v for v in values)


def to_columns(ev: LedgerEvent, *, event_id: str, ts: str) -> dict[str, Any]:
    """The stored columns of an event by name (without ``seq`` and chain fields)."""
    return dict(zip(_NAMES, to_values(ev, event_id=event_id, ts=ts), strict=True))


def from_columns(r: Mapping[str, Any]) -> LedgerRow:
    """Decode a stored row."""
    return LedgerRow(
        seq=r["seq"], event_id=r["event_id"], ts=r["ts"], thread_id=r["thread_id"],
        run_id=r["run_id"], step=r["step"], event=r["event"], tool_call_id=r["tool_call_id"],
        tool=r["tool"], tool_schema_version=r["tool_schema_version"],
        args=json.loads(r["args_json"]) if r["args_json"] else None,
        args_hash=r["args_hash"], decision=r["decision"], rule_id=r["rule_id"],
        matched_rules=tuple(json.loads(r["matched_rules"] or "[]")),
        policy_version=r["policy_version"], approval_id=r["approval_id"],
        approver=r["approver"], evidence=tuple(json.loads(r["evidence"] or "[]")),
        result=json.loads(r["result_json"]) if r["result_json"] else None,
        error=r["error"], detail=r["detail"], model_id=r["model_id"],
        principal=r["principal"], subject_id=r["subject_id"], spend_usd=r["spend_usd"],
        idempotency_key=r["idempotency_key"],
        citations=tuple(json.loads(r["citations"])) if r.get("citations") else None,
        flags=tuple(json.loads(r["flags"])) if r.get("flags") else None,
        prev_hash=r.get("prev_hash"),
        row_hash=r.get("row_hash"),
    )


def approval_from_columns(r: Mapping[str, Any]) -> Approval:
    return Approval(
        approval_id=r["approval_id"], thread_id=r["thread_id"], run_id=r["run_id"],
        tool_call_id=r["tool_call_id"], tool=r["tool"], args=json.loads(r["args_json"]),
        args_hash=r["args_hash"], preview=r["preview"], rule_id=r["rule_id"],
        reason=r["reason"], policy_version=r["policy_version"], subject_id=r["subject_id"],
        status=r["status"], decided_by=r["decided_by"],
        decision=json.loads(r["decision_json"]) if r["decision_json"] else None,
        created_at=r["created_at"], decided_at=r["decided_at"],
        expires_at=r.get("expires_at"), workflow=r.get("workflow"),
    )
