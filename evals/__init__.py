"""Offline regression evals with versioned reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.evals.runner import EVAL_SCHEMA_VERSION, CaseResult, EvalReport, run_eval

__all__ = ["EVAL_SCHEMA_VERSION", "CaseResult", "EvalReport", "run_eval"]


def __getattr__(name: str) -> Any:  # imported on first use: the CLI's other commands stay fast
    if name in __all__:
        from tether.evals import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'tether.evals' has no attribute {name!r}")
