"""Explain a decision, diff two policies, replay a ledger against a policy change.

Nothing here runs a tool. ``diff_policies`` lists changed key paths; ``replay_ledger``
re-decides the ``proposed`` events of a ledger (opened read-only) under both policies and lists
the flips, building each request with the caller's ``describe`` (the tool contract's one
``describe_action``, through ``tether.tools.base.describe_args``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tether.errors import TetherError
from tether.guards.policy import ActionRequest, AnyDecision, Policy

__all__ = [
    "Describe",
    "Flip",
    "LedgerReplayError",
    "RuleChange",
    "diff_policies",
    "replay_ledger",
]


class LedgerReplayError(TetherError):
    """The ledger file cannot be read for a replay."""

    def __init__(self, *, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot replay {path}: {reason}")


class Describe(Protocol):
    """Builds the request a tool call would describe (``tether.tools.base.describe_args``)."""

    def __call__(self, tool: str, args: Mapping[str, Any], *, subject: str | None, principal: str | None,
                 evidence: frozenset[str]) -> ActionRequest: ...


# ---------------------------------------------------------------- diff


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleChange:
    key: str
    """Dotted key path, e.g. ``tools.issue_refund.max_amount_usd``."""
    old: Any
    new: Any
    change: str
    """``added``, ``removed`` or ``changed``."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def diff_policies(old: Policy, new: Policy) -> list[RuleChange]:
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            out.append(RuleChange(key=key, old=a[key], new=None, change="removed"))
        elif key not in a:
            out.append(RuleChange(key=key, old=None, new=b[key], change="added"))
        elif a[key] != b[key]:
            out.append(RuleChange(key=key, old=a[key], new=b[key], change="changed"))
    return out


# ---------------------------------------------------------------- replay


@dataclass(frozen=True, kw_only=True, slots=True)
class Flip:
    """A recorded proposal whose decision differs between the two policies."""

    seq: int | None
    thread_id: str | None
    tool: str
    args: dict[str, Any]
    recorded: str | None
    """Decision stored in the ledger (under whatever policy was then in force)."""
    old: AnyDecision
    new: AnyDecision


def _columns(db: sqlite3.Connection) -> set[str]:
    return {r[1] for r in db.execute("PRAGMA table_info(ledger_events)")}


def replay_ledger(path: str | Path, old: Policy, new: Policy, *, describe: Describe) -> tuple[int, list[Flip]]:
    """Re-decide every ``proposed`` event; returns (events replayed, flips of decision kind).

    Retrieved evidence is rebuilt per thread from earlier ``executed`` events; events the
    ledger marked ``invalid`` (schema errors) are skipped: no policy saw them.
    """
    p = Path(path)
    if not p.is_file():
        raise LedgerReplayError(path=str(p), reason="no such file")
    try:
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LedgerReplayError(path=str(p), reason=str(exc)) from None
    db.row_factory = sqlite3.Row
    try:
        cols = _columns(db)
        subject = "subject_id" if "subject_id" in cols else "customer_id"
        need = {"tool", "args_json", "decision", "rule_id", subject}
        if not need <= cols:
            raise LedgerReplayError(path=str(p), reason=f"ledger_events lacks {sorted(need - cols)}")
        pick: list[str] = [c for c in ("seq", "thread_id", "event", "principal", "evidence") if c in cols]
        order = " ORDER BY seq" if "seq" in cols else ""
        rows = db.execute(f"SELECT {', '.join(sorted(need) + pick)} FROM ledger_events{order}").fetchall()
    except sqlite3.Error as exc:
        raise LedgerReplayError(path=str(p), reason=str(exc)) from None
    finally:
        db.close()
    seen: dict[str | None, set[str]] = {}
    count, flips = 0, []
    for r in rows:
        row = dict(r)
        thread, event = row.get("thread_id"), row.get("event", "proposed")
        if event == "executed" and row.get("evidence"):
            seen.setdefault(thread, set()).update(json.loads(row["evidence"]))
        if event != "proposed" or row["decision"] == "invalid" or not row["tool"]:
            continue
        args = json.loads(row["args_json"]) if row["args_json"] else {}
        action = describe(row["tool"], args, subject=row[subject], principal=row.get("principal"),
                          evidence=frozenset(seen.get(thread, set())))
        count += 1
        a, b = old.evaluate(action), new.evaluate(action)
        if a.kind != b.kind:
            flips.append(Flip(seq=row.get("seq"), thread_id=thread, tool=row["tool"], args=args,
                              recorded=row["decision"], old=a, new=b))  # fmt: skip
    return count, flips
