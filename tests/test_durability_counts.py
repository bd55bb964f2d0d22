"""What governance adds in fdatasync calls, counted with strace (deterministic, so asserted).

For each request type the governed support desk and its bare LangGraph twin (same graph shape,
models, tools, business database and SQLite-file checkpointer; ``bench/bare.py``) run one request
after a warm-up; ``bench/counters.py`` counts the calls between two markers. Governance may add
no fdatasync to a read-only request and at most one to a request that writes (the intent,
synced before the side effect), including one that pauses for an approval and is decided.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is not installed (apt-get install strace)")


@cache
def counters() -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(BENCH / "counters.py"), "--json"], capture_output=True, text=True,
                         timeout=600, check=True)
    return dict(json.loads(out.stdout))


def test_a_read_only_request_adds_no_fdatasync() -> None:
    row = counters()["read"]
    assert row["governed"]["status"] == "resolved" and row["bare"]["status"] == "resolved"
    assert row["added_fdatasync"] == 0, row["governed"]["fdatasync_by_file"]
    assert "ledger.sqlite-wal" not in row["governed"]["fdatasync_by_file"]


@pytest.mark.parametrize("kind", ["write", "approval"])
def test_a_write_adds_at_most_one_fdatasync(kind: str) -> None:
    row = counters()[kind]
    assert row["governed"]["status"] == "resolved"
    assert row["added_fdatasync"] <= 1, (row["governed"]["fdatasync_by_file"], row["bare"]["fdatasync_by_file"])
    assert row["governed"]["fdatasync_by_file"].get("ledger.sqlite-wal") == 1


@pytest.mark.parametrize("kind", ["write", "approval"])
def test_the_intent_is_on_disk_before_the_side_effect(kind: str) -> None:
    order = counters()[kind]["governed"]["order"]
    world = [i for i, e in enumerate(order) if e.startswith("write world/")]
    synced = [i for i, e in enumerate(order) if e == "sync ledger.sqlite-wal"]
    assert world and synced, order
    assert synced[0] < world[0], "the business database was written before the ledger's intent was synced"
