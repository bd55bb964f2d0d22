"""SLOs and error budgets over runs: the file format, the indicators and the budget math.

An SLO file lists objectives; each is judged over its own window ending at the report's end.
Budget spent = bad / total / (1 - objective): ``ok``, ``at risk`` (>= 75 %), ``exhausted`` (> 100 %).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tether.errors import ConfigError
from tether.evals.file_problems import validation_problems
from tether.evals.ops_runs import RunSummary, _ts, parse_span

__all__ = ["INDICATORS", "SloFile", "SloSpec", "SloStatus", "evaluate_slos", "load_slos"]


INDICATORS: dict[str, str] = {
    "no_tool_error": "runs without a tool error, over all runs",
    "finished": "runs that ended by the workflow's own rules (resolved or escalated), over runs "
                "not waiting for an approval",
    "resolved": "runs resolved with an answer, over runs not waiting for an approval",
    "latency": "finished runs whose start-to-end time is at most threshold_s, over finished runs",
    "no_unsafe": "runs without an unsafe attempt (policy denial, refusal at execution, flagged "
                 "output), over all runs",
    "no_denial": "runs without a policy denial, over all runs",
    "cost": "runs whose spend is at most threshold_usd, over all runs",
}
"""The SLO indicators: each divides runs into good ones and all the ones that count."""

_THRESHOLD = {"latency": "threshold_s", "cost": "threshold_usd"}


class SloSpec(BaseModel):
    """One service level objective: ``objective`` of the counted runs in ``window`` are good."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    indicator: str
    objective: float = Field(gt=0, lt=1)
    window: str = "7d"
    threshold_s: float | None = Field(default=None, gt=0)
    threshold_usd: float | None = Field(default=None, gt=0)
    description: str = ""

    @field_validator("indicator")
    @classmethod
    def _indicator(cls, v: str) -> str:
        if v not in INDICATORS:
            raise ValueError(f"unknown indicator {v!r}; use one of {', '.join(INDICATORS)}")
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        try:
            parse_span(v, setting="window")
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> SloSpec:
        need = _THRESHOLD.get(self.indicator)
        for key in _THRESHOLD.values():
            if key == need and getattr(self, key) is None:
                raise ValueError(f"indicator {self.indicator} needs {key}")
            if key != need and getattr(self, key) is not None:
                raise ValueError(f"{key} applies only to indicator "
                                 f"{next(k for k, v in _THRESHOLD.items() if v == key)}")
        return self

    def good(self, r: RunSummary) -> bool | None:
        """Whether a run is good for this SLO; ``None``: the run does not count."""
        i = self.indicator
        if i in ("finished", "resolved") and r.outcome == "waiting":
            return None
        if i == "latency":
            return None if r.latency_s is None else r.latency_s <= float(self.threshold_s or 0)
        return {"no_tool_error": r.tool_errors == 0, "finished": r.outcome in ("resolved", "escalated"),
                "resolved": r.outcome == "resolved", "no_unsafe": r.unsafe == 0,
                "no_denial": r.denials == 0, "cost": r.spend_usd <= float(self.threshold_usd or 0)}[i]


class SloFile(BaseModel):
    """An SLO file: ``slos:`` a list of ``SloSpec`` with distinct names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slos: tuple[SloSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SloFile:
        seen = Counter(s.name for s in self.slos)
        dup = [n for n, c in seen.items() if c > 1]
        if dup:
            raise ValueError(f"SLO names must differ; repeated: {', '.join(dup)}")
        return self


def load_slos(path: str) -> tuple[SloSpec, ...]:
    """Read and validate an SLO file (YAML); every problem names its key."""
    from pathlib import Path

    import yaml

    where = f"SLO file {path}"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(setting=where, reason=f"cannot be read ({exc.strerror or exc}); give an "
                          "existing YAML file with a top-level 'slos:' list") from None
    except yaml.YAMLError as exc:
        raise ConfigError(setting=where, reason=f"is not valid YAML: {exc}") from None
    try:
        return SloFile.model_validate(data).slos
    except ValidationError as exc:
        problems = [f"{q.key}: {q.reason.rstrip('.')}" for q in validation_problems(exc, SloFile)]
        raise ConfigError(setting=where, reason="; ".join(problems)) from None


@dataclass(frozen=True, kw_only=True, slots=True)
class SloStatus:
    """An SLO judged over its window: attainment, error budget and how fast it burns."""

    name: str
    indicator: str
    objective: float
    window: str
    good: int
    total: int
    attainment: float | None
    error_budget: float
    """1 - objective: the fraction of counted runs allowed to be bad."""
    budget_spent: float
    """Bad fraction / error budget over the window: above 1 the budget is exhausted."""
    burn_rate: float | None
    """Bad fraction / error budget over the last ``burn_window_s`` only (1: on pace to spend
    exactly the budget; ``None``: no counted run then)."""
    burn_window_s: float
    status: str
    """ok, at risk (>= 75 % spent), exhausted (> 100 %) or no data."""


def _judge(slo: SloSpec, runs: Sequence[RunSummary], *, end: datetime, lookback: timedelta) -> SloStatus:
    window = parse_span(slo.window, setting="window")
    lookback = min(lookback, window)
    verdicts = [(v, _ts(r.started_at)) for r in runs if end - window <= _ts(r.started_at) <= end
                and (v := slo.good(r)) is not None]
    good, total = sum(v for v, _ in verdicts), len(verdicts)
    recent = [v for v, t in verdicts if t >= end - lookback]
    budget = 1 - slo.objective
    spent = (total - good) / total / budget if total else 0.0
    burn = (len(recent) - sum(recent)) / len(recent) / budget if recent else None
    status = "no data" if not total else "exhausted" if spent > 1 else "at risk" if spent >= 0.75 else "ok"
    return SloStatus(name=slo.name, indicator=slo.indicator, objective=slo.objective, window=slo.window,
                     good=good, total=total, attainment=good / total if total else None,
                     error_budget=budget, budget_spent=spent, burn_rate=burn,
                     burn_window_s=lookback.total_seconds(), status=status)


def evaluate_slos(slos: Sequence[SloSpec], runs: Sequence[RunSummary], *, end: datetime,
                  lookback: timedelta) -> tuple[SloStatus, ...]:
    """Each SLO over the runs that started in its window ending at ``end``; the burn rate over
    the last ``lookback`` of it."""
    return tuple(_judge(s, runs, end=end, lookback=lookback) for s in slos)


