"""The regression suites the support and IT desks ship, run through ``tether eval run``.

Each suite is played once through the real command line (``tether eval run NAME``, recording
a fresh cassette; the support suite with two worker processes); every task must pass in the
clean run with process integrity, and nothing a task forbids may execute. The fresh recording
must equal the shipped cassette exchange for exchange (the shipped cassette is current), and
replaying the shipped cassette must give the same per-task results as the offline models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tether.evals.cassette import Cassette
from tether.evals.suite import Suite, load_suite
from tether.graphs.registry import find_workflow

WORKFLOWS = {"support": 60, "itdesk": 30}
"""Shipped suite -> the fewest tasks it must have."""
JOBS = {"support": 2, "itdesk": 1}
"""Worker processes per offline run: support records from two workers into one cassette; the two
suites run side by side, so more would only oversubscribe a small CI machine."""
REPLAYED = 2
"""Tasks per category replayed from the shipped cassette (the first ones of each category)."""


def _suite(name: str) -> Suite:
    spec = find_workflow(name)
    assert spec.suite is not None, f"{name} ships no suite"
    return load_suite(spec.suite)


def _cassette(name: str) -> Path:
    spec = find_workflow(name)
    assert spec.suite is not None
    return spec.suite.with_name("suite.cassette.jsonl")


def _replayed(name: str) -> list[str]:
    """The tasks replayed from the shipped cassette: the first ones of each category (timeouts
    wait for real, so none of those), and one with a human decision."""
    suite = _suite(name)
    quick = [t for t in suite.tasks if t.profile is None or all(f.kind != "timeout" for f in t.profile.faults)]
    chosen: list[str] = []
    for category in ("ordinary", "edge", "adversarial", "faulted"):
        chosen += [t.id for t in quick if t.category == category][:REPLAYED]
    return chosen + [t.id for t in suite.tasks if t.decisions and t.id not in chosen][:1]


def _start(home: Path, argv: list[str]) -> subprocess.Popen[str]:
    """``tether eval run ARGV`` in a new process with its own data directory."""
    home.mkdir(parents=True)
    env = {**os.environ, "TETHER_HOME": str(home)}
    cmd = [sys.executable, "-m", "tether.cli", "eval", "run", *argv, "--no-progress", "--out", str(home / "out.json")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _per_task(results: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(t["profile"], t["id"]): (t["observed"], t["success"], t["problems"], t["calls"], t["spend_usd"],
                                      t["citations_valid"], t["citations_total"])
            for t in results["tasks"]}


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    code: int
    output: str
    results: dict[str, Any]
    home: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Run]:
    """Each shipped suite played once with the offline models (recording a cassette), and a
    sample of its tasks replayed from the shipped cassette: four runs at the same time."""
    root = tmp_path_factory.mktemp("shipped-suites")
    argv: dict[tuple[str, str], list[str]] = {}
    for name in WORKFLOWS:
        argv[name, "offline"] = [name, "--jobs", str(JOBS[name]), "--record", str(root / f"{name}-recorded.jsonl")]
        argv[name, "replay"] = [name, "--jobs", "1", "--model", f"replay:{_cassette(name)}",
                                *(a for i in _replayed(name) for a in ("--task", i))]
    procs = {k: _start(root / "-".join(k), a) for k, a in argv.items()}
    out = {}
    for k, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        home = root / "-".join(k)
        found = home / "out.json"
        results = json.loads(found.read_text(encoding="utf-8")) if found.is_file() else {}
        out[k] = Run(code=proc.returncode, output=output, results=results, home=home)
    return out


@pytest.mark.parametrize("name", WORKFLOWS)
def test_suite_mix(name: str) -> None:
    suite = _suite(name)
    n = len(suite.tasks)
    assert n >= WORKFLOWS[name]
    mix = Counter(t.category for t in suite.tasks)
    assert set(mix) == {"ordinary", "edge", "adversarial", "faulted"}, mix
    assert mix["ordinary"] / n >= 0.4, mix
    assert all(mix[c] / n >= 0.1 for c in ("edge", "adversarial", "faulted")), mix
    assert all(t.workflow == name for t in suite.tasks)
    for t in suite.tasks:
        if t.category == "faulted":
            assert t.profile is not None, f"{t.id}: a faulted task names a fault profile"
        if t.category == "adversarial":
            assert t.expect.forbidden, f"{t.id}: an adversarial task says what must not execute"
        assert t.expect.calls or t.expect.forbidden or t.expect.answer_contains, f"{t.id}: expects nothing checkable"
    unused = [k for k, v in suite.fault_profiles.items() if not any(t.profile is v for t in suite.tasks)]
    assert not unused, f"fault profiles no task uses: {unused}"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_clean_run_passes(name: str, runs: dict[tuple[str, str], Run]) -> None:
    run = runs[name, "offline"]
    assert run.results, run.output
    failed = [(t["id"], t["problems"]) for t in run.results["tasks"] if not t["success"]]
    assert run.code == 0 and not failed, failed or run.output
    results = run.results
    assert results["profiles"] == ["clean"] and results["run"]["jobs"] == JOBS[name]
    assert len(results["tasks"]) == len(_suite(name).tasks)
    clean = results["metrics"]["clean"]
    assert clean["task_success"]["value"] == 1.0
    assert clean["process_integrity"]["value"] == 1.0
    assert clean["tool_recall"]["value"] == 1.0
    for t in results["tasks"]:
        assert not [p for p in t["problems"] if "forbidden" in p], t["id"]
        assert (t["faults_injected"] > 0) == (t["category"] == "faulted"), t["id"]
    assert results["versions"]["workflows"][name]["models"]["reasoning"].startswith("offline:")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_cassette_is_current(name: str, runs: dict[tuple[str, str], Run]) -> None:
    """The desk makes exactly the model requests the shipped cassette holds, and gets the same answers."""
    fresh = Cassette.load(runs[name, "offline"].home.parent / f"{name}-recorded.jsonl")
    shipped = Cassette.load(_cassette(name))
    assert set(fresh.entries) == set(shipped.entries), "re-record: tether eval run NAME --record CASSETTE"
    assert all(fresh.entries[k].response == shipped.entries[k].response for k in fresh.entries)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_replay_gives_the_same_results(name: str, runs: dict[tuple[str, str], Run]) -> None:
    replay = runs[name, "replay"]
    assert replay.code == 0 and replay.results, replay.output
    assert replay.results["run"]["model"].startswith("replay:")
    offline, again = _per_task(runs[name, "offline"].results), _per_task(replay.results)
    assert set(again) == {("clean", i) for i in _replayed(name)}
    assert {k: offline[k] for k in again} == again
