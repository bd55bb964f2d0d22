"""``tether report``: what the agents did, read back from the ledger, with SLOs and error budgets.

    tether report [--since 24h|7d|ISO] [--until ISO] [--workflow NAME] [--slo FILE]
                  [--bucket 1h|1d|auto] [--html FILE] [--json]

The ledger's rows are grouped into runs (one per ``thread_id`` and ``run_id``). Each run gets
an outcome: ``resolved`` (a ``responded`` row), ``escalated`` (an ``escalated`` row),
``waiting`` (an approval was requested, nobody decided yet, and the run has not ended) or
``unfinished`` (anything else: the run stopped without an answer). Counted per run:

* denials: proposals the policy denied (``deny``) or refused as malformed (``invalid``), and
  actions the policy refused when re-checked at execution time;
* approvals asked, approved, edited, rejected;
* tool errors: ``failed`` rows from the tool itself (not the policy's refusals at execution);
* unsafe attempts: proposals the policy denied, refusals at execution, and ``flagged`` rows
  (instruction-like text found in a tool's output);
* spend: the largest ``spend_usd`` of the run (the ledger records it cumulatively);
* writes: ``executed`` rows of the workflow's write tools.

Runs fall into the report window by their start time. An SLO file (``load_slos``; indicators
in ``INDICATORS``) sets objectives; each SLO is judged over its own window ending at the
report's end, whatever ``--since`` says. The command exits 1 when an SLO's error budget is
exhausted, else 0.
"""


from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tether.checkpoints.records import LedgerRow
from tether.errors import ConfigError
from tether.evals.ops_runs import (
    _MAX_BUCKETS,
    RunSummary,
    WorkflowFacts,
    _ts,
    parse_bucket,
    parse_span,
    parse_when,
    quantile,
    summarize_runs,
)
from tether.evals.slo import INDICATORS, SloFile, SloSpec, SloStatus, evaluate_slos, load_slos

__all__ = [
    "INDICATORS",
    "Bucket",
    "ErrorCount",
    "OpsReport",
    "RuleCount",
    "RunSummary",
    "SloFile",
    "SloSpec",
    "SloStatus",
    "WorkflowFacts",
    "build_report",
    "catalog",
    "cmd_report",
    "evaluate_slos",
    "load_report",
    "load_slos",
    "parse_bucket",
    "parse_span",
    "parse_when",
    "quantile",
    "series",
    "summarize_runs",
]

# ---------------------------------------------------------------- the report


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleCount:
    rule_id: str
    count: int
    tools: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorCount:
    tool: str
    count: int
    codes: tuple[tuple[str, int], ...]
    last_error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Bucket:
    """One time bucket of the series (runs by their start time)."""

    start: str
    runs: int
    resolved: int
    escalated: int
    waiting: int
    unfinished: int
    denials: int
    tool_errors: int
    unsafe: int
    spend_usd: float
    spend_per_resolved_usd: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class OpsReport:
    """The operations report: totals, rates, top problems, a time series and SLO burn."""

    ledger: str
    generated_at: str
    since: str | None
    until: str
    workflow: str | None
    bucket_seconds: float
    totals: dict[str, float]
    rates: dict[str, float | None]
    cost_per_resolved_usd: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    top_denials: tuple[RuleCount, ...]
    top_tool_errors: tuple[ErrorCount, ...]
    series: tuple[Bucket, ...]
    slos: tuple[SloStatus, ...]
    runs: tuple[RunSummary, ...]
    notes: tuple[str, ...] = ()

    @property
    def breached(self) -> bool:
        """Whether some SLO's error budget is exhausted."""
        return any(s.status == "exhausted" for s in self.slos)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": "tether.ops-report/1", **dataclasses.asdict(self),
                "breached": self.breached}


def _select(runs: Iterable[RunSummary], *, lo: datetime | None, hi: datetime,
            workflow: str | None) -> list[RunSummary]:
    return [r for r in runs if (workflow is None or r.workflow == workflow)
            and (lo is None or _ts(r.started_at) >= lo) and _ts(r.started_at) <= hi]


def _totals(runs: Sequence[RunSummary]) -> dict[str, float]:
    out: dict[str, float] = {"runs": len(runs)}
    for outcome in ("resolved", "escalated", "waiting", "unfinished"):
        out[outcome] = sum(r.outcome == outcome for r in runs)
    for f in ("denials", "approvals_asked", "approved", "edited", "rejected", "tool_errors", "unsafe",
              "flagged", "writes"):
        out[f] = sum(getattr(r, f) for r in runs)
    out["spend_usd"] = round(sum(r.spend_usd for r in runs), 8)
    return out


def _rates(t: Mapping[str, float]) -> dict[str, float | None]:
    n = t["runs"]

    def per(key: str) -> float | None:
        return t[key] / n if n else None

    return {"resolution": per("resolved"), "escalation": per("escalated"), "waiting": per("waiting"),
            "unfinished": per("unfinished"), "denials_per_run": per("denials"),
            "tool_errors_per_run": per("tool_errors"), "unsafe_per_run": per("unsafe"),
            "approvals_per_run": per("approvals_asked")}


def _top_denials(runs: Sequence[RunSummary], limit: int = 10) -> tuple[RuleCount, ...]:
    counts = Counter(rule for r in runs for rule in r.denial_rules)
    tools: dict[str, set[str]] = {}
    for r in runs:
        for rule, tool in zip(r.denial_rules, r.denied_tools, strict=True):
            tools.setdefault(rule, set()).add(tool)
    return tuple(RuleCount(rule_id=k, count=v, tools=tuple(sorted(tools[k])))
                 for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


def _top_errors(runs: Sequence[RunSummary], limit: int = 10) -> tuple[ErrorCount, ...]:
    by_tool: dict[str, list[tuple[str, str, str]]] = {}
    for r in runs:
        for err in r.errors:
            by_tool.setdefault(err[0], []).append(err)
    out = [ErrorCount(tool=t, count=len(es), codes=tuple(Counter(e[1] for e in es).most_common()),
                      last_error=es[-1][2]) for t, es in by_tool.items()]
    return tuple(sorted(out, key=lambda e: (-e.count, e.tool))[:limit])


def _bucket(start: datetime, runs: Sequence[RunSummary]) -> Bucket:
    t = _totals(runs)
    lat = [r.latency_s for r in runs if r.latency_s is not None]
    return Bucket(start=start.isoformat(), runs=len(runs), resolved=int(t["resolved"]),
                  escalated=int(t["escalated"]), waiting=int(t["waiting"]), unfinished=int(t["unfinished"]),
                  denials=int(t["denials"]), tool_errors=int(t["tool_errors"]), unsafe=int(t["unsafe"]),
                  spend_usd=t["spend_usd"],
                  spend_per_resolved_usd=t["spend_usd"] / t["resolved"] if t["resolved"] else None,
                  latency_p50_s=quantile(lat, 0.5), latency_p95_s=quantile(lat, 0.95))


def series(runs: Sequence[RunSummary], *, lo: datetime, hi: datetime, width: timedelta) -> tuple[Bucket, ...]:
    """Buckets of ``width`` aligned to the epoch (UTC), covering ``lo`` to ``hi``."""
    step = width.total_seconds()
    first, last = int(lo.timestamp() // step), int(hi.timestamp() // step)
    if last - first + 1 > _MAX_BUCKETS:
        raise ConfigError(setting="--bucket", reason=f"{last - first + 1} buckets of {width} between "
                          f"{lo.isoformat()} and {hi.isoformat()}; choose a wider bucket or a shorter --since")
    groups: dict[int, list[RunSummary]] = {i: [] for i in range(first, last + 1)}
    for r in runs:
        i = int(_ts(r.started_at).timestamp() // step)
        if i in groups:
            groups[i].append(r)
    return tuple(_bucket(datetime.fromtimestamp(i * step, UTC), rs) for i, rs in groups.items())


def build_report(runs: Sequence[RunSummary], *, now: datetime, since: datetime | None = None,
                 until: datetime | None = None, workflow: str | None = None, bucket: str = "auto",
                 slos: Sequence[SloSpec] = (), ledger: str = "", notes: Sequence[str] = ()) -> OpsReport:
    """The report over ``runs`` that started between ``since`` and ``until`` (default: now)."""
    hi = until or now
    if since is not None and since > hi:
        raise ConfigError(setting="--since", reason=f"{since.isoformat()} is after the end of the report "
                          f"({hi.isoformat()}); give an earlier --since or a later --until")
    chosen = _select(runs, lo=since, hi=hi, workflow=workflow)
    lo = since or min((_ts(r.started_at) for r in chosen), default=hi)
    width = parse_bucket(bucket, span=hi - lo)
    totals = _totals(chosen)
    lat = [r.latency_s for r in chosen if r.latency_s is not None]
    statuses = evaluate_slos(slos, [r for r in runs if workflow is None or r.workflow == workflow],
                             end=hi, lookback=width)
    return OpsReport(
        ledger=ledger, generated_at=now.isoformat(), since=since.isoformat() if since else None,
        until=hi.isoformat(), workflow=workflow, bucket_seconds=width.total_seconds(), totals=totals,
        rates=_rates(totals),
        cost_per_resolved_usd=totals["spend_usd"] / totals["resolved"] if totals["resolved"] else None,
        latency_p50_s=quantile(lat, 0.5), latency_p95_s=quantile(lat, 0.95),
        top_denials=_top_denials(chosen), top_tool_errors=_top_errors(chosen),
        series=series(chosen, lo=lo, hi=hi, width=width) if chosen else (), slos=tuple(statuses),
        runs=tuple(chosen), notes=tuple(notes),
    )


# ---------------------------------------------------------------- command


_CATALOG: dict[tuple[tuple[str, int, str], ...], tuple[tuple[WorkflowFacts, ...], tuple[str, ...]]] = {}


def catalog() -> tuple[tuple[WorkflowFacts, ...], tuple[str, ...]]:
    """Facts of every workflow this install can run (each built once per process in a throwaway
    data directory, so the report never writes to ``$TETHER_HOME``), and notes on failures."""
    import tempfile
    from pathlib import Path

    from tether.config import Home
    from tether.errors import TetherError
    from tether.graphs.registry import list_workflows
    from tether.graphs.session import Session

    specs = list_workflows()
    key = tuple((s.name, id(s.build), str(s.policy_path)) for s in specs)
    if key in _CATALOG:
        return _CATALOG[key]
    facts, notes = [], []
    with tempfile.TemporaryDirectory(prefix="tether-report-") as tmp:
        for spec in specs:
            try:
                with Session.open(spec.name, home=Home(root=Path(tmp) / spec.name)) as s:
                    wf = s.workflow
                    names = frozenset(wf.tools.names())
                    writes = frozenset(n for n in names if (t := wf.tools.get(n)) is not None
                                       and t.effect == "write")
                    facts.append(WorkflowFacts(name=spec.name, policy_version=wf.policy.version,
                                               tools=names, writes=writes))
            except (TetherError, OSError, ImportError) as exc:
                notes.append(f"workflow {spec.name} could not be built ({exc}); its runs show as unknown")
    _CATALOG[key] = (tuple(facts), tuple(notes))
    return _CATALOG[key]


def _started_from(rows: Iterable[LedgerRow], lower: datetime | None) -> Iterator[LedgerRow]:
    """The rows of runs whose first row is at ``lower`` or later (all rows when ``None``); the
    ledger has no time-range query, so older rows are read and dropped, not kept in memory."""
    if lower is None:
        yield from rows
        return
    bound, old = lower.astimezone(UTC).isoformat(timespec="microseconds"), set[tuple[str, str]]()
    for e in rows:
        key = (e.thread_id, e.run_id)
        if key in old:
            continue
        if e.ts < bound and _ts(e.ts) < lower:
            old.add(key)
            continue
        yield e


def load_report(args: argparse.Namespace, *, now: datetime | None = None) -> OpsReport:
    """The report the command line asks for, over the ledger at ``$TETHER_HOME``."""
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home

    now = now or datetime.now(UTC)
    since = parse_when(args.since, now=now, setting="--since") if args.since else None
    until = parse_when(args.until, now=now, setting="--until") if args.until else None
    slos = load_slos(args.slo) if args.slo else ()
    parse_bucket(args.bucket or "auto", span=timedelta(0))  # bad --bucket fails before any work
    facts, notes = catalog()
    if args.workflow and args.workflow not in {f.name for f in facts}:
        known = ", ".join(sorted(f.name for f in facts)) or "none"
        raise ConfigError(setting="--workflow", reason=f"{args.workflow!r} is not a workflow of this "
                          f"install; known: {known} (see `tether workflows`)")
    end = until or now
    lower = None if since is None else min([since, *(end - parse_span(s.window) for s in slos)])
    with Ledger.open(Home.from_env().ledger_url) as led:
        owners = {a.thread_id: a.workflow for a in led.approvals(status=None) if a.workflow}
        runs = summarize_runs(_started_from(led.iter_events(), lower), catalog=facts, approvals=owners)
        url = led.url
    return build_report(runs, now=now, since=since, until=until, workflow=args.workflow,
                        bucket=args.bucket or "auto", slos=slos, ledger=url, notes=notes)


def cmd_report(args: argparse.Namespace) -> int:
    """``tether report``: print the report (``--json``: all of it), write ``--html``; exit 1 when
    an SLO's error budget is exhausted."""
    from tether.evals.ops_html import render_html, render_text

    report = load_report(args)
    if args.html:
        from pathlib import Path

        path = Path(args.html)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(setting="--html", reason=f"cannot write {path}: {exc}") from None
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(render_text(report) + (f"\nDashboard: {args.html}" if args.html else ""))
    return 1 if report.breached else 0
