"""``make bench`` on tiny sizes, so the harness cannot rot (nothing here asserts a speed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_the_benchmark_runs_every_quick_section_and_ends_with_the_overhead_line() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--scale", "tiny", "--only", "cycle", "policy",
                          "ledger", "scaling", "evals", "routing", "workers"],
                         capture_output=True, text=True, timeout=1200, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"governance overhead: \d+\.\d\d", lines[-1]), lines[-5:]
    for section in ("cycle", "policy", "ledger", "scaling", "evals", "routing", "workers"):
        assert any(line.startswith(f"== {section} (") for line in lines), section
    assert "sections that failed" not in out.stdout
