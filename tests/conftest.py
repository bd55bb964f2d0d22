"""Shared fixtures: a fresh data directory and support desk per test, offline models only."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.agents.support.desk import SupportDesk
from tether.config import Home
from tether.models import ModelConfig

# test modules share tests/helpers.py (tests/ is not a package: import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parent))

# No test may reach a real provider: make any accidental OpenAI call fail fast.
os.environ.pop("OPENAI_API_KEY", None)
os.environ["OPENAI_BASE_URL"] = "http://127.0.0.1:9/unreachable"
for var in ("TETHER_HOME", "TETHER_MODEL", "TETHER_ROUTER_MODEL", "TETHER_LEDGER_URL", "TETHER_CHECKPOINT_URL",
            "TETHER_LIMITS_URL"):
    os.environ.pop(var, None)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(root=tmp_path / "home").ensure()


@pytest.fixture
def desk(home: Home) -> Iterator[SupportDesk]:
    with SupportDesk(home=home, models=ModelConfig()) as d:
        yield d


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse a run that collected fewer tests than CI expects (TETHER_MIN_TESTS)."""
    minimum = int(os.environ.get("TETHER_MIN_TESTS", "0"))
    if minimum and len(session.items) < minimum:
        raise pytest.UsageError(
            f"only {len(session.items)} tests collected, expected at least {minimum}: "
            "a test module failed to import or was skipped wholesale"
        )
