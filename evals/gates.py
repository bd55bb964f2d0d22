"""Gates files: the regressions that block a change, checked by ``tether eval compare``.

    gates:
      - {metric: task_success, max_drop: 0.02}                 # absolute drop allowed (higher-is-better)
      - {metric: task_success, max_drop_pct: 5, profile: "*"}  # relative drop, every profile of both runs
      - {metric: process_integrity, min: 1.0}                  # absolute floor (``max``: ceiling)
      - {metric: unsafe_attempts, max_increase: 0}             # absolute rise allowed (lower-is-better)
      - {metric: cost_per_resolved_usd, max_increase_pct: 10}  # relative rise allowed
      - {metric: approvals_asked, max_increase: 0.05, significant: true}  # and the 95 % intervals are disjoint
      - {metric: task_success, per_task: true}                 # no task that passed may fail

Each gate has exactly one criterion; ``profile`` defaults to ``clean``. Unknown keys, unknown
metrics and criteria that do not fit the metric's direction are errors naming the key. The
JSON schema is ``tether/evals/gates.schema.json`` (``GatesFile.model_json_schema()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tether.errors import TetherError
from tether.evals.file_problems import validation_problems
from tether.evals.metrics import METRICS

__all__ = ["CRITERIA", "PER_TASK", "RELATIVE", "Gate", "GatesFile", "GatesFileError", "format_number", "load_gates"]

RELATIVE = ("max_drop", "max_drop_pct", "max_increase", "max_increase_pct")
CRITERIA = (*RELATIVE, "min", "max", "per_task")
PER_TASK = {"task_success": "success", "process_integrity": "integrity"}
"""Metrics a ``per_task`` gate can check, and the task field each reads."""


def format_number(v: float | None) -> str:
    """Four significant digits; ``-`` for no value."""
    if v is None or v != v:
        return "-"
    return f"{v:.4g}"


class GatesFileError(TetherError):
    """A gates file could not be loaded; nothing was compared."""

    def __init__(self, *, path: str, problems: Sequence[tuple[str, str]]) -> None:
        self.path = path
        self.problems = tuple(problems)
        self.key = self.problems[0][0] if self.problems else "<file>"
        lines = "\n".join(f"  - {k}: {r}" for k, r in self.problems)
        super().__init__(f"invalid gates file {path}: {len(self.problems)} problem(s)\n{lines}\n"
                         "Fix the keys above (schema: tether/evals/gates.schema.json) and compare again.")



# ---------------------------------------------------------------- the gates file


def _given(value: object) -> bool:
    return value is not None and value is not False  # 0 is a limit, not an absent one


class Gate(BaseModel):
    """One regression that blocks a change. Exactly one criterion per gate."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    metric: str = Field(description="a metric of the results file, e.g. task_success")
    profile: str = Field(default="clean", description='a fault profile of the suite, "clean", or "*" for every '
                                                      "profile present in both runs")
    max_drop: float | None = Field(default=None, ge=0, description="higher-is-better: absolute drop allowed")
    max_drop_pct: float | None = Field(default=None, ge=0, description="higher-is-better: drop allowed, "
                                                                       "in % of the baseline value")
    max_increase: float | None = Field(default=None, ge=0, description="lower-is-better: absolute rise allowed")
    max_increase_pct: float | None = Field(default=None, ge=0, description="lower-is-better: rise allowed, "
                                                                           "in % of the baseline value")
    min: float | None = Field(default=None, description="the candidate's value must be at least this")
    max: float | None = Field(default=None, description="the candidate's value must be at most this")
    per_task: bool = Field(default=False, description="task_success or process_integrity: breach when any "
                                                      "task that held in the baseline fails in the candidate")
    significant: bool = Field(default=False, description="with a max_drop/max_increase criterion: breach only "
                                                         "when the two 95 % intervals do not overlap")
    note: str | None = Field(default=None, description="why this gate exists (shown in the report)")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; use one of {', '.join(METRICS)}")
        return v

    @model_validator(mode="after")
    def _one_criterion(self) -> Gate:
        given = [k for k in CRITERIA if _given(getattr(self, k))]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(CRITERIA)} (got {', '.join(given) or 'none'})")
        kind, better = given[0], METRICS[self.metric]
        if kind.startswith("max_drop") and better != "higher":
            raise ValueError(f"{kind} is for higher-is-better metrics; {self.metric} is lower-is-better: "
                             "use max_increase or max_increase_pct")
        if kind.startswith("max_increase") and better != "lower":
            raise ValueError(f"{kind} is for lower-is-better metrics; {self.metric} is higher-is-better: "
                             "use max_drop or max_drop_pct")
        if kind == "per_task" and self.metric not in PER_TASK:
            raise ValueError(f"per_task works with {' and '.join(PER_TASK)}, not {self.metric}")
        if self.significant and kind not in RELATIVE:
            raise ValueError(f"significant applies to {', '.join(RELATIVE)}, not to {kind}")
        return self

    @property
    def criterion(self) -> str:
        return next(k for k in CRITERIA if _given(getattr(self, k)))

    def describe(self) -> str:
        kind = self.criterion
        if kind == "per_task":
            return f"{self.metric} per task"
        text = f"{self.metric} {kind} {format_number(getattr(self, kind))}"
        return text + (" (significant)" if self.significant else "")


class GatesFile(BaseModel):
    """A gates file: the list of gates a candidate run must pass."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    description: str | None = None
    gates: tuple[Gate, ...] = Field(min_length=1, strict=False, description="the gates; a YAML list")


def load_gates(path: str | Path) -> GatesFile:
    """Read and validate a gates file (YAML or JSON); raises ``GatesFileError`` naming each bad key."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GatesFileError(path=str(p), problems=[("<file>", f"cannot read: {exc.strerror}")]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GatesFileError(path=str(p), problems=[("<file>", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise GatesFileError(path=str(p), problems=[("<root>", "expected a mapping with a 'gates' list")])
    try:
        return GatesFile.model_validate(data)
    except ValidationError as err:
        raise GatesFileError(path=str(p), problems=[(q.key, q.reason) for q in validation_problems(err, GatesFile)]) from None
