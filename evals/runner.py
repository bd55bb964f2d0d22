"""Offline regression evals: play scenarios through a desk and report, in a versioned format.

``run_eval(desk, scenarios)`` runs each scenario on a fresh thread, approves any pause as a
support lead would (scenarios that expect approvals), checks the documented outcome and
returns an ``EvalReport`` (``schema_version`` is bumped whenever the report's shape changes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from tether.agents.support.demo import SCENARIOS, Scenario
from tether.agents.support.desk import SupportDesk
from tether.graphs.state import Approve

__all__ = ["EVAL_SCHEMA_VERSION", "CaseResult", "EvalReport", "run_eval"]

EVAL_SCHEMA_VERSION = "1"


class CaseResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    status: str
    ok: bool
    problem: str | None
    executed: int
    """Actions executed in the case's thread."""
    denied: int
    """Proposals the policy denied."""
    spend_usd: float
    seconds: float


class EvalReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: str = EVAL_SCHEMA_VERSION
    policy_version: str
    model_ids: tuple[str, str]
    cases: tuple[CaseResult, ...]

    @property
    def pass_rate(self) -> float:
        return sum(c.ok for c in self.cases) / len(self.cases) if self.cases else 0.0


def run_eval(
    desk: SupportDesk, scenarios: Sequence[Scenario] = SCENARIOS, *, prefix: str = "eval"
) -> EvalReport:
    cases: list[CaseResult] = []
    for s in scenarios:
        thread = f"{prefix}-{s.key}"
        t0 = time.perf_counter()
        r = desk.run(s.request, customer_id=s.customer, thread_id=thread)
        while r.waiting_for and s.approve_in_new_process:
            desk.decide(r.waiting_for[0].approval_id, Approve(approver="eval-lead"))
            r = desk.resume(thread)
        rows = desk.ledger.events(thread)
        problem = s.expect(r, rows)
        spend = max((e.spend_usd or 0.0 for e in rows), default=0.0)
        cases.append(
            CaseResult(
                key=s.key,
                status=r.status,
                ok=problem is None,
                problem=problem,
                executed=sum(e.event == "executed" for e in rows),
                denied=sum(e.event == "proposed" and e.decision == "deny" for e in rows),
                spend_usd=round(spend, 6),
                seconds=round(time.perf_counter() - t0, 3),
            )
        )
    wf = desk.workflow
    return EvalReport(
        policy_version=desk.policy.version, model_ids=(wf.router_model_id, wf.model_id), cases=tuple(cases)
    )
