"""Regression suite files: tasks, the human decisions to give, and what each task must show.

A suite is YAML (a mapping with ``suite``, ``version``, ``tasks``, ...) or JSONL (one task
object per line; the suite's name is the file's stem, its version ``"1"``, and every task
names its ``workflow``). ``load_suite(path)`` validates strictly: an unknown key, a bad value,
a duplicate task id, an unknown fault profile, a task without a workflow or a malformed
decision or argument matcher is a ``SuiteFileError`` listing every problem by key path
(``tasks[3].expect.outcome: ...``). ``suite_json_schema()`` is the file's JSON Schema.

Argument matchers (``expect.calls[].args``, ``expect.forbidden[].args``) are literals or
operator mappings (``tether.evals.matchers``); an argument name may be a dotted path into
nested arguments (``fields.phone``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tether.errors import PolicyProblem, TetherError
from tether.evals.faults import FaultProfile
from tether.evals.file_problems import key_path, line_of, validation_problems
from tether.evals.matchers import MATCHER_KEYS, arg_value, json_equal, matcher_problems, matches
from tether.graphs.state import Approve, Edit, Reject
from tether.models import ModelPrice

__all__ = [
    "MATCHER_KEYS", "OUTCOMES", "CallSpec", "DecisionSpec", "Expect", "Suite", "SuiteFile",
    "SuiteFileError", "SuiteProblem", "Task", "arg_value", "json_equal", "load_suite", "matches",
    "resolve_suite", "suite_json_schema",
]

Outcome = Literal["resolved", "escalated", "denied", "asked"]
OUTCOMES: tuple[str, ...] = ("resolved", "escalated", "denied", "asked")
CATEGORIES: tuple[str, ...] = ("ordinary", "edge", "adversarial", "faulted")
_TASK_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*")


SuiteProblem = PolicyProblem
"""One problem found in a suite file: its key path (e.g. ``tasks[3].expect.outcome``), why, and the line."""


class SuiteFileError(TetherError):
    """A suite file could not be loaded; no task of it ran."""

    def __init__(self, *, path: str, problems: Sequence[SuiteProblem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid suite file {path}: {len(self.problems)} problem(s)\n{lines}\n"
                         "Fix the keys above and run the suite again.")


# ---------------------------------------------------------------- the file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(value: Any, allowed: Sequence[str]) -> Any:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


class CallSpec(_Strict):
    """A tool call: the tool's name and matchers for some of its arguments."""

    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    """Argument name (or dotted path) -> literal or operator mapping."""

    def matches(self, tool: str | None, args: Mapping[str, Any] | None) -> bool:
        return tool == self.tool and all(matches(m, arg_value(args, k)) for k, m in self.args.items())


class Expect(_Strict):
    """What a task must show."""

    outcome: Outcome | tuple[Outcome, ...]
    calls: tuple[CallSpec, ...] = ()
    forbidden: tuple[CallSpec, ...] = ()
    rules: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    citations: Literal["required"] | tuple[str, ...] | None = None
    answer_contains: tuple[str, ...] = ()

    @field_validator("outcome", mode="before")
    @classmethod
    def _outcome(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            if not v:
                raise ValueError("list at least one outcome")
            return tuple(_one_of(x, OUTCOMES) for x in v)
        return _one_of(v, OUTCOMES)

    @field_validator("citations", mode="before")
    @classmethod
    def _citations(cls, v: Any) -> Any:
        if v is None or v == "required" or (isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)):
            return tuple(v) if isinstance(v, list) else v
        raise ValueError(f"{v!r}: write 'required' or a list of evidence id prefixes")

    @property
    def outcomes(self) -> tuple[str, ...]:
        return self.outcome if isinstance(self.outcome, tuple) else (self.outcome,)


class ApproveSpec(_Strict):
    by: str = Field(min_length=1)
    comment: str = ""


class RejectSpec(_Strict):
    by: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class EditSpec(_Strict):
    by: str = Field(min_length=1)
    args: dict[str, Any]
    tool: str | None = None
    comment: str = ""


class DecisionSpec(_Strict):
    """Exactly one of ``approve``, ``reject`` or ``edit``."""

    approve: ApproveSpec | None = None
    reject: RejectSpec | None = None
    edit: EditSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DecisionSpec:
        given = [k for k in ("approve", "reject", "edit") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of approve, reject, edit (got {', '.join(given) or 'none'})")
        return self

    def decision(self) -> Approve | Reject | Edit:
        if self.approve is not None:
            return Approve(approver=self.approve.by, comment=self.approve.comment)
        if self.reject is not None:
            return Reject(approver=self.reject.by, reason=self.reject.reason)
        assert self.edit is not None
        return Edit(approver=self.edit.by, args=self.edit.args, tool=self.edit.tool, comment=self.edit.comment)


class Defaults(_Strict):
    principal: str | None = None
    roles: tuple[str, ...] = ()
    cost_ceiling_usd: float | None = Field(default=None, ge=0)


class Task(_Strict):
    """One task: requests on one thread, the decisions to give, and the expectations."""

    id: str
    title: str = ""
    category: Literal["ordinary", "edge", "adversarial", "faulted"] = "ordinary"
    tags: tuple[str, ...] = ()
    workflow: str | None = None
    request: str | tuple[str, ...]
    subject: str | None = None
    principal: str | None = None
    roles: tuple[str, ...] | None = None
    designated: tuple[str, ...] = ()
    decisions: tuple[DecisionSpec, ...] = ()
    faults: str | FaultProfile | None = None
    """A fault profile name of the suite, or an inline profile."""
    cost_ceiling_usd: float | None = Field(default=None, ge=0)
    expect: Expect

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        if not isinstance(v, str) or not _TASK_ID.fullmatch(v):
            raise ValueError(f"{v!r}: a task id is lower-case letters, digits and _.- (starting with a letter or digit)")
        return v

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, v: Any) -> Any:
        return _one_of(v, CATEGORIES)

    @field_validator("request", mode="before")
    @classmethod
    def _request(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list | tuple) or not items or not all(isinstance(x, str) and x.strip() for x in items):
            raise ValueError("give the user's text, or a non-empty list of texts played in order")
        return v if isinstance(v, str) else tuple(v)

    @property
    def requests(self) -> tuple[str, ...]:
        return (self.request,) if isinstance(self.request, str) else self.request

    @property
    def decision_values(self) -> tuple[Approve | Reject | Edit, ...]:
        return tuple(d.decision() for d in self.decisions)

    @property
    def profile(self) -> FaultProfile | None:
        """The task's own faults (resolved by ``load_suite``), if any."""
        return self.faults if isinstance(self.faults, FaultProfile) else None


class SuiteFile(_Strict):
    """A suite file (YAML form)."""

    suite: str = Field(min_length=1)
    version: str = Field(min_length=1)
    workflow: str | None = None
    description: str = ""
    defaults: Defaults = Defaults()
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    fault_profiles: dict[str, FaultProfile] = Field(default_factory=dict)
    tasks: tuple[Task, ...] = Field(min_length=1)


def suite_json_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file (``evals/suite.schema.json``)."""
    schema = SuiteFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tether regression suite"
    return schema


@dataclass(frozen=True, kw_only=True, slots=True)
class Suite:
    """A loaded suite: tasks with the suite's defaults, workflow and fault profiles filled in."""

    name: str
    version: str
    description: str
    path: Path
    sha256: str
    """Of the file's bytes."""
    tasks: tuple[Task, ...]
    prices: Mapping[str, ModelPrice]
    fault_profiles: Mapping[str, FaultProfile]

    @property
    def workflows(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.workflow or "" for t in self.tasks))


# ---------------------------------------------------------------- loading


def _cross_check(spec: SuiteFile, jsonl: bool) -> list[SuiteProblem]:
    out: list[SuiteProblem] = []
    first: dict[str, int] = {}
    for i, t in enumerate(spec.tasks):
        where = f"tasks[{i}]"
        if t.id in first:
            out.append(SuiteProblem(key=f"{where}.id", reason=f"duplicate task id {t.id!r} (first at tasks[{first[t.id]}])."))
        first.setdefault(t.id, i)
        if t.workflow is None and spec.workflow is None:
            hint = "give it a workflow" if jsonl else "give it a workflow, or set the suite's workflow"
            out.append(SuiteProblem(key=f"{where}.workflow", reason=f"the task has no workflow; {hint}."))
        if isinstance(t.faults, str) and t.faults not in spec.fault_profiles:
            known = ", ".join(spec.fault_profiles) or "none"
            out.append(SuiteProblem(key=f"{where}.faults", reason=f"unknown fault profile {t.faults!r}; the suite "
                                    f"defines: {known}."))
        for part in ("calls", "forbidden"):
            for j, c in enumerate(getattr(t.expect, part)):
                for name, m in c.args.items():
                    out += [SuiteProblem(key=f"{where}.expect.{part}[{j}].args.{name}.{op}", reason=why)
                            for op, why in matcher_problems(m)]
    return out


def _resolve(spec: SuiteFile) -> tuple[Task, ...]:
    d = spec.defaults
    out = []
    for t in spec.tasks:
        out.append(t.model_copy(update={
            "workflow": t.workflow or spec.workflow,
            "principal": t.principal if t.principal is not None else d.principal,
            "roles": t.roles if t.roles is not None else d.roles,
            "cost_ceiling_usd": t.cost_ceiling_usd if t.cost_ceiling_usd is not None else d.cost_ceiling_usd,
            "faults": spec.fault_profiles[t.faults] if isinstance(t.faults, str) else t.faults,
        }))
    return tuple(out)


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    from tether.guards.policy_file import _compose_with_lines

    try:
        data, lines, dups = _compose_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = str(getattr(exc, "problem", None) or exc).replace("policy file", "suite file")
        raise SuiteFileError(path=source, problems=[SuiteProblem(
            key="<yaml>", reason=f"not valid YAML: {problem}", line=mark.line + 1 if mark else None)]) from None
    if dups:
        raise SuiteFileError(path=source, problems=[SuiteProblem(key=key_path([int(p) if p.isdigit() else p for p in
                                                                            d.key.split(".")]),
                                                                 reason=d.reason, line=d.line) for d in dups])
    return data, lines


def _read_jsonl(text: str, path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    tasks: list[Any] = []
    lines: dict[tuple[str, ...], int] = {}
    problems: list[SuiteProblem] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        lines[("tasks", str(len(tasks)))] = n
        try:
            tasks.append(json.loads(raw))
        except json.JSONDecodeError as exc:
            problems.append(SuiteProblem(key=f"tasks[{len(tasks)}]", line=n, reason=f"not valid JSON: {exc.msg} "
                                         f"at column {exc.colno}; write one task object per line."))
            tasks.append(None)
    if problems:
        raise SuiteFileError(path=str(path), problems=problems)
    return {"suite": path.stem, "version": "1", "tasks": tasks}, lines


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (``.yaml``/``.yml`` or ``.jsonl``); raises ``SuiteFileError``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SuiteFileError(path=str(p), problems=[SuiteProblem(key="<file>", reason=f"cannot read: {why}")]) from None
    jsonl = p.suffix.lower() == ".jsonl"
    lines: dict[tuple[str, ...], int] = {}
    if jsonl:
        data, lines = _read_jsonl(text, p)
    elif p.suffix.lower() in (".yaml", ".yml"):
        data, lines = _read_yaml(text, str(p))
    else:
        raise SuiteFileError(path=str(p), problems=[SuiteProblem(
            key="<file>", reason=f"unknown suite file type {p.suffix or '(none)'!r}; use .yaml, .yml or .jsonl")])
    if not isinstance(data, dict):
        raise SuiteFileError(path=str(p), problems=[SuiteProblem(
            key="<root>", reason="expected a mapping with suite, version and tasks.")])
    try:
        spec = SuiteFile.model_validate(data)
    except ValidationError as err:
        raise SuiteFileError(path=str(p), problems=validation_problems(err, SuiteFile, lines=lines)) from None
    problems = [dataclasses.replace(q, line=line_of(lines, q.key)) for q in _cross_check(spec, jsonl)]
    if problems:
        raise SuiteFileError(path=str(p), problems=problems)
    return Suite(name=spec.suite, version=spec.version, description=spec.description, path=p.resolve(),
                 sha256=hashlib.sha256(raw).hexdigest(), tasks=_resolve(spec), prices=dict(spec.prices),
                 fault_profiles=dict(spec.fault_profiles))


def resolve_suite(name_or_path: str | Path) -> Path:
    """A suite file path, or the shipped suite of the workflow named ``name_or_path``."""
    from tether.graphs.registry import find_workflow, list_workflows

    p = Path(name_or_path)
    if p.is_file():
        return p
    text = str(name_or_path)
    looks_like_file = p.suffix.lower() in (".yaml", ".yml", ".jsonl") or "/" in text
    if not looks_like_file:
        try:
            spec = find_workflow(text)
        except TetherError:
            spec = None
        if spec is not None and spec.suite is not None:
            return Path(spec.suite)
    shipping = ", ".join(w.name for w in list_workflows() if w.suite is not None) or "none"
    raise SuiteFileError(path=text, problems=[SuiteProblem(
        key="<file>", reason=f"no such suite file, and no workflow of that name ships a suite (workflows with "
        f"suites: {shipping}); give a .yaml/.jsonl path or one of those names.")])
