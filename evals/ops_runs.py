"""Ledger rows folded into runs, and the time parsing ``tether report`` shares (see ``evals.ops``)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tether.checkpoints.records import LedgerRow
from tether.errors import ConfigError

__all__ = ["RunSummary", "WorkflowFacts", "parse_bucket", "parse_span", "parse_when", "quantile", "summarize_runs"]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WHEN_FORMS = ("an ISO 8601 time such as 2026-12-01T09:30:00Z or 2026-12-01 (UTC when no offset), "
               "or a span back from now such as 30m, 24h, 7d, 2w")
_MAX_BUCKETS = 5000
_CODE = re.compile(r"^\[([^\]]+)\]")


def parse_span(text: str, *, setting: str = "span") -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w``, ``90s`` as a duration; anything else is a ``ConfigError``."""
    m = _SPAN.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(setting=setting, reason=f"{text!r} is not a span; write a positive number "
                          "and a unit: s, m, h, d or w (e.g. 30m, 24h, 7d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_when(text: str, *, now: datetime, setting: str = "--since") -> datetime:
    """An instant (UTC): an ISO 8601 time, or a span back from ``now``."""
    value = str(text).strip()
    if _SPAN.match(value):
        return now - parse_span(value, setting=setting)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(setting=setting, reason=f"{text!r} is not a time; write {_WHEN_FORMS}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_bucket(text: str, *, span: timedelta) -> timedelta:
    """The series' bucket width: ``auto`` (1h up to 3 days, 1d up to 120 days, else 1w) or a span."""
    if str(text).strip() == "auto":
        if span <= timedelta(days=3):
            return timedelta(hours=1)
        return timedelta(days=1) if span <= timedelta(days=120) else timedelta(weeks=1)
    return parse_span(text, setting="--bucket")


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile with linear interpolation between ranks; ``None`` without values."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ts(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# ---------------------------------------------------------------- runs


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowFacts:
    """What identifies a workflow's rows: its policy version, its tools and which of them write."""

    name: str
    policy_version: str
    tools: frozenset[str]
    writes: frozenset[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSummary:
    """One run (``thread_id``, ``run_id``) folded from its ledger rows."""

    thread_id: str
    run_id: str
    workflow: str | None
    """From the run's approvals, else its policy version, else its tools; ``None``: unknown."""
    started_at: str
    ended_at: str | None
    latency_s: float | None
    """End minus start, for resolved and escalated runs (includes time waiting for a human)."""
    outcome: str
    """resolved, escalated, waiting or unfinished."""
    end_rule: str | None = None
    """The rule that escalated the run."""
    request: str | None = None
    denials: int = 0
    denial_rules: tuple[str, ...] = ()
    denied_tools: tuple[str, ...] = ()
    """The tool of each denial, in the order of ``denial_rules``."""
    approvals_asked: int = 0
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    tool_errors: int = 0
    errors: tuple[tuple[str, str, str], ...] = ()
    """Per tool error: (tool, code, message)."""
    unsafe: int = 0
    flagged: int = 0
    spend_usd: float = 0.0
    writes: int = 0


@dataclass(kw_only=True, slots=True)
class _Acc:
    first: LedgerRow
    rows: list[LedgerRow] = dataclasses.field(default_factory=list)


def _is_refusal(e: LedgerRow) -> bool:
    """A ``failed`` row written when the policy refused the action at execution time."""
    return bool(e.rule_id) and (e.error or "").startswith(f"{e.rule_id}: ")


def _workflow_of(rows: Sequence[LedgerRow], catalog: Sequence[WorkflowFacts],
                 approvals: Mapping[str, str]) -> str | None:
    if rows[0].thread_id in approvals:
        return approvals[rows[0].thread_id]
    versions = {e.policy_version for e in rows if e.policy_version}
    by_policy = [w.name for w in catalog if w.policy_version in versions]
    if len(by_policy) == 1:
        return by_policy[0]
    tools = {e.tool for e in rows if e.tool}
    by_tools = [w.name for w in catalog if tools and tools <= w.tools]
    return by_tools[0] if len(by_tools) == 1 else None


def _fold(rows: Sequence[LedgerRow], catalog: Sequence[WorkflowFacts],
          approvals: Mapping[str, str]) -> RunSummary:
    workflow = _workflow_of(rows, catalog, approvals)
    known = [w for w in catalog if w.name == workflow] or list(catalog)
    writes = frozenset().union(*(w.writes for w in known)) if known else frozenset()
    start = next((e for e in rows if e.event == "run_started"), rows[0])
    end = next((e for e in reversed(rows) if e.event in ("responded", "escalated")), None)
    pending: set[str] = set()
    denials: list[tuple[str, str]] = []
    errors: list[tuple[str, str, str]] = []
    counts: Counter[str] = Counter()
    for e in rows:
        key = e.approval_id or e.tool_call_id or f"seq-{e.seq}"
        if e.event == "proposed" and e.decision in ("deny", "invalid"):
            denials.append((e.rule_id or f"({e.decision})", e.tool or "?"))
            counts["unsafe"] += e.decision == "deny"
        elif e.event == "failed" and _is_refusal(e):
            denials.append((str(e.rule_id), e.tool or "?"))
            counts["unsafe"] += 1
        elif e.event == "failed":
            m = _CODE.match(e.error or "")
            errors.append((e.tool or "?", m.group(1) if m else "exception", (e.error or "")[:300]))
        elif e.event == "approval_requested":
            pending.add(key)
            counts["asked"] += 1
        elif e.event in ("approved", "rejected", "edited"):
            pending.discard(key)
            counts[e.event] += 1
        elif e.event == "flagged":
            counts["flagged"] += 1
        elif e.event == "executed" and e.tool in writes:
            counts["writes"] += 1
    outcome = ("resolved" if end.event == "responded" else "escalated") if end is not None else \
        "waiting" if pending else "unfinished"
    latency = (_ts(end.ts) - _ts(start.ts)).total_seconds() if end is not None else None
    return RunSummary(
        thread_id=rows[0].thread_id, run_id=rows[0].run_id, workflow=workflow, started_at=start.ts,
        ended_at=end.ts if end is not None else None, latency_s=latency, outcome=outcome,
        end_rule=end.rule_id if end is not None and end.event == "escalated" else None,
        request=start.detail if start.event == "run_started" else None,
        denials=len(denials), denial_rules=tuple(d[0] for d in denials),
        denied_tools=tuple(d[1] for d in denials), approvals_asked=counts["asked"],
        approved=counts["approved"], edited=counts["edited"], rejected=counts["rejected"],
        tool_errors=len(errors), errors=tuple(errors), unsafe=counts["unsafe"] + counts["flagged"],
        flagged=counts["flagged"], spend_usd=max((e.spend_usd or 0.0 for e in rows), default=0.0),
        writes=counts["writes"],
    )


def summarize_runs(rows: Iterable[LedgerRow], *, catalog: Sequence[WorkflowFacts] = (),
                   approvals: Mapping[str, str] | None = None) -> tuple[RunSummary, ...]:
    """Group rows (in ``seq`` order) into runs and fold each; ``approvals`` maps a thread to the
    workflow its approvals name. Runs come back in order of their first row."""
    runs: dict[tuple[str, str], list[LedgerRow]] = {}
    for e in rows:
        runs.setdefault((e.thread_id, e.run_id), []).append(e)
    return tuple(_fold(rs, catalog, approvals or {}) for rs in runs.values())


