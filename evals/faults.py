"""Seeded faults at the tool boundary: timeouts, server errors, slow calls, damaged results.

A ``FaultProfile`` (the ``fault_profiles`` entries of a suite file) is applied to a built
workflow with ``apply_faults``: each matching tool's function is wrapped, the tools' own code
never changes, and the workflow's tool timeout is shortened when the profile has timeouts, so
the act node's real timeout path runs. Whether a fault fires on a call is drawn from a RNG
seeded by (seed, task id, tool, call number, fault index): the same seed and task give the
same faults. ``FaultLog`` records every injected fault.

Kinds:

* ``timeout``: the call hangs ``seconds`` (default 1.0) past the shortened timeout and never
  reaches the tool; a write tool's timeout escalates.
* ``error``: the tool raises ``ToolError(code="server_error")`` naming ``status`` (default 503).
* ``slow``: the call waits ``seconds`` (default 0.1), then runs normally.
* ``missing_fields`` / ``null_fields``: the tool runs; the listed dotted result fields (default:
  the fields with defaults) are removed / set to null in what the workflow receives.
* ``stale_documents``: the tool runs; every returned ``Evidence`` claims to be updated
  ``max_age_days`` (default 3650) days ago, so a citation gate with ``max_age_days`` refuses a
  write citing it (check ``stale``). The gate measures age from the run's retrieved evidence,
  which comes from the tool result, so the knowledge base itself is untouched.
* ``inject``: ``text`` is appended to the result's untrusted text (each passage's text for
  evidence; else the tool's ``outputs.content`` fields, or every string field).
* ``contradict``: no tool effect; ``text`` becomes a follow-up user request (``FaultLog.follow_ups``).
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tether.errors import ConfigError, ToolError
from tether.graphs.workflow import Workflow
from tether.retrieval.knowledge import Evidence
from tether.tools.base import ToolContext, Toolset, ToolSpec

__all__ = [
    "FAULT_KINDS",
    "FaultEvent",
    "FaultKind",
    "FaultLog",
    "FaultProfile",
    "FaultSpec",
    "apply_faults",
]

FaultKind = Literal["timeout", "error", "slow", "missing_fields", "null_fields", "stale_documents", "inject",
                    "contradict"]
FAULT_KINDS: tuple[FaultKind, ...] = ("timeout", "error", "slow", "missing_fields", "null_fields",
                                      "stale_documents", "inject", "contradict")
_USES: dict[str, tuple[FaultKind, ...]] = {
    "seconds": ("timeout", "slow"),
    "status": ("error",),
    "fields": ("missing_fields", "null_fields"),
    "text": ("inject", "contradict"),
    "max_age_days": ("stale_documents",),
}
"""Which kinds read each optional setting (any other kind with it set is an error)."""
_BEFORE: tuple[FaultKind, ...] = ("timeout", "error", "slow")
_DAMAGE: tuple[FaultKind, ...] = ("missing_fields", "null_fields")
SHORT_TIMEOUT_SECONDS = 0.2


class FaultSpec(BaseModel):
    """One fault: which tools (a name or glob), what happens, and how often."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str = Field(default="*", min_length=1)
    kind: FaultKind
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Probability per call (0..1)."""
    seconds: float | None = Field(default=None, gt=0.0, le=600.0)
    status: int | None = Field(default=None, ge=400, le=599)
    fields: tuple[str, ...] | None = None
    text: str | None = None
    max_age_days: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> FaultSpec:
        for name, kinds in _USES.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                users = " or ".join(kinds)
                raise ValueError(f"'{name}' has no effect on a {self.kind} fault (only {users} use it); remove it")
        if self.kind in ("inject", "contradict") and not (self.text or "").strip():
            what = "the instruction text to plant" if self.kind == "inject" else "the follow-up user request"
            raise ValueError(f"a {self.kind} fault needs 'text': {what}")
        if self.fields is not None and (not self.fields or any(not f.strip() for f in self.fields)):
            raise ValueError("'fields' must list dotted result fields (e.g. [email, items.sku]); omit it for "
                             "the fields that have defaults")
        return self

    @property
    def hang_seconds(self) -> float:
        return self.seconds if self.seconds is not None else 1.0


class FaultProfile(BaseModel):
    """A named set of faults applied together to every tool call of a task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    faults: tuple[FaultSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _timeouts_outlast_slow(self) -> FaultProfile:
        hangs = [f.hang_seconds for f in self.faults if f.kind == "timeout"]
        slow = [f.seconds or 0.1 for f in self.faults if f.kind == "slow"]
        if hangs and slow and max(slow) >= min(hangs):
            raise ValueError(f"a slow fault ({max(slow):g}s) must be shorter than every timeout fault's "
                             f"hang ({min(hangs):g}s), or the slow calls time out too")
        return self

    def tool_timeout(self, current: float) -> float:
        """The tool timeout to run with: shortened below every hang, above every slow call."""
        hangs = [f.hang_seconds for f in self.faults if f.kind == "timeout"]
        if not hangs:
            return current
        slow = [f.seconds or 0.1 for f in self.faults if f.kind == "slow"]
        if slow:
            return min(current, (max(slow) + min(hangs)) / 2)
        return min(current, SHORT_TIMEOUT_SECONDS, min(hangs) / 2)


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultEvent:
    """One injected fault: the tool, the kind and the tool's call number (1-based; 0 for contradict)."""

    tool: str
    kind: FaultKind
    call: int
    detail: str = ""


class FaultLog:
    """Every fault injected into one task's run (thread-safe)."""

    __slots__ = ("_events", "_follow_ups", "_lock")

    def __init__(self, follow_ups: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._events: list[FaultEvent] = []
        self._follow_ups = follow_ups

    def record(self, event: FaultEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> tuple[FaultEvent, ...]:
        with self._lock:
            return tuple(self._events)

    @property
    def injected(self) -> int:
        with self._lock:
            return len(self._events)

    @property
    def follow_ups(self) -> tuple[str, ...]:
        """Extra user requests (``contradict`` texts) to send on the thread after the task's own."""
        return self._follow_ups

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out


def _fires(rate: float, *parts: object) -> bool:
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).random() < rate


class _Altered:
    """A tool result with fields removed or nulled: ``model_dump`` gives the altered data."""

    __slots__ = ("_data", "_json", "_original")

    def __init__(self, original: BaseModel, data: dict[str, Any], json_data: dict[str, Any]) -> None:
        self._original, self._data, self._json = original, data, json_data

    def model_dump(self, *, mode: str = "python", **_: Any) -> dict[str, Any]:
        out: dict[str, Any] = copy.deepcopy(self._json) if mode == "json" else _plain(self._data)
        return out

    def __getattr__(self, name: str) -> Any:
        if name in type(self._original).model_fields:
            if name not in self._data:
                raise AttributeError(f"{name} is missing from this result")
            value = self._data[name]
            if name == "evidence" and isinstance(value, list):  # damaged passages: citable if still valid
                return [e for e in (_passage(v) for v in value) if e is not None]
            return value
        return getattr(self._original, name)


def _passage(value: Any) -> Evidence | None:
    if isinstance(value, Evidence):
        return value
    if not isinstance(value, dict):
        return None
    try:
        return Evidence.model_validate(value)
    except ValueError:
        return None


def _edit(data: Any, path: list[str], remove: bool) -> bool:
    """Remove / null ``path`` in ``data`` (lists: in every element); True if anything changed."""
    if isinstance(data, list):
        return any([_edit(item, path, remove) for item in data])
    if not isinstance(data, dict) or path[0] not in data:
        return False
    if len(path) > 1:
        return _edit(data[path[0]], path[1:], remove)
    if remove:
        del data[path[0]]
    else:
        data[path[0]] = None
    return True


def _json_of(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return out


def _default_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The result fields a caller must already cope with lacking: those with defaults."""
    return tuple(n for n, f in model.model_fields.items() if not f.is_required())


def _applies(f: FaultSpec, spec: ToolSpec[Any, Any]) -> bool:
    if f.kind == "contradict" or not fnmatch.fnmatchcase(spec.name, f.tool):
        return False
    if f.kind == "stale_documents":
        return spec.yields_evidence
    if f.kind in ("missing_fields", "null_fields") and f.fields is None:
        return bool(_default_fields(spec.result_model))
    return True


def _damage(result: BaseModel | _Altered, fields: tuple[str, ...], *, remove: bool) -> _Altered:
    """``result`` with ``fields`` removed / nulled (an already damaged result is damaged further)."""
    if isinstance(result, _Altered):
        original, py, js = result._original, dict(result._data), result.model_dump(mode="json")
    else:  # attributes keep their models (evidence stays Evidence) unless a dotted path goes inside
        original, py, js = result, {n: getattr(result, n) for n in type(result).model_fields}, \
            result.model_dump(mode="json")
    for f in fields:
        path = f.split(".")
        if len(path) > 1 and path[0] in py:
            py[path[0]] = _plain(py[path[0]])
        _edit(py, path, remove)
        _edit(js, path, remove)
    return _Altered(original, py, js)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _append(data: Any, path: list[str], text: str) -> Any:
    if isinstance(data, list):
        return [_append(v, path, text) for v in data]
    if isinstance(data, dict):
        if not path:  # every string field except identifiers
            return {k: v if k == "id" or k.endswith("_id") else _append(v, [], text) for k, v in data.items()}
        return {k: _append(v, path[1:], text) if k == path[0] else v for k, v in data.items()}
    if isinstance(data, str) and not path:
        return f"{data} {text}"
    return data


def _stale(result: BaseModel, days: float) -> BaseModel:
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")  # a full timestamp: cassettes normalise it
    old = [e.model_copy(update={"updated_at": when}) if isinstance(e, Evidence) else e
           for e in getattr(result, "evidence", None) or []]
    return result.model_copy(update={"evidence": old})


@dataclass(frozen=True, kw_only=True, slots=True)
class _Plan:
    """The faults that apply to one tool, with their index in the profile."""

    spec: ToolSpec[Any, Any]
    faults: tuple[tuple[int, FaultSpec], ...]
    content: tuple[str, ...]
    seed: int
    task_id: str
    log: FaultLog
    counter: list[int] = dataclasses.field(default_factory=lambda: [0])
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def next_call(self) -> int:
        with self.lock:
            self.counter[0] += 1
            return self.counter[0]

    def wrap(self) -> Callable[[Any, ToolContext[Any]], Any]:
        original, name = self.spec.fn, self.spec.name

        def faulted(args: Any, ctx: ToolContext[Any]) -> Any:
            call = self.next_call()
            fired = [(i, f) for i, f in self.faults if _fires(f.rate, self.seed, self.task_id, name, call, i)]
            for _, f in fired:
                if f.kind in _BEFORE:
                    self._before(f, call)
            result = original(args, ctx)
            # results keep their model through stale/inject; removing or nulling fields comes last
            for _, f in sorted(fired, key=lambda pair: (pair[1].kind in _DAMAGE, pair[0])):
                if f.kind not in _BEFORE:
                    result = self._after(f, call, result)
            return result

        return faulted

    def _before(self, f: FaultSpec, call: int) -> None:
        name = self.spec.name
        if f.kind == "slow":
            self.log.record(FaultEvent(tool=name, kind="slow", call=call, detail=f"{f.seconds or 0.1:g}s"))
            time.sleep(f.seconds or 0.1)
        elif f.kind == "error":
            status = f.status or 503
            self.log.record(FaultEvent(tool=name, kind="error", call=call, detail=str(status)))
            raise ToolError(code="server_error", message=f"{name}: upstream returned {status}",
                            hint="The service failed; try again later or hand the case to a human.",
                            retryable=True)
        else:  # timeout: hang past the workflow's tool timeout; the tool is never reached
            self.log.record(FaultEvent(tool=name, kind="timeout", call=call, detail=f"{f.hang_seconds:g}s"))
            time.sleep(f.hang_seconds)
            raise ToolError(code="timeout", message=f"{name}: no answer after {f.hang_seconds:g}s")

    def _after(self, f: FaultSpec, call: int, result: Any) -> Any:
        name, model = self.spec.name, self.spec.result_model
        if f.kind in _DAMAGE:
            fields = f.fields or _default_fields(model)  # non-empty: see _applies
            self.log.record(FaultEvent(tool=name, kind=f.kind, call=call, detail=",".join(fields)))
            return _damage(result, fields, remove=f.kind == "missing_fields")
        if not isinstance(result, BaseModel):
            return result  # not a typed result: nothing to age or plant text in
        if f.kind == "stale_documents":
            days = f.max_age_days or 3650.0
            self.log.record(FaultEvent(tool=name, kind=f.kind, call=call, detail=f"{days:g} days"))
            return _stale(result, days)
        assert f.kind == "inject" and f.text
        self.log.record(FaultEvent(tool=name, kind="inject", call=call, detail=f.text[:80]))
        if self.spec.yields_evidence:
            ev = [e.model_copy(update={"text": f"{e.text} {f.text}"}) if isinstance(e, Evidence) else e
                  for e in getattr(result, "evidence", None) or []]
            return result.model_copy(update={"evidence": ev})
        data: Any = result.model_dump()
        for path in self.content or ("",):
            data = _append(data, [p for p in path.split(".") if p], f.text)
        try:
            return type(result).model_validate(data)
        except ValueError:  # a result model that refuses the longer text: hand over the data as is
            return _Altered(result, data, _json_of(data))


def _check(workflow: Workflow, profile: FaultProfile) -> None:
    """Every fault names tools of the workflow and result fields those tools have."""
    for i, f in enumerate(profile.faults):
        if f.kind == "contradict":
            continue
        where = f"fault {i + 1} ({f.kind} on {f.tool!r})"
        hit = [s for s in workflow.tools.tools if fnmatch.fnmatchcase(s.name, f.tool)]
        if not hit:
            raise ConfigError(setting=where, reason=f"matches no tool of workflow {workflow.name!r}; tools: "
                              + ", ".join(workflow.tools.names()))
        if f.kind == "stale_documents" and not any(s.yields_evidence for s in hit):
            raise ConfigError(setting=where, reason="none of the matched tools returns evidence; point it at "
                              "a retrieval tool (" + ", ".join(s.name for s in workflow.tools.tools
                                                               if s.yields_evidence) + ")")
        if f.kind in ("missing_fields", "null_fields") and f.fields is None and not any(
                _applies(f, s) for s in hit):
            raise ConfigError(setting=where, reason="none of the matched tools has result fields with defaults; "
                              "list the dotted result fields to damage under 'fields'")
        for name in f.fields or ():
            if not any(name in s.shape()[1] for s in hit):
                known = sorted(set().union(*(s.shape()[1] for s in hit)))
                raise ConfigError(setting=f"{where}.fields", reason=f"no matched tool has a result field "
                                  f"{name!r}; fields: {', '.join(known)}")


def apply_faults(workflow: Workflow, profile: FaultProfile, *, seed: int, task_id: str,
                 ) -> tuple[Workflow, FaultLog]:
    """``workflow`` with ``profile``'s faults at its tool boundary, and the log they write to.

    The returned workflow shares everything with ``workflow`` except its tools (matching tools'
    functions are wrapped) and, with timeout faults, its shorter ``tool_timeout_seconds``.
    Raises ``ConfigError`` for a fault that matches no tool or names an unknown result field.
    """
    _check(workflow, profile)
    follow = tuple(f.text or "" for i, f in enumerate(profile.faults)
                   if f.kind == "contradict" and _fires(f.rate, seed, task_id, "contradict", 0, i))
    log = FaultLog(follow_ups=follow)
    for text in follow:
        log.record(FaultEvent(tool="*", kind="contradict", call=0, detail=text[:80]))
    tools: list[ToolSpec[Any, Any]] = []
    for spec in workflow.tools.tools:
        mine = tuple((i, f) for i, f in enumerate(profile.faults) if _applies(f, spec))
        if not mine:
            tools.append(spec)
            continue
        outputs = workflow.policy.outputs(spec.name)
        plan = _Plan(spec=spec, faults=mine, content=outputs.content if outputs is not None else (),
                     seed=seed, task_id=task_id, log=log)
        tools.append(dataclasses.replace(spec, fn=plan.wrap()))
    faulted = dataclasses.replace(workflow, tools=Toolset(tools=tools),
                                  tool_timeout_seconds=profile.tool_timeout(workflow.tool_timeout_seconds))
    return faulted, log
