"""``tether eval run``: play a suite's tasks through the real graph and write a versioned results file.

    suite = load_suite("agents/support/suite.yaml")
    results = run_suite(suite, jobs=2, profiles=("flaky_orders",), work_dir=Path("/tmp/evals"))
    results.write(Path("results.json"))

Every task runs in a data directory of its own (a copy of a template built once per workflow
and policy in each worker process: the knowledge base ingested, the world database copied),
with its own ledger and thread. Its requests are played in order (then the follow-up requests
of ``contradict`` faults); at each approval the task's next decision is given through
``Session.decide``; a pause with no decision left stays paused. A task whose run raises is
``error`` with the exception's message; the others still run. Profiles: ``clean`` always (a
task with its own ``faults`` runs faulted there too), then each named profile runs every task
again under its faults. ``jobs > 1`` plays tasks in that many worker processes (workflows are
found there by name, so they must be installed or given as ``module:attribute``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tether.config import Home
from tether.errors import ConfigError
from tether.evals.faults import FaultProfile
from tether.evals.metrics import Metric, TaskResult, aggregate
from tether.evals.run_task import Job, RunConfig, play_task
from tether.evals.suite import Suite, Task, load_suite, resolve_suite

__all__ = ["RESULTS_SCHEMA", "RunConfig", "SuiteResults", "cmd_eval_run", "run_suite"]

RESULTS_SCHEMA = "tether.eval-results/1"


@dataclass(frozen=True, kw_only=True, slots=True)
class SuiteResults:
    """Every task's result under every profile, the metrics and what ran (``to_json``)."""

    suite: Suite
    tasks: tuple[TaskResult, ...]
    profiles: tuple[str, ...]
    metrics: Mapping[str, Mapping[str, Metric]]
    versions: Mapping[str, Any]
    run: Mapping[str, Any]

    @property
    def success(self) -> bool:
        """Every task of the clean run succeeded (runs under ``--faults`` profiles are measured,
        not gated: gate them with ``tether eval compare``)."""
        return all(t.success for t in self.tasks if t.profile == "clean")

    @property
    def failed(self) -> list[TaskResult]:
        return [t for t in self.tasks if not t.success]

    def to_json(self) -> dict[str, Any]:
        s = self.suite
        return {
            "schema_version": RESULTS_SCHEMA,
            "suite": {"name": s.name, "version": s.version, "path": str(s.path), "sha256": s.sha256},
            "run": dict(self.run),
            "versions": dict(self.versions),
            "profiles": list(self.profiles),
            "tasks": [t.to_json() for t in self.tasks],
            "metrics": {p: {k: m.to_json() for k, m in ms.items()} for p, ms in self.metrics.items()},
        }

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


# ---------------------------------------------------------------- the suite


def _jobs(suite: Suite, profiles: Sequence[str], tasks: Sequence[Task], cfg: RunConfig) -> list[Job]:
    out: list[Job] = []
    for profile in ("clean", *profiles):
        named = suite.fault_profiles.get(profile)
        for t in tasks:
            own = t.profile
            faults = own if named is None else named if own is None else FaultProfile(
                description=f"{profile} + the task's own faults", faults=(*named.faults, *own.faults))
            out.append(Job(index=len(out), task=t, profile=profile, faults=faults, config=cfg))
    return out


def _check(suite: Suite, profiles: Sequence[str], ids: Sequence[str] | None, cfg: RunConfig) -> list[Task]:
    from tether.graphs.registry import find_workflow

    unknown = [p for p in profiles if p not in suite.fault_profiles]
    if unknown:
        raise ConfigError(setting="--faults", reason=f"unknown fault profile(s) {', '.join(unknown)}; suite "
                          f"{suite.name!r} defines: {', '.join(suite.fault_profiles) or 'none'}")
    chosen = list(suite.tasks)
    if ids is not None:
        missing = [i for i in ids if i not in {t.id for t in suite.tasks}]
        if missing:
            raise ConfigError(setting="--task", reason=f"no task {', '.join(missing)} in suite {suite.name!r}; "
                              f"tasks: {', '.join(t.id for t in suite.tasks)}")
        chosen = [t for t in suite.tasks if t.id in ids]
    for name in dict.fromkeys(t.workflow or "" for t in chosen):
        find_workflow(name).load_policy(cfg.policy)  # unknown workflow / bad policy file: raise now
    if cfg.replay is not None:
        from tether.evals.cassette import Cassette

        Cassette.load(cfg.replay)
    return chosen


def _execute(jobs: Sequence[Job], workers: int, progress: bool) -> list[tuple[TaskResult, dict[str, Any] | None]]:
    bar = importlib.import_module("tqdm").tqdm(total=len(jobs), file=sys.stderr, disable=not progress, unit="task", leave=False)
    try:
        if workers <= 1:
            out = []
            for j in jobs:
                out.append(play_task(j))
                bar.update()
            return out
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures: list[Future[tuple[TaskResult, dict[str, Any] | None]]] = []
            for j in jobs:
                f = pool.submit(play_task, j)
                f.add_done_callback(lambda _f: bar.update())
                futures.append(f)
            return [f.result() for f in futures]
    finally:
        bar.close()


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run_suite(
    suite: Suite,
    *,
    work_dir: Path,
    model: str = "offline",
    router_model: str | None = None,
    policy: str | Path | None = None,
    prompt: str | Path | None = None,
    jobs: int = 1,
    profiles: Sequence[str] = (),
    seed: int = 0,
    record: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    progress: bool = False,
    keep: bool = False,
) -> SuiteResults:
    """Play every task (or ``tasks``, by id) under ``clean`` and each of ``profiles``.

    ``prompt`` is a system prompt file; ``record`` a cassette to record every model exchange
    into (finalised at the end); ``model="replay:CASSETTE"`` serves the models from one.
    Raises ``TetherError`` for an unknown profile, task, workflow, a bad policy or cassette.
    """
    if jobs < 1:
        raise ConfigError(setting="--jobs", reason=f"{jobs}: give 1 or more")
    if record is not None and model.startswith("replay:"):
        raise ConfigError(setting="--record", reason="cannot record while replaying a cassette; record with "
                          "--model offline or a provider model id")
    text = None
    if prompt is not None:
        try:
            text = Path(prompt).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(setting="--prompt", reason=f"{prompt}: cannot read: {exc}") from None
    cfg = RunConfig(work_dir=str(Path(work_dir).resolve()), model=model, router_model=router_model,
                    policy=str(policy) if policy is not None else None, prompt=text, seed=seed,
                    record=str(record) if record is not None else None, prices=dict(suite.prices), keep=keep)
    names = list(dict.fromkeys(p for p in profiles if p != "clean"))
    chosen = _check(suite, names, tasks, cfg)
    todo = _jobs(suite, names, chosen, cfg)
    started, t0 = datetime.now(UTC), time.perf_counter()
    played = _execute(todo, jobs, progress)
    wall = time.perf_counter() - t0
    if record is not None and Path(record).exists():
        from tether.evals.cassette import finalise_cassette

        finalise_cassette(record)
    results = tuple(r for r, _ in played)
    workflows: dict[str, Any] = {}
    for r, v in played:
        if v is not None:
            workflows.setdefault(r.workflow, v)
    profile_list = ("clean", *names)
    return SuiteResults(
        suite=suite, tasks=results, profiles=profile_list,
        metrics={p: aggregate([r for r in results if r.profile == p], seed=seed) for p in profile_list},
        versions={"tether": _package("tether"), "langgraph": _package("langgraph"),
                  "suite": f"sha256:{suite.sha256}", "workflows": workflows},
        run={"id": uuid.uuid4().hex[:12], "started_at": started.isoformat(timespec="seconds"),
             "wall_seconds": round(wall, 3), "jobs": jobs, "seed": seed, "model": model,
             "tasks_per_second": round(len(results) / wall, 3) if wall > 0 else None,
             "host": {"cpus": os.cpu_count(), "python": platform.python_version()}},
    )


# ---------------------------------------------------------------- command line


def _fmt(m: Metric) -> str:
    if m.value is None:
        return "-"
    ci = f" [{m.low:.3g}, {m.high:.3g}]" if m.low is not None and m.high is not None else ""
    return f"{m.value:.3g}{ci} n={m.n}"


def _human(results: SuiteResults, out: Path) -> str:
    from tether.cli import table

    names = list(next(iter(results.metrics.values())))
    rows = [[name, *(_fmt(results.metrics[p][name]) for p in results.profiles)] for name in names]
    lines = [f"suite {results.suite.name} v{results.suite.version}: {len(results.tasks)} task runs in "
             f"{results.run['wall_seconds']}s ({results.run['jobs']} job(s))", "",
             table(rows, ["metric", *results.profiles])]
    failed = [t for t in results.failed if t.profile == "clean"]
    if failed:
        lines += ["", f"{len(failed)} task(s) of the clean run failed:"]
        for t in failed:
            lines.append(f"  {t.id}: {t.observed}")
            lines += [f"    - {p}" for p in t.problems]
    for profile in results.profiles[1:]:
        under = [t.id for t in results.failed if t.profile == profile]
        if under:
            lines.append(f"under {profile}: {len(under)} task(s) failed ({', '.join(under[:8])}"
                         f"{', ...' if len(under) > 8 else ''}); see the results file")
    lines += ["", f"results: {out}"]
    return "\n".join(lines)


def cmd_eval_run(args: argparse.Namespace) -> int:
    """``tether eval run``: 0 when every task of the clean run succeeded, 1 otherwise."""
    suite = load_suite(resolve_suite(args.suite))
    home = Home.from_env()
    keep = bool(getattr(args, "keep", False))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = home.root / "evals" / "work" / f"{suite.name}-{stamp}" if keep else \
        Path(tempfile.mkdtemp(prefix="tether-eval-"))
    profiles = [p.strip() for p in (getattr(args, "faults", None) or "").split(",") if p.strip()]
    try:
        results = run_suite(suite, work_dir=work, model=args.model, router_model=args.router_model,
                            policy=args.policy, prompt=args.prompt, jobs=args.jobs, profiles=profiles,
                            seed=args.seed, record=args.record, tasks=args.task,
                            progress=sys.stderr.isatty() and not getattr(args, "no_progress", False), keep=keep)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out) if args.out else home.root / "evals" / f"{suite.name}-{stamp}.json"
    results.write(out)
    if getattr(args, "json", False):
        print(json.dumps(results.to_json(), indent=2))
    else:
        print(_human(results, out))
        if keep:
            print(f"task data directories: {work}")
    return 0 if results.success else 1
