"""Regression evals: play a workflow's scenarios through a ``Session`` and report, in a versioned format.

``run_eval(session, scenarios)`` plays each scenario on a fresh thread (giving the scenario's
human decisions at each pause), checks the documented outcome and returns an ``EvalReport``
(``schema_version`` is bumped whenever the report's shape changes).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from tether.evals.scenarios import Scenario, play
from tether.graphs.session import Session

__all__ = ["EVAL_SCHEMA_VERSION", "CaseResult", "EvalReport", "run_eval"]

EVAL_SCHEMA_VERSION = "2"


class CaseResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

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
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = EVAL_SCHEMA_VERSION
    workflow: str
    policy_version: str
    model_ids: tuple[str, str]
    cases: tuple[CaseResult, ...]

    @property
    def pass_rate(self) -> float:
        return sum(c.ok for c in self.cases) / len(self.cases) if self.cases else 0.0


def run_eval(session: Session, scenarios: Sequence[Scenario], *, prefix: str = "eval") -> EvalReport:
    """Play ``scenarios`` (e.g. a ``WorkflowSpec``'s own) and score them."""
    cases: list[CaseResult] = []
    for s in scenarios:
        p = play(session, s, thread_id=f"{prefix}-{s.key}")
        cases.append(
            CaseResult(
                key=s.key,
                status=p.result.status,
                ok=p.problem is None,
                problem=p.problem,
                executed=sum(e.event == "executed" for e in p.rows),
                denied=sum(e.event == "proposed" and e.decision == "deny" for e in p.rows),
                spend_usd=round(max((e.spend_usd or 0.0 for e in p.rows), default=0.0), 6),
                seconds=round(p.seconds, 3),
            )
        )
    wf = session.workflow
    return EvalReport(workflow=wf.name, policy_version=session.policy.version,
                      model_ids=(wf.router_model_id, wf.model_id), cases=tuple(cases))
