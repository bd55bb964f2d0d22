"""Where tether keeps its state: one data directory, ``$TETHER_HOME`` (default ``./.tether``).

Everything a run writes lives under it: LangGraph checkpoints, the action ledger, rate-limit
state, and whatever a workflow keeps there (its indexes, a database copy). With
``TETHER_LEDGER_URL``, ``TETHER_CHECKPOINT_URL`` (and optionally ``TETHER_LIMITS_URL``) on
PostgreSQL, the run state lives there instead and many workers can share it. Pass ``Home``
explicitly; nothing reads a process-wide default except ``Home.from_env()``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Home"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Home:
    """The data directory and the files inside it."""

    root: Path
    """The directory itself."""

    @classmethod
    def from_env(cls) -> Home:
        return cls(root=Path(os.environ.get("TETHER_HOME") or ".tether").resolve())

    def ensure(self) -> Home:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def checkpoints(self) -> Path:
        """LangGraph's SQLite checkpointer file."""
        return self.root / "checkpoints.sqlite"

    @property
    def ledger(self) -> Path:
        """The action ledger (SQLite)."""
        return self.root / "ledger.sqlite"

    @property
    def ledger_url(self) -> str:
        return os.environ.get("TETHER_LEDGER_URL") or f"sqlite:///{self.ledger}"

    @property
    def checkpoint_url(self) -> str:
        return os.environ.get("TETHER_CHECKPOINT_URL") or f"sqlite:///{self.checkpoints}"

    @property
    def limits(self) -> Path:
        """Rate-limit and circuit-breaker state (SQLite), when not kept in PostgreSQL."""
        return self.root / "limits.sqlite"

    @property
    def limits_url(self) -> str:
        """``TETHER_LIMITS_URL``; else the ledger's URL when the ledger is on PostgreSQL (workers
        sharing a ledger then share limits too); else ``limits.sqlite`` in this directory."""
        explicit = os.environ.get("TETHER_LIMITS_URL")
        if explicit:
            return explicit
        ledger = self.ledger_url
        if ledger.startswith(("postgresql://", "postgres://")):
            return ledger
        return f"sqlite:///{self.limits}"
