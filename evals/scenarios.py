"""Scenarios: a request, the human decisions to give at each approval, and the expected outcome.

A workflow ships its scenarios on its ``WorkflowSpec``; ``tether demo`` plays them through the
real graph and ``run_eval`` scores them. ``play(session, scenario)`` runs one on a fresh thread:
each pause is decided with the scenario's next decision, through ``Session.decide`` in this
process or through ``tether approve`` / ``tether reject`` in a new one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tether.checkpoints.ledger import LedgerRow
from tether.graphs.registry import Scenario
from tether.graphs.session import RunResult, Session
from tether.graphs.state import Approve, Edit, Reject

__all__ = ["Played", "Scenario", "executed", "play", "proposed_rules"]

@dataclass(frozen=True, kw_only=True, slots=True)
class Played:
    scenario: Scenario
    thread_id: str
    result: RunResult
    rows: list[LedgerRow]
    problem: str | None
    seconds: float
    log: list[str] = field(default_factory=list)


def executed(rows: Sequence[LedgerRow], tool: str) -> list[LedgerRow]:
    return [r for r in rows if r.event == "executed" and r.tool == tool]


def proposed_rules(rows: Sequence[LedgerRow], tool: str) -> list[str]:
    return [r.rule_id or "" for r in rows if r.event == "proposed" and r.tool == tool]


def _decide_elsewhere(session: Session, approval_id: str, decision: Approve | Reject | Edit) -> str:
    import json

    cmd = [sys.executable, "-m", "tether.cli"]
    if isinstance(decision, Reject):
        cmd += ["reject", approval_id, "--reason", decision.reason]
    else:
        cmd += ["approve", approval_id]
        if isinstance(decision, Edit):
            cmd += ["--edit", json.dumps(decision.args)] + (["--tool", decision.tool] if decision.tool else [])
    cmd += ["--as", decision.approver]
    if session.home is None:
        raise RuntimeError("deciding in a new process needs a session opened with Session.open")
    env = {**os.environ, "TETHER_HOME": str(session.home.root)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[3:])}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


def play(session: Session, s: Scenario, *, thread_id: str) -> Played:
    """Run one scenario on ``thread_id`` and check it."""
    t0, log = time.perf_counter(), []
    requests = [s.request] if isinstance(s.request, str) else list(s.request)
    decisions = list(s.decisions)
    r = RunResult(thread_id=thread_id, outcome=None)
    for text in requests:
        r = session.run(text, thread_id=thread_id, subject=s.subject)
        while r.waiting_for and decisions:
            w, d = r.waiting_for[0], decisions.pop(0)
            log.append(f"paused: approval {w.approval_id} for {w.tool} ({w.rule_id}): {w.preview}")
            if s.in_new_process:
                log.append(f"deciding in a new process: {d.kind} by {d.approver}")
                log.append(_decide_elsewhere(session, w.approval_id, d))
                r = session.result(thread_id)
            else:
                log.append(f"{d.kind} by {d.approver}")
                r = session.decide(w.approval_id, d)
    rows = session.events(thread_id)
    return Played(scenario=s, thread_id=thread_id, result=r, rows=rows, problem=s.expect(r, rows),
                  seconds=time.perf_counter() - t0, log=log)
