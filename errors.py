"""Errors raised by tether.

Every error carries the fields a caller needs to act on it and says what to do next.
A denied action or an exceeded budget is *not* an error: it is a normal, recorded outcome
(see ``tether.guards.decisions`` and ``tether.guards.budgets``).

    TetherError
    ├── PolicyFileError      a policy file does not parse or does not validate
    ├── ConfigError          a setting (model id, backend URL, data dir) is unusable
    │   └── MissingExtra     an optional dependency group is not installed
    ├── ToolError            a tool refused or failed (business rule, missing row, timeout)
    ├── ApprovalError        an approval cannot be decided as asked (unknown, decided, expired,
    │   │                    its thread cannot be resumed here, an edit that does not validate)
    │   ├── InvalidDecision  a resume payload is not a decision
    │   └── DecisionConflict a decision differs from the one already recorded
    ├── WorkflowError        a workflow is unknown, or cannot be built as configured
    └── LedgerError          the ledger cannot be opened or written
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ApprovalError",
    "ConfigError",
    "DecisionConflict",
    "InvalidDecision",
    "LedgerError",
    "MissingExtra",
    "PolicyFileError",
    "PolicyProblem",
    "TetherError",
    "ToolError",
    "WorkflowError",
]


class TetherError(Exception):
    """Base class of every error tether raises on purpose."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyProblem:
    """One problem found in a policy file (or any other strictly loaded file: suites, gates)."""

    key: str
    """Dotted path of the offending key, e.g. ``tools.issue_refund.max_amount_usd``."""
    reason: str
    """What is wrong and what to write instead."""
    line: int | None = None
    """1-based line in the file, when known."""

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.key}{where}: {self.reason}"


class PolicyFileError(TetherError):
    """A policy file could not be loaded. Nothing was enforced from it."""

    def __init__(self, *, path: str, problems: Sequence[PolicyProblem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else PolicyProblem(key="<file>", reason="?")
        self.key = first.key
        self.reason = first.reason
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"invalid policy file {path}: {len(self.problems)} problem(s)\n{lines}\n"
            "Fix the keys above; run `tether policy check FILE` to re-check."
        )


class ConfigError(TetherError):
    """A configuration value is unusable."""

    def __init__(self, *, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"{setting}: {reason}")


class MissingExtra(ConfigError):
    """An optional feature needs an extra that is not installed."""

    def __init__(self, *, extra: str, feature: str) -> None:
        self.extra = extra
        super().__init__(
            setting=feature,
            reason=f"needs the '{extra}' extra: from a tether checkout, pip install '.[{extra}]'",
        )


class ToolError(TetherError):
    """A tool refused the call or failed. The model sees ``code``, ``message`` and ``hint``."""

    def __init__(self, *, code: str, message: str, hint: str = "", retryable: bool = False) -> None:
        self.code = code
        self.message = message
        self.hint = hint
        self.retryable = retryable
        super().__init__(f"[{code}] {message}" + (f" Hint: {hint}" if hint else ""))


class ApprovalError(TetherError):
    """An approval cannot be decided as asked."""

    def __init__(self, *, approval_id: str, reason: str) -> None:
        self.approval_id = approval_id
        self.reason = reason
        super().__init__(f"approval {approval_id}: {reason}")


class InvalidDecision(ApprovalError):
    """A resume payload is not a human decision. Nothing was recorded."""

    def __init__(self, *, payload: str, reason: str, accepted: str, approval_id: str = "?") -> None:
        self.payload = payload
        self.accepted = accepted
        super().__init__(
            approval_id=approval_id,
            reason=f"resume payload {payload} is not a decision ({reason}); send one of {accepted}",
        )


class DecisionConflict(ApprovalError):
    """A decision arrived for an approval that already has a different one recorded."""

    def __init__(self, *, approval_id: str, recorded: str, offered: str) -> None:
        self.recorded = recorded
        self.offered = offered
        super().__init__(
            approval_id=approval_id,
            reason=f"already {recorded}; the decision sent now ({offered}) was not applied",
        )


class WorkflowError(TetherError):
    """A workflow is unknown or cannot be built."""

    def __init__(self, *, workflow: str, reason: str) -> None:
        self.workflow = workflow
        self.reason = reason
        super().__init__(f"workflow {workflow!r}: {reason}")


class LedgerError(TetherError):
    """The ledger cannot be opened or written."""

    def __init__(self, *, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"ledger {url}: {reason}")
