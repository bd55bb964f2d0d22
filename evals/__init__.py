"""Offline regression evals with versioned reports."""

from tether.evals.runner import EVAL_SCHEMA_VERSION, CaseResult, EvalReport, run_eval

__all__ = ["EVAL_SCHEMA_VERSION", "CaseResult", "EvalReport", "run_eval"]
