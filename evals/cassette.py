"""Record and replay chat models: evals that run the same without the provider.

``record_models(workflow, path)`` wraps the workflow's router and reasoning models so every
request and response is appended to a cassette (JSON Lines, one exchange per line, appended
under a file lock so several processes can record into one file). ``replay_models(workflow,
path)`` serves the recorded responses instead, by the request's key; a request the cassette
does not have raises ``CassetteMiss`` showing the nearest recorded request and a diff.
``finalise_cassette(path)`` dedupes and sorts a cassette so it is stable under version control.

The key (``request_key``) hashes a normalised request: each message's type, text, tool calls
(name and arguments) and tool name, with message and call ids dropped and volatile text
(UUIDs, hex ids of 16 or more digits such as approval and action ids, ISO timestamps) replaced by placeholders; plus the bound
tool schemas and ``tool_choice``. Model ids are unchanged, so prices and spend are the same on
replay (token usage is part of the recorded response).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage, messages_from_dict, messages_to_dict
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from tether.errors import TetherError
from tether.graphs.workflow import Workflow

__all__ = [
    "Cassette",
    "CassetteEntry",
    "CassetteError",
    "CassetteMiss",
    "RecordingChatModel",
    "ReplayChatModel",
    "finalise_cassette",
    "normalise_request",
    "record_models",
    "replay_misses",
    "replay_models",
    "request_key",
]

_VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<ts>"),
    (re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{16,}(?![0-9A-Za-z])"), "<hex>"),
)
"""Text that differs between two identical runs: replaced before hashing."""
DIFF_LINES = 30


class CassetteError(TetherError):
    """A cassette cannot be read (missing, or a line that is not a recorded exchange)."""

    def __init__(self, *, path: str, reason: str, line: int | None = None) -> None:
        self.path, self.reason, self.line = path, reason, line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"cassette {where}: {reason}")


class CassetteMiss(CassetteError):
    """A model request the cassette has no response for: the run would differ from the recording."""

    def __init__(self, *, path: str, key: str, model_id: str, nearest: str | None, diff: str,
                 similarity: float | None) -> None:
        self.key, self.model_id, self.nearest, self.diff = key, model_id, nearest, diff
        if nearest is None:
            shown = f"the cassette has no request for {model_id} at all"
        else:
            shown = (f"nearest recorded request (similarity {similarity or 0:.3f}), recorded -> now:\n{diff}")
        TetherError.__init__(self, f"cassette {path}: no recorded response for this {model_id} request "
                             f"(key {key[:16]}).\n{shown}\nThe prompts, tools or tool results changed since "
                             "the recording: re-record the cassette (run the evals with --record), or fix the change.")
        self.path, self.reason, self.line = path, "miss", None


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for pattern, placeholder in _VOLATILE:
            value = pattern.sub(placeholder, value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _content(m: BaseMessage) -> Any:
    if isinstance(m, ToolMessage) and isinstance(m.content, str):
        try:  # tool replies are JSON: normalise inside them (ids, timestamps)
            return _scrub(json.loads(m.content))
        except ValueError:
            pass
    return _scrub(m.content)


def _tool_schema(t: Any) -> dict[str, Any]:
    schema = t if isinstance(t, dict) and "function" in t else convert_to_openai_tool(t)
    fn = schema.get("function", {})
    return {"name": fn.get("name"), "description": fn.get("description", ""), "parameters": fn.get("parameters", {})}


def normalise_request(messages: Sequence[BaseMessage], tools: Sequence[Any] = (), *,
                      tool_choice: Any = None) -> dict[str, Any]:
    """The request as the key sees it (ids dropped, volatile text replaced)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        row: dict[str, Any] = {"type": m.type, "content": _content(m)}
        if isinstance(m, AIMessage) and m.tool_calls:
            row["tool_calls"] = [[tc["name"], _scrub(tc["args"])] for tc in m.tool_calls]
        if isinstance(m, ToolMessage):
            row["name"] = m.name
        out.append(row)
    request: dict[str, Any] = {"messages": out, "tools": [_tool_schema(t) for t in tools]}
    if tool_choice is not None:
        request["tool_choice"] = _scrub(tool_choice)
    return request


def _canonical(request: Mapping[str, Any]) -> str:
    return json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(messages: Sequence[BaseMessage], tools: Sequence[Any] = (), *, tool_choice: Any = None) -> str:
    """sha256 of the normalised request (see ``normalise_request``)."""
    return hashlib.sha256(_canonical(normalise_request(messages, tools, tool_choice=tool_choice))
                          .encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class CassetteEntry:
    """One recorded exchange."""

    key: str
    model_id: str
    request: dict[str, Any]
    response: dict[str, Any]

    def line(self) -> str:
        return json.dumps({"key": self.key, "model_id": self.model_id, "request": self.request,
                           "response": self.response}, sort_keys=True, ensure_ascii=False)

    def message(self) -> AIMessage:
        msg = messages_from_dict([self.response])[0]
        if not isinstance(msg, AIMessage):
            raise CassetteError(path="?", reason=f"recorded response for {self.key[:16]} is a {msg.type} message")
        return msg


_FIELDS = ("key", "model_id", "request", "response")


@dataclass(frozen=True, kw_only=True, slots=True)
class Cassette:
    """The exchanges of one cassette file, by (model id, key)."""

    path: Path
    entries: Mapping[tuple[str, str], CassetteEntry]

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        """Read ``path``; raises ``CassetteError`` naming the line of anything that is not an exchange."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CassetteError(path=str(p), reason="no such file; record one first (run the evals "
                                "with --record)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CassetteError(path=str(p), reason=f"cannot be read: {exc}") from None
        entries: dict[tuple[str, str], CassetteEntry] = {}
        for n, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                e = _parse(raw, str(p), n)
                entries.setdefault((e.model_id, e.key), e)
        return cls(path=p, entries=entries)

    def get(self, model_id: str, key: str) -> CassetteEntry | None:
        return self.entries.get((model_id, key))

    def nearest(self, model_id: str, request: Mapping[str, Any]) -> tuple[CassetteEntry | None, float]:
        """The recorded request of ``model_id`` most like ``request`` (difflib ratio) and the ratio."""
        now = _pretty(request)
        best: tuple[CassetteEntry | None, float] = (None, 0.0)
        for (mid, _), e in self.entries.items():
            if mid != model_id:
                continue
            sm = difflib.SequenceMatcher(None, _pretty(e.request), now, autojunk=False)
            if sm.real_quick_ratio() > best[1] and sm.quick_ratio() > best[1] and (r := sm.ratio()) > best[1]:
                best = (e, r)
        return best


def _parse(raw: str, path: str, n: int) -> CassetteEntry:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CassetteError(path=path, line=n, reason=f"not JSON ({exc}); re-record the cassette or "
                            "delete the broken line") from None
    if not isinstance(data, dict) or sorted(data) != sorted(_FIELDS):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CassetteError(path=path, line=n, reason=f"an exchange has exactly the keys {list(_FIELDS)}; got {got}")
    bad = [k for k, t in (("key", str), ("model_id", str), ("request", dict), ("response", dict))
           if not isinstance(data[k], t)]
    if bad or not re.fullmatch(r"[0-9a-f]{64}", data["key"]):
        raise CassetteError(path=path, line=n, reason=f"malformed exchange (bad {bad or ['key']}); re-record it")
    entry = CassetteEntry(key=data["key"], model_id=data["model_id"], request=data["request"],
                          response=data["response"])
    try:
        entry.message()
    except (CassetteError, KeyError, ValueError, TypeError) as exc:
        raise CassetteError(path=path, line=n, reason=f"the response is not a recorded AI message: {exc}") from None
    return entry


def _pretty(request: Mapping[str, Any]) -> str:
    return json.dumps(request, sort_keys=True, indent=1, ensure_ascii=False)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    lines = list(difflib.unified_diff(_pretty(old).splitlines(), _pretty(new).splitlines(),
                                      "recorded", "now", n=1, lineterm=""))
    more = f"\n... ({len(lines) - DIFF_LINES} more diff lines)" if len(lines) > DIFF_LINES else ""
    return "\n".join(lines[:DIFF_LINES]) + more


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield fh
        finally:
            fh.flush()
            os.fsync(fh.fileno())
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _response_dict(msg: AIMessage) -> dict[str, Any]:
    d: dict[str, Any] = messages_to_dict([msg.model_copy(update={"id": None})])[0]
    return d


class _Taping(BaseChatModel):
    """What recording and replaying share: tool binding as keyword arguments, a pinned id."""

    model_id: str
    cassette: str
    """Path of the cassette file."""

    @property
    def _llm_type(self) -> str:
        return self.model_id

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
        return self.bind(tools=list(tools), **extra, **kwargs)  # type: ignore[return-value]


class RecordingChatModel(_Taping):
    """Calls ``base`` and appends each exchange to the cassette."""

    base: BaseChatModel

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tools, choice = list(kwargs.pop("tools", [])), kwargs.pop("tool_choice", None)
        model: Runnable[LanguageModelInput, Any] = self.base
        if tools or choice is not None:
            model = self.base.bind_tools(tools, **({"tool_choice": choice} if choice is not None else {}), **kwargs)
        reply = model.invoke(messages, stop=stop) if stop else model.invoke(messages)
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        request = normalise_request(messages, tools, tool_choice=choice)
        entry = CassetteEntry(key=hashlib.sha256(_canonical(request).encode()).hexdigest(), model_id=self.model_id,
                              request=request, response=_response_dict(reply))
        with _locked(Path(self.cassette)) as fh:
            fh.write(entry.line() + "\n")
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ReplayChatModel(_Taping):
    """Serves the cassette's recorded responses by request key; raises ``CassetteMiss`` otherwise."""

    _tape: Cassette | None = PrivateAttr(default=None)
    _misses: list[CassetteMiss] = PrivateAttr(default_factory=list)

    def tape(self) -> Cassette:
        if self._tape is None:
            self._tape = Cassette.load(self.cassette)
        return self._tape

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tape = self.tape()
        request = normalise_request(messages, list(kwargs.get("tools", [])), tool_choice=kwargs.get("tool_choice"))
        key = hashlib.sha256(_canonical(request).encode()).hexdigest()
        entry = tape.get(self.model_id, key)
        if entry is None:
            near, ratio = tape.nearest(self.model_id, request)
            miss = CassetteMiss(path=str(tape.path), key=key, model_id=self.model_id,
                                nearest=_pretty(near.request) if near else None,
                                diff=_diff(near.request, request) if near else "", similarity=ratio)
            self._misses.append(miss)  # the workflow turns a reasoning-model error into an escalation
            raise miss
        return ChatResult(generations=[ChatGeneration(message=entry.message())])


def record_models(workflow: Workflow, path: str | Path) -> Workflow:
    """``workflow`` with its router and reasoning models recording into the cassette at ``path``."""
    p = str(path)
    return dataclasses.replace(
        workflow,
        router_model=RecordingChatModel(base=workflow.router_model, model_id=workflow.router_model_id, cassette=p),
        model=RecordingChatModel(base=workflow.model, model_id=workflow.model_id, cassette=p),
    )


def replay_models(workflow: Workflow, path: str | Path) -> Workflow:
    """``workflow`` with its models replaced by replays of the cassette at ``path`` (loaded now)."""
    tape = Cassette.load(path)
    misses: list[CassetteMiss] = []
    models = []
    for model_id in (workflow.router_model_id, workflow.model_id):
        m = ReplayChatModel(model_id=model_id, cassette=str(path))
        m._tape, m._misses = tape, misses
        models.append(m)
    return dataclasses.replace(workflow, router_model=models[0], model=models[1])


def replay_misses(workflow: Workflow) -> tuple[CassetteMiss, ...]:
    """The cassette misses of a replaying workflow so far, in order.

    A miss of the router model raises out of the run; one of the reasoning model is caught by
    the workflow (which escalates with ``model.error``), so check this after every run.
    """
    seen: list[CassetteMiss] = []
    for model in (workflow.router_model, workflow.model):
        if isinstance(model, ReplayChatModel):
            seen += [m for m in model._misses if not any(m is s for s in seen)]
    return tuple(seen)


def finalise_cassette(path: str | Path) -> int:
    """Dedupe ``path`` by (model id, key), sort it and rewrite it atomically; returns the exchanges kept."""
    p = Path(path)
    tape = Cassette.load(p)
    lines = [tape.entries[k].line() for k in sorted(tape.entries)]
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cassette is shared, like any source file
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(lines)
