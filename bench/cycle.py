"""Governed cycle vs the same graph shape in bare LangGraph, with the same checkpointer.

Each round builds both sides on fresh data directories, warms them up with one request of every
type, then runs the request types interleaved (governed, bare, governed, bare, ...). Reported:
the median time per request on each side and the median over rounds of the paired ratio
governed / bare (same round, same request type). Peak RSS comes from one child process per side.

    python bench/cycle.py [--scale tiny|full]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import KINDS, Kind, Saver, Side  # noqa: E402

SCALES = {"tiny": {"rounds": 1, "per_kind": 1, "rss_requests": 3},
          "full": {"rounds": 5, "per_kind": 6, "rss_requests": 60}}


def _kinds(saver: Saver) -> tuple[Kind, ...]:
    return tuple(k for k in KINDS if saver != "none" or k != "approval")


def _round(saver: Saver, per_kind: int, pg_url: str | None) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {k: {"governed": [], "bare": []} for k in _kinds(saver)}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {name: Side(governed=name == "governed", saver=saver, root=Path(tmp) / name, pg_url=pg_url)
                 for name in ("governed", "bare")}
        try:
            for side in sides.values():
                for k in _kinds(saver):
                    side.request(k)  # warm-up: imports, caches, files
            for _ in range(per_kind):
                for k in _kinds(saver):
                    for name, side in sides.items():
                        side.reset()
                        t0 = time.perf_counter()
                        side.request(k)
                        times[k][name].append(time.perf_counter() - t0)
        finally:
            for side in sides.values():
                side.close()
    return times


def overhead(scale: str = "full", savers: tuple[Saver, ...] = ("none", "memory", "sqlite"),
             pg_url: str | None = None) -> dict[str, Any]:
    """``{saver: {kind: {governed_ms, bare_ms, ratio}}}``, ratios as medians of paired ratios."""
    cfg = SCALES[scale]
    out: dict[str, Any] = {}
    for saver in savers:
        per: dict[str, dict[str, list[float]]] = {k: {"governed": [], "bare": [], "ratio": []}
                                                  for k in _kinds(saver)}
        for _ in range(cfg["rounds"]):
            for k, t in _round(saver, cfg["per_kind"], pg_url).items():
                g, b = statistics.median(t["governed"]), statistics.median(t["bare"])
                per[k]["governed"].append(g)
                per[k]["bare"].append(b)
                per[k]["ratio"].append(g / b)
        out[saver] = {k: {"governed_ms": statistics.median(v["governed"]) * 1000,
                          "bare_ms": statistics.median(v["bare"]) * 1000,
                          "ratio": statistics.median(v["ratio"])} for k, v in per.items()}
    return out


def peak_rss(scale: str = "full", saver: Saver = "sqlite") -> dict[str, float]:
    """Peak resident memory (MB) of a process running the request mix, per side, and the ratio."""
    n = SCALES[scale]["rss_requests"]
    got: dict[str, float] = {}
    for name in ("governed", "bare"):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, "--rss-child", name, saver, str(n), tmp],
                                 capture_output=True, text=True, timeout=900, check=True)
            got[f"{name}_mb"] = float(out.stdout.strip().splitlines()[-1])
    got["ratio"] = got["governed_mb"] / got["bare_mb"]
    return got


def _rss_child(name: str, saver: Saver, n: int, root: str) -> None:
    side = Side(governed=name == "governed", saver=saver, root=Path(root) / "home")
    for i in range(n):
        side.reset()
        side.request(_kinds(saver)[i % len(_kinds(saver))])
    side.close()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="full", choices=list(SCALES))
    ap.add_argument("--rss-child", nargs=4)
    a = ap.parse_args()
    if a.rss_child:
        name, saver, n, root = a.rss_child
        _rss_child(name, saver, int(n), root)  # type: ignore[arg-type]
        return
    pg = os.environ.get("TETHER_TEST_PG_URL")
    savers: tuple[Saver, ...] = ("none", "memory", "sqlite", "postgres") if pg else ("none", "memory", "sqlite")
    print(json.dumps({"overhead": overhead(a.scale, savers, pg), "rss": peak_rss(a.scale)}, indent=2))


if __name__ == "__main__":
    main()
