"""One task of ``tether eval run`` played under one profile, in this process or a worker's.

``RunConfig`` says how every task of a run is played. ``play_task`` plays one ``Job`` in a
data directory of its own, copied from a template built once per workflow, policy and model
in each process; the run's prompt, the job's faults and the cassette are applied to the
workflow, and the task's decisions are given at its approvals. It never raises: a failure is
the task's ``error``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.config import Home
from tether.errors import ApprovalError
from tether.evals.faults import FaultLog, FaultProfile, apply_faults
from tether.evals.metrics import TaskResult, score_task
from tether.evals.suite import Task
from tether.evals.versions import sha256_text, workflow_versions
from tether.models import ModelConfig, ModelPrice

if TYPE_CHECKING:
    from tether.graphs.session import RunResult, Session
    from tether.graphs.workflow import Workflow

__all__ = ["Job", "RunConfig", "play_task"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """How every task of a run is played (picklable: sent to worker processes)."""

    work_dir: str
    model: str = "offline"
    """``offline``, ``replay:CASSETTE`` or a reasoning model id."""
    router_model: str | None = None
    policy: str | None = None
    """Policy file enforced instead of each workflow's own."""
    prompt: str | None = None
    """System prompt text used instead of each workflow's own."""
    seed: int = 0
    record: str | None = None
    prices: Mapping[str, ModelPrice] = dataclasses.field(default_factory=dict)
    keep: bool = False

    @property
    def replay(self) -> str | None:
        return self.model.removeprefix("replay:") if self.model.startswith("replay:") else None

    def models(self) -> ModelConfig:
        reasoning = None if self.model == "offline" or self.replay is not None else self.model
        return ModelConfig(router=self.router_model, reasoning=reasoning, prices=dict(self.prices))


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One task under one profile (``faults``: the profile's and the task's own), as sent to a worker."""

    index: int
    task: Task
    profile: str
    faults: FaultProfile | None
    config: RunConfig


_TEMPLATES: dict[tuple[str, str, str | None, str], Path] = {}


def _template(name: str, cfg: RunConfig) -> Path:
    """A data directory with ``name``'s world built (knowledge base ingested, database copied)."""
    from tether.graphs.session import Session

    key = (cfg.work_dir, name, cfg.policy, cfg.model)
    if key in _TEMPLATES and _TEMPLATES[key].is_dir():
        return _TEMPLATES[key]
    tag = hashlib.sha256(repr(key).encode()).hexdigest()[:10]
    root = Path(cfg.work_dir) / "_templates" / f"{os.getpid()}-{tag}"
    shutil.rmtree(root, ignore_errors=True)
    with Session.open(name, home=Home(root=root), policy=cfg.policy, models=cfg.models()) as s:
        _warm(s.workflow)
    _TEMPLATES[key] = root
    return root


def _warm(wf: Workflow) -> None:
    """Search every knowledge base the workflow holds once, so the first search's one-off cost
    (loading the search library) neither counts as a task's time nor trips a shortened timeout."""
    res = wf.resources
    if dataclasses.is_dataclass(res) and not isinstance(res, type):
        held = [getattr(res, f.name) for f in dataclasses.fields(res)]
    else:
        held = list(vars(res).values()) if hasattr(res, "__dict__") else []
    holders = [wf.knowledge, *held]
    for kb in holders:
        if callable(getattr(kb, "search", None)) and callable(getattr(kb, "get", None)):
            with contextlib.suppress(Exception):
                kb.search("warm-up", top_k=1)


def _adapter(job: Job, logs: list[FaultLog]) -> Callable[[Workflow], Workflow]:
    cfg = job.config

    def adapt(wf: Workflow) -> Workflow:
        if cfg.prompt is not None:
            wf = dataclasses.replace(wf, system_prompt=cfg.prompt, prompt_version="file:" + sha256_text(cfg.prompt)[:12])
        if job.faults is not None:
            wf, log = apply_faults(wf, job.faults, seed=cfg.seed, task_id=job.task.id)
            logs.append(log)
        if cfg.replay is not None:
            from tether.evals.cassette import replay_models

            wf = replay_models(wf, cfg.replay)
        elif cfg.record is not None:
            from tether.evals.cassette import record_models

            wf = record_models(wf, cfg.record)
        return wf

    return adapt


def _drive(s: Session, task: Task, thread: str, follow_ups: Sequence[str], refused: list[str]) -> RunResult:
    decisions = list(task.decision_values)
    result: RunResult | None = None
    for text in (*task.requests, *follow_ups):
        result = s.run(text, thread_id=thread, subject=task.subject, designated=task.designated)
        while result.waiting_for and decisions:
            try:
                result = s.decide(result.waiting_for[0].approval_id, decisions.pop(0))
            except ApprovalError as exc:  # refused, nothing recorded (e.g. an edit the policy denies):
                refused.append(_message(exc))  # the approval stays pending; the next decision is tried
                result = s.result(thread)
        if result.waiting_for:  # no decision left: the approval stays pending, the thread paused
            break
    assert result is not None
    return result


def _message(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:2000]


def play_task(job: Job) -> tuple[TaskResult, dict[str, Any] | None]:
    """Play one task under one profile in a fresh data directory; never raises."""
    from tether.graphs.session import Session
    from tether.tools.base import Toolset

    task, cfg = job.task, job.config
    name = task.workflow or ""
    home = Home(root=Path(cfg.work_dir) / job.profile / task.id)
    thread, logs, refused = f"eval-{task.id}", list[FaultLog](), list[str]()
    tools, rows, result, error, versions, seconds = Toolset(tools=()), [], None, None, None, 0.0
    try:
        shutil.rmtree(home.root, ignore_errors=True)
        shutil.copytree(_template(name, cfg), home.root)
        with Session.open(name, home=home, policy=cfg.policy, models=cfg.models(), principal=task.principal,
                          roles=task.roles or (), adapt=_adapter(job, logs)) as s:
            tools = s.workflow.tools
            versions = workflow_versions(s.workflow, cfg.policy or _policy_path(name))
            t0 = time.perf_counter()
            try:
                result = _drive(s, task, thread, logs[0].follow_ups if logs else (), refused)
            except Exception as exc:  # one task failing never stops the suite
                error = _message(exc)
            if error is None and cfg.replay is not None:  # a reasoning-model miss ends as an escalation
                from tether.evals.cassette import replay_misses

                if misses := replay_misses(s.workflow):
                    error = _message(misses[0])
            seconds = time.perf_counter() - t0
            rows = s.events(thread)
    except Exception as exc:
        error = _message(exc)
    finally:
        if not cfg.keep:
            shutil.rmtree(home.root, ignore_errors=True)
    scored = score_task(task, profile=job.profile, rows=rows, result=result, tools=tools, seconds=seconds,
                        error=error, faults_injected=sum(log.injected for log in logs))
    if refused and not scored.success:  # say why the thread stayed paused
        scored = dataclasses.replace(scored, problems=(*scored.problems, *(f"decision refused: {m}" for m in refused)))
    return scored, versions


def _policy_path(name: str) -> Path | None:
    from tether.graphs.registry import find_workflow

    return find_workflow(name).policy_path
