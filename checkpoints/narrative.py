"""Explain one thread from its ledger rows: what was asked, the route, each action, the outcome.

``explain(rows)`` folds a thread's rows into a ``ThreadStory`` (plain data, JSON-ready with
``to_dict()``); ``render(story)`` writes it as readable text for ``tether ledger explain``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tether.checkpoints.records import LedgerRow

__all__ = ["ActionStory", "RunStory", "ThreadStory", "explain", "render"]


@dataclass(kw_only=True, slots=True)
class ActionStory:
    """One proposed tool call and what became of it."""

    tool_call_id: str
    tool: str
    args: dict[str, Any] | None = None
    decision: str | None = None
    """Policy decision on the proposal: allow, deny, require_approval, escalate."""
    rule_id: str | None = None
    policy_version: str | None = None
    evidence: list[str] = field(default_factory=list)
    """Evidence ids cited by the proposal (and returned by the tool)."""
    citations: list[dict[str, Any]] | None = None
    """The citation gate's verdict per cited id (``id``, ``ok``, ``failed``, ``why``, relevance,
    status, trust), as last recorded: at the proposal, then at execution. ``None``: no gate."""
    approval_id: str | None = None
    approval: str | None = None
    """approved, rejected or edited, when a human decided."""
    approver: str | None = None
    status: str = "proposed"
    """Last state: proposed, awaiting_approval, approved, rejected, edited, executing,
    executed, failed, compensated, or budget_exceeded."""
    result: Any = None
    error: str | None = None
    attempts: int = 0
    """How many times execution began (``executing`` rows)."""
    seqs: list[int] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class RunStory:
    """One request on the thread, from ``run_started`` to its outcome."""

    run_id: str
    started_at: str
    request: str | None = None
    subject_id: str | None = None
    """The subject the run acted for."""
    principal: str | None = None
    route: str | None = None
    router_model: str | None = None
    model: str | None = None
    actions: list[ActionStory] = field(default_factory=list)
    outcome: str = "unfinished"
    """resolved, escalated or unfinished."""
    outcome_detail: str | None = None
    outcome_rule: str | None = None
    cost_usd: float = 0.0


@dataclass(kw_only=True, slots=True)
class ThreadStory:
    thread_id: str
    runs: list[RunStory] = field(default_factory=list)
    rows: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STATUS = {"approval_requested": "awaiting_approval", "approved": "approved",
           "rejected": "rejected", "edited": "edited", "executing": "executing",
           "executed": "executed", "failed": "failed", "compensated": "compensated",
           "budget_exceeded": "budget_exceeded"}


def _action(run: RunStory, e: LedgerRow) -> ActionStory:
    key = e.tool_call_id or f"seq-{e.seq}"
    for a in run.actions:
        if a.tool_call_id == key:
            return a
    a = ActionStory(tool_call_id=key, tool=e.tool or "?")
    run.actions.append(a)
    return a


def _apply(run: RunStory, e: LedgerRow) -> None:
    a = _action(run, e)
    a.seqs.append(e.seq)
    if e.args is not None:
        a.args = dict(e.args)
    for ev in e.evidence:
        if ev not in a.evidence:
            a.evidence.append(ev)
    if e.citations is not None:
        a.citations = [dict(c) for c in e.citations]
    if e.event == "proposed":
        a.decision, a.rule_id, a.policy_version = e.decision, e.rule_id, e.policy_version
        a.status = "denied" if e.decision in ("deny", "escalate") else "proposed"
        return
    a.status = _STATUS.get(e.event, a.status)
    a.approval_id = e.approval_id or a.approval_id
    if e.event in ("approved", "rejected", "edited"):
        a.approval, a.approver = e.event, e.approver
        if e.event == "edited" and e.rule_id:
            a.decision, a.rule_id = e.decision, e.rule_id
    elif e.event == "executing":
        a.attempts += 1
    elif e.event == "executed":
        a.result, a.error = e.result, None
    elif e.event in ("failed", "budget_exceeded"):
        a.error = e.error or e.detail


def explain(thread_id: str, rows: Sequence[LedgerRow]) -> ThreadStory:
    """Fold one thread's rows (in ``seq`` order) into a story."""
    story = ThreadStory(thread_id=thread_id, rows=len(rows))
    runs: dict[str, RunStory] = {}
    for e in rows:
        run = runs.get(e.run_id)
        if run is None:
            run = runs[e.run_id] = RunStory(run_id=e.run_id, started_at=e.ts)
            story.runs.append(run)
        run.cost_usd = max(run.cost_usd, e.spend_usd or 0.0)
        run.subject_id = run.subject_id or e.subject_id
        run.principal = run.principal or e.principal
        if e.event == "run_started":
            run.request = e.detail
        elif e.event == "routed":
            run.route, run.router_model = e.detail, e.model_id
        elif e.event == "responded":
            run.outcome, run.outcome_detail, run.model = "resolved", e.detail, e.model_id
        elif e.event == "escalated":
            run.outcome, run.outcome_rule = "escalated", e.rule_id
            res = e.result if isinstance(e.result, dict) else {}
            run.outcome_detail = str(res.get("reason") or e.detail or "")
        elif e.tool is not None:
            _apply(run, e)
    story.cost_usd = round(sum(r.cost_usd for r in story.runs), 6)
    return story


def _brief(value: Any, n: int = 160) -> str:
    s = json.dumps(value, sort_keys=True, default=str)
    return s if len(s) <= n else s[: n - 1] + "…"


def _citation_lines(a: ActionStory) -> list[str]:
    """Which citations were valid, and why the others were not."""
    if a.citations is None:
        return []
    if not a.citations:
        return ["     citations: none cited (check 'missing' failed)"]
    valid = sum(bool(c.get("ok")) for c in a.citations)
    out = [f"     citations: {valid} of {len(a.citations)} valid"]
    for c in a.citations:
        verdict = "valid" if c.get("ok") else f"INVALID, check '{c.get('failed')}' failed"
        out.append(f"       {c.get('id')}: {verdict}: {c.get('why') or ''}".rstrip(": "))
    return out


def render(story: ThreadStory) -> str:
    out = [f"Thread {story.thread_id}: {len(story.runs)} run(s), {story.rows} ledger rows, "
           f"cost ${story.cost_usd:.6f}"]
    for i, run in enumerate(story.runs, 1):
        out += ["", f"Run {i} ({run.run_id}) at {run.started_at}"
                    + (f" for subject {run.subject_id}" if run.subject_id else "")
                    + (f", agent {run.principal}" if run.principal else "")]
        out.append(f"  Asked: {run.request!r}" if run.request else "  Asked: (not recorded)")
        if run.route:
            out.append(f"  Route: {run.route} (chosen by {run.router_model or '?'})")
        for n, a in enumerate(run.actions, 1):
            out.append(f"  {n}. {a.tool}({_brief(a.args or {}, 120)})")
            rule = f" by rule {a.rule_id}" if a.rule_id else ""
            out.append(f"     policy: {a.decision or '?'}{rule}"
                       + (f" [policy {a.policy_version}]" if a.policy_version else ""))
            if a.evidence:
                out.append(f"     evidence: {', '.join(a.evidence)}")
            out += _citation_lines(a)
            if a.approval_id:
                who = f"{a.approval} by {a.approver}" if a.approval else "still pending"
                out.append(f"     approval {a.approval_id}: {who}")
            line = f"     result: {a.status}"
            if a.status == "executed":
                line += f" -> {_brief(a.result)}"
            elif a.error:
                line += f" -> {a.error[:200]}"
            if a.attempts > 1:
                line += f" (execution began {a.attempts} times; recovered after a crash)"
            out.append(line)
        if run.outcome == "resolved":
            out.append(f"  Outcome: resolved: {run.outcome_detail}")
        elif run.outcome == "escalated":
            out.append(f"  Outcome: escalated by {run.outcome_rule}: {run.outcome_detail}")
        else:
            out.append("  Outcome: unfinished (waiting for a human, or interrupted)")
        out.append(f"  Cost: ${run.cost_usd:.6f} model spend")
    return "\n".join(out)
