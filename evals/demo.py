"""``tether demo``: every shipped workflow's scenarios played through the real graph, offline.

Each scenario prints the route, every proposed action with its decision and rule, the
approvals, the outcome and the thread's ledger rows, then checks the outcome it documents;
the demo fails if any scenario does not behave as documented. Each workflow plays in a fresh
``$TETHER_HOME/demo/<workflow>`` directory, so the demo can be played any number of times.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

from tether.checkpoints.ledger import LedgerRow
from tether.config import Home
from tether.evals.scenarios import Played, play
from tether.graphs.registry import WorkflowSpec
from tether.graphs.session import Session

__all__ = ["run_demo"]

Table = Callable[[Sequence[LedgerRow]], str]


def _describe(p: Played, table: Table) -> list[str]:
    s, r = p.scenario, p.result
    who = f"subject {s.subject}" if s.subject else "no subject"
    lines = [f"== ({s.key}) {s.title}", f"  {who}{f', as {s.principal}' if s.principal else ''}: {s.request!r}",
             f"  route: {r.route}"]
    lines += [f"  {line}" for line in p.log]
    for e in p.rows:
        if e.event == "proposed":
            lines.append(f"  action {e.tool} {json.dumps(e.args)} -> {e.decision} [{e.rule_id}]")
        if e.event in ("approved", "rejected", "edited"):
            lines.append(f"  {e.event} by {e.approver}")
    o = r.outcome
    if o is not None and o.kind == "resolved":
        lines.append(f"  outcome: resolved — {o.answer}")
    elif o is not None:
        lines += [f"  outcome: escalated ({o.action.value}) by {o.rule_id}: {o.reason}", f"  summary: {o.summary}"]
    elif r.waiting_for:
        lines.append(f"  outcome: waiting for approval {r.waiting_for[0].approval_id}")
    lines.append("  " + table(p.rows).replace("\n", "\n  "))
    lines.append(f"  check: {'OK' if p.problem is None else 'FAILED: ' + p.problem}\n")
    return lines


def _play_all(spec: WorkflowSpec, home: Home) -> list[Played]:
    out: list[Played] = []
    sessions: dict[tuple[str | None, tuple[str, ...]], Session] = {}
    try:
        for s in spec.scenarios:
            key = (s.principal, s.roles)
            if key not in sessions:
                sessions[key] = Session.open(spec, home=home, principal=s.principal, roles=s.roles)
            out.append(play(sessions[key], s, thread_id=f"demo-{spec.name}-{s.key}"))
    finally:
        for session in sessions.values():
            session.close()
    return out


def run_demo(specs: Sequence[WorkflowSpec], *, home: Home, json_out: bool, table: Table,
             say: Callable[[str], None] = print) -> int:
    """Play every scenario of ``specs``; print as text, or only JSON; 1 if any check failed."""
    t0 = time.perf_counter()
    report: list[dict[str, Any]] = []
    failures: list[str] = []
    total = 0
    for spec in specs:
        demo_home = Home(root=home.root / "demo" / spec.name)
        shutil.rmtree(demo_home.root, ignore_errors=True)
        if not json_out:
            say(f"tether demo: {spec.name} — {spec.description}; data in {demo_home.root}\n")
        for p in _play_all(spec, demo_home):
            total += 1
            if not json_out:
                say("\n".join(_describe(p, table)))
            if p.problem is not None:
                failures.append(f"{spec.name} ({p.scenario.key}) {p.problem}")
            report.append({"workflow": spec.name, "scenario": p.scenario.key, "title": p.scenario.title,
                           "status": p.result.status, "route": p.result.route, "ok": p.problem is None,
                           "problem": p.problem, "seconds": round(p.seconds, 3)})
    wall = time.perf_counter() - t0
    if json_out:
        say(json.dumps({"scenarios": report, "failures": failures, "wall_seconds": round(wall, 2)}, indent=2))
    else:
        say(f"{total - len(failures)}/{total} scenarios as documented in {wall:.1f}s")
        for f in failures:
            say(f"FAILED {f}")
    return 1 if failures else 0
