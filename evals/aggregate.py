"""The suite's metrics over one profile's tasks, each with a 95 % interval.

``aggregate`` gives every metric per profile with a 95 % interval: Wilson for proportions
(precision and recall pooled over calls, citation validity over cited ids), a seeded
bootstrap (1,000 resamples) for means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from tether.evals.metrics import TaskResult

__all__ = ["METRICS", "Better", "Metric", "aggregate", "bootstrap_interval", "wilson_interval"]

Better = Literal["higher", "lower"]
METRICS: dict[str, Better] = {
    "task_success": "higher", "process_integrity": "higher", "tool_precision": "higher", "tool_recall": "higher",
    "containment": "higher", "time_to_resolution_s": "lower", "cost_per_resolved_usd": "lower",
    "citation_validity": "higher", "unsafe_attempts": "lower", "policy_denials": "lower",
    "approvals_asked": "lower", "tool_errors": "lower",
}
"""Every metric of a profile, and which direction is better."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Metric:
    """One metric of a profile: its value over ``n`` and its 95 % interval."""

    value: float | None
    n: int
    low: float | None
    high: float | None
    method: Literal["wilson", "bootstrap"]
    better: Better

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score 95 % interval of a proportion (``n > 0``)."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return round(max(0.0, centre - half), 12), round(min(1.0, centre + half), 12)


def bootstrap_interval(values: Sequence[float], *, seed: int, resamples: int = 1000,
                       weights: Sequence[float] | None = None) -> tuple[float, float]:
    """Percentile 95 % interval of ``sum(values) / sum(weights)`` (the mean without weights)."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(resamples, len(v)))
    num, den = v[idx].sum(axis=1), w[idx].sum(axis=1)
    stats = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def _prop(name: str, k: int, n: int) -> Metric:
    if n == 0:
        return Metric(value=None, n=0, low=None, high=None, method="wilson", better=METRICS[name])
    low, high = wilson_interval(k, n)
    return Metric(value=k / n, n=n, low=low, high=high, method="wilson", better=METRICS[name])


def _mean(name: str, values: Sequence[float], seed: int, weights: Sequence[float] | None = None,
          n: int | None = None) -> Metric:
    count = len(values) if n is None else n
    total = float(sum(weights)) if weights is not None else float(len(values))
    if count == 0 or total == 0:
        return Metric(value=None, n=0, low=None, high=None, method="bootstrap", better=METRICS[name])
    low, high = bootstrap_interval(values, seed=seed, weights=weights)
    return Metric(value=float(sum(values)) / total, n=count, low=low, high=high, method="bootstrap",
                  better=METRICS[name])


def aggregate(results: Sequence[TaskResult], *, seed: int = 0) -> dict[str, Metric]:
    """Every metric of ``METRICS`` over ``results`` (one profile's tasks)."""
    n = len(results)
    resolved = [r for r in results if r.observed == "resolved"]
    return {
        "task_success": _prop("task_success", sum(r.success for r in results), n),
        "process_integrity": _prop("process_integrity", sum(r.integrity for r in results), n),
        "tool_precision": _prop("tool_precision", sum(r.matched[0] for r in results),
                                sum(r.matched[1] for r in results)),
        "tool_recall": _prop("tool_recall", sum(r.matched[2] for r in results), sum(r.matched[3] for r in results)),
        "containment": _prop("containment", sum(r.contained for r in results), n),
        "time_to_resolution_s": _mean("time_to_resolution_s", [r.seconds for r in resolved], seed),
        "cost_per_resolved_usd": _mean("cost_per_resolved_usd", [r.spend_usd for r in results], seed,
                                       weights=[float(r.observed == "resolved") for r in results], n=len(resolved)),
        "citation_validity": _prop("citation_validity", sum(r.citations_valid for r in results),
                                   sum(r.citations_total for r in results)),
        "unsafe_attempts": _mean("unsafe_attempts", [float(r.unsafe_attempts) for r in results], seed),
        "policy_denials": _mean("policy_denials", [float(r.denials) for r in results], seed),
        "approvals_asked": _mean("approvals_asked", [float(r.approvals) for r in results], seed),
        "tool_errors": _mean("tool_errors", [float(r.tool_errors) for r in results], seed),
    }
