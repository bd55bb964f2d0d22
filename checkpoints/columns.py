"""The ledger's stored event columns and how a float is written in the hashed text.

Kept apart from the record types so that a process checking the chain (``tether.checkpoints.vouch``)
starts without loading them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

__all__ = ["COLUMNS", "ColumnKind", "float_text", "now"]

ColumnKind = Literal["text", "int", "real"]

COLUMNS: tuple[tuple[str, ColumnKind], ...] = (
    ("event_id", "text"), ("ts", "text"), ("thread_id", "text"), ("run_id", "text"),
    ("step", "int"), ("event", "text"), ("tool_call_id", "text"), ("tool", "text"),
    ("tool_schema_version", "text"), ("args_json", "text"), ("args_hash", "text"),
    ("decision", "text"), ("rule_id", "text"), ("matched_rules", "text"),
    ("policy_version", "text"), ("approval_id", "text"), ("approver", "text"),
    ("evidence", "text"), ("result_json", "text"), ("error", "text"), ("detail", "text"),
    ("model_id", "text"), ("principal", "text"), ("subject_id", "text"),
    ("spend_usd", "real"), ("idempotency_key", "text"),
    ("citations", "text"), ("flags", "text"),
)
"""Stored event columns in hash order (``seq``, ``prev_hash`` and ``row_hash`` come on top)."""


def float_text(f: float) -> str:
    """A float as canonical JSON writes it: shortest round trip; NaN, Infinity, -Infinity."""
    if f != f:
        return "NaN"
    if f in (_INF, -_INF):
        return "Infinity" if f > 0 else "-Infinity"
    return float.__repr__(f)


_INF = float("inf")


def now() -> str:
    """The ``ts`` column's form of the current time (UTC, microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
