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

import dataclasses
import fnmatch
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tether.errors import ConfigError, ToolError
from tether.evals.fault_results import Altered, age_evidence, append_text, damage, default_fields, json_of
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


def _applies(f: FaultSpec, spec: ToolSpec[Any, Any]) -> bool:
    if f.kind == "contradict" or not fnmatch.fnmatchcase(spec.name, f.tool):
        return False
    if f.kind == "stale_documents":
        return spec.yields_evidence
    if f.kind in ("missing_fields", "null_fields") and f.fields is None:
        return bool(default_fields(spec.result_model))
    return True


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
            fields = f.fields or default_fields(model)  # non-empty: see _applies
            self.log.record(FaultEvent(tool=name, kind=f.kind, call=call, detail=",".join(fields)))
            return damage(result, fields, remove=f.kind == "missing_fields")
        if not isinstance(result, BaseModel):
            return result  # not a typed result: nothing to age or plant text in
        if f.kind == "stale_documents":
            days = f.max_age_days or 3650.0
            self.log.record(FaultEvent(tool=name, kind=f.kind, call=call, detail=f"{days:g} days"))
            return age_evidence(result, days)
        assert f.kind == "inject" and f.text
        self.log.record(FaultEvent(tool=name, kind="inject", call=call, detail=f.text[:80]))
        if self.spec.yields_evidence:
            ev = [e.model_copy(update={"text": f"{e.text} {f.text}"}) if isinstance(e, Evidence) else e
                  for e in getattr(result, "evidence", None) or []]
            return result.model_copy(update={"evidence": ev})
        data: Any = result.model_dump()
        for path in self.content or ("",):
            data = append_text(data, [p for p in path.split(".") if p], f.text)
        try:
            return type(result).model_validate(data)
        except ValueError:  # a result model that refuses the longer text: hand over the data as is
            return Altered(result, data, json_of(data))


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
