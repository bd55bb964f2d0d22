"""Record and replay of chat models: real support-desk runs, replayed in fresh data dirs."""

from __future__ import annotations

import inspect
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from tether.config import Home
from tether.evals.cassette import (
    Cassette,
    CassetteError,
    CassetteMiss,
    RecordingChatModel,
    ReplayChatModel,
    finalise_cassette,
    record_models,
    replay_misses,
    replay_models,
    request_key,
)
from tether.graphs.session import Session
from tether.graphs.state import Approve, Escalated, Reject
from tether.graphs.workflow import Workflow
from tether.models import ScriptedChatModel

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Task:
    id: str
    requests: tuple[str, ...]
    decisions: tuple[Approve | Reject, ...] = ()
    subject: str = "C-1042"


TASKS = (
    Task(id="refund-small", requests=("Refund $18 on order O-20417, it arrived damaged",)),
    Task(id="refund-approved", requests=("Refund $40 on order O-20417",),
         decisions=(Approve(approver="lead@example.com"),)),
    Task(id="refund-rejected", requests=("Refund $30 on order O-20417",),
         decisions=(Reject(approver="lead@example.com", reason="too much"),)),
    Task(id="two-requests", requests=("What is your warranty policy?", "Update my phone to +1-555-0100")),
)


def _open(root: Path, adapt: Callable[[Workflow], Workflow]) -> Session:
    if "adapt" in inspect.signature(Session.open).parameters:
        return Session.open("support", home=Home(root=root), adapt=adapt)  # type: ignore[call-arg]
    s = Session.open("support", home=Home(root=root))
    adapted = Session(workflow=adapt(s.workflow), checkpointer=InMemorySaver())
    adapted._stack.callback(s.close)
    return adapted


def play(s: Session, task: Task) -> dict[str, Any]:
    """Run a task (its requests, then its decisions) and return what the ledger shows."""
    thread = task.id
    decisions = list(task.decisions)
    for text in task.requests:
        r = s.run(text, thread_id=thread, subject=task.subject)
        while r.waiting_for and decisions:
            s.decide(r.waiting_for[0].approval_id, decisions.pop(0))
            r = s.result(thread)
    rows = [[e.event, e.tool, e.decision, e.rule_id, e.approver, round(e.spend_usd or 0.0, 10), e.model_id,
             [c["ok"] for c in e.citations or ()]] for e in s.events(thread)]
    answer = getattr(r.outcome, "answer", None) or getattr(r.outcome, "reason", None)
    return {"status": r.status, "answer": answer, "rows": rows}


def _run_all(root: Path, adapt: Callable[[Workflow], Workflow]) -> dict[str, dict[str, Any]]:
    with _open(root, adapt) as s:
        return {t.id: play(s, t) for t in TASKS}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    d = tmp_path_factory.mktemp("cassette")
    tape = d / "support.jsonl"
    outcomes = _run_all(d / "rec", lambda wf: record_models(wf, tape))
    return tape, outcomes


def test_recording_is_transparent(recorded: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _, outcomes = recorded
    assert outcomes["refund-small"]["status"] == "resolved"
    assert outcomes["refund-approved"]["rows"][-1][0] == "responded"
    assert any(r[0] == "rejected" for r in outcomes["refund-rejected"]["rows"])
    assert all(o["rows"][-1][5] > 0 for o in outcomes.values())  # notional prices: real spend
    with Session.open("support", home=Home(root=recorded[0].parent / "plain")) as s:
        assert play(s, TASKS[0]) == outcomes["refund-small"]  # the same as without recording


def test_two_fresh_data_dirs_record_the_same_keys(recorded: tuple[Path, dict[str, dict[str, Any]]],
                                                  tmp_path: Path) -> None:
    tape, outcomes = recorded
    again = tmp_path / "again.jsonl"
    assert _run_all(tmp_path / "rec2", lambda wf: record_models(wf, again)) == outcomes
    first, second = Cassette.load(tape), Cassette.load(again)
    assert set(first.entries) == set(second.entries)
    assert len(tape.read_text().splitlines()) == len(again.read_text().splitlines())


def test_replay_in_a_fresh_data_dir_gives_the_same_ledger(recorded: tuple[Path, dict[str, dict[str, Any]]],
                                                          tmp_path: Path) -> None:
    tape, outcomes = recorded
    final = tmp_path / "final.jsonl"
    final.write_bytes(tape.read_bytes())
    kept = finalise_cassette(final)
    assert kept == len(Cassette.load(tape).entries)
    stable = final.read_bytes()
    assert finalise_cassette(final) == kept and final.read_bytes() == stable  # stable under git
    lines = [json.loads(line) for line in stable.decode().splitlines()]
    assert [(x["model_id"], x["key"]) for x in lines] == sorted((x["model_id"], x["key"]) for x in lines)
    workflows: list[Workflow] = []

    def adapt(wf: Workflow) -> Workflow:
        workflows.append(replay_models(wf, final))
        return workflows[-1]

    assert _run_all(tmp_path / "replay", adapt) == outcomes
    wf = workflows[0]
    assert isinstance(wf.model, ReplayChatModel) and isinstance(wf.router_model, ReplayChatModel)
    assert (wf.router_model_id, wf.model_id) == ("offline:router-v1", "offline:support-v1")
    assert replay_misses(wf) == ()


_REPLAY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from test_cassette import TASKS, _open, play
from tether.evals.cassette import replay_models
with _open(Path(sys.argv[2]), lambda wf: replay_models(wf, sys.argv[1])) as s:
    print(json.dumps({t.id: play(s, t) for t in TASKS}))  # in order: the tasks share the world
"""


def test_replay_in_a_new_process(recorded: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    tape, outcomes = recorded
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    proc = subprocess.run([sys.executable, "-c", _REPLAY_SCRIPT, str(tape), str(tmp_path / "proc"),
                           str(ROOT / "tests")], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == json.loads(json.dumps(outcomes))


def test_a_changed_router_request_misses_with_the_nearest_and_a_diff(
        recorded: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    tape, _ = recorded
    with _open(tmp_path / "miss", lambda wf: replay_models(wf, tape)) as s, pytest.raises(CassetteMiss) as err:
        s.run("Refund $19 on order O-20417, it arrived damaged", thread_id="m", subject="C-1042")
    text = str(err.value)
    assert str(tape) in text and err.value.key[:16] in text and "offline:router-v1" in text
    assert "nearest recorded request (similarity 0." in text
    assert '\n-   "content": "Refund $18 on order O-20417, it arrived damaged",' in text
    assert '\n+   "content": "Refund $19 on order O-20417, it arrived damaged",' in text
    assert "re-record the cassette (run the evals with --record)" in text
    assert err.value.nearest is not None and "Refund $18" in err.value.nearest
    assert len(err.value.diff.splitlines()) <= 31


def test_a_reasoning_miss_is_reported_after_the_run(recorded: tuple[Path, dict[str, dict[str, Any]]],
                                                    tmp_path: Path) -> None:
    tape, _ = recorded
    changed: list[Workflow] = []

    def adapt(wf: Workflow) -> Workflow:  # a new prompt version: every reasoning request changes
        import dataclasses

        changed.append(replay_models(dataclasses.replace(wf, system_prompt=wf.system_prompt + " Be brief."), tape))
        return changed[-1]

    with _open(tmp_path / "prompt", adapt) as s:
        r = s.run(TASKS[0].requests[0], thread_id="p", subject="C-1042")
    assert isinstance(r.outcome, Escalated) and r.outcome.rule_id == "model.error"
    misses = replay_misses(changed[0])
    assert len(misses) == 1 and misses[0].model_id == "offline:support-v1"
    assert "+" in misses[0].diff and "Be brief." in misses[0].diff


def test_an_unknown_model_id_misses(recorded: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    tape, _ = recorded
    model = ReplayChatModel(model_id="offline:other-v9", cassette=str(tape))
    with pytest.raises(CassetteMiss, match="has no request for offline:other-v9 at all"):
        model.invoke([HumanMessage(content="hello")])


# ---------------------------------------------------------------- the file


def test_missing_and_corrupt_cassettes_name_the_line(recorded: tuple[Path, dict[str, dict[str, Any]]],
                                                     tmp_path: Path) -> None:
    tape, _ = recorded
    with pytest.raises(CassetteError, match="no such file; record one first"):
        Cassette.load(tmp_path / "nope.jsonl")
    good = tape.read_text().splitlines()[0]
    cases = [
        ("{not json", "not JSON"),
        (json.dumps({"key": "x"}), "exactly the keys"),
        (json.dumps({**json.loads(good), "key": "abc"}), "malformed exchange"),
        (json.dumps({**json.loads(good), "response": {"type": "nonsense", "data": {}}}), "not a recorded AI message"),
    ]
    for bad, says in cases:
        broken = tmp_path / "broken.jsonl"
        broken.write_text(f"{good}\n\n{bad}\n{good}\n")
        with pytest.raises(CassetteError, match=says) as err:
            Cassette.load(broken)
        assert err.value.line == 3 and f"{broken}:3" in str(err.value)
    with Session.open("support", home=Home(root=tmp_path / "h")) as s, \
            pytest.raises(CassetteError, match=r"broken\.jsonl:3"):
        replay_models(s.workflow, broken)


_WRITER = """
import sys
from langchain_core.messages import AIMessage, HumanMessage
from tether.evals.cassette import RecordingChatModel
from tether.models import ScriptedChatModel
base = ScriptedChatModel(script=[AIMessage(content="y" * 6000)])
rec = RecordingChatModel(base=base, model_id="offline:scripted", cassette=sys.argv[1])
for i in range(int(sys.argv[3])):
    rec.invoke([HumanMessage(content=f"{sys.argv[2]} request {i} " + "x" * 9000)])
"""


def test_two_processes_record_into_one_valid_file(tmp_path: Path) -> None:
    tape = tmp_path / "shared.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tape), name, "40"], stderr=subprocess.PIPE)
             for name in ("alpha", "beta")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    lines = tape.read_text().splitlines()
    assert len(lines) == 80 and all(json.loads(line)["response"]["data"]["content"] == "y" * 6000 for line in lines)
    assert len(Cassette.load(tape).entries) == 80
    assert finalise_cassette(tape) == 80


def test_recording_keeps_usage_and_tool_binding(tmp_path: Path) -> None:
    tape = tmp_path / "one.jsonl"
    call = {"name": "lookup_order", "args": {"order_id": "O-20417"}, "id": "call_1", "type": "tool_call"}
    base = ScriptedChatModel(script=[AIMessage(content="", tool_calls=[call])])  # type: ignore[list-item]
    schema = {"type": "function", "function": {"name": "lookup_order", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}
    rec = RecordingChatModel(base=base, model_id="offline:scripted", cassette=str(tape))
    msgs: list[BaseMessage] = [SystemMessage(content="s"), HumanMessage(content="where is O-20417?")]
    got = rec.bind_tools([schema], tool_choice="auto").invoke(msgs)
    assert isinstance(got, AIMessage) and got.tool_calls[0]["name"] == "lookup_order" and got.usage_metadata
    (entry,) = Cassette.load(tape).entries.values()
    assert entry.key == request_key(msgs, [schema], tool_choice="auto")
    assert entry.request["tool_choice"] == "auto" and entry.request["tools"][0]["name"] == "lookup_order"
    replay = ReplayChatModel(model_id="offline:scripted", cassette=str(tape))
    again = replay.bind_tools([schema], tool_choice="auto").invoke(msgs)
    assert isinstance(again, AIMessage)
    assert again.usage_metadata == got.usage_metadata and again.tool_calls[0]["args"] == {"order_id": "O-20417"}
    with pytest.raises(CassetteMiss):  # the same messages without the tools are another request
        replay.invoke(msgs)


# ---------------------------------------------------------------- the key

_TEXT = st.text(alphabet="abcdefghij klmnop,.", min_size=1, max_size=40)


def _conversation(texts: list[str], ids: Iterator[str], blob: str) -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage(content="sys", id=next(ids))]
    for t in texts:
        call_id = next(ids)
        out += [
            HumanMessage(content=f"{t} ticket {blob}", id=next(ids)),
            AIMessage(content="", id=next(ids), tool_calls=[{"name": "tool", "args": {"q": t}, "id": call_id}]),
            ToolMessage(content=json.dumps({"status": "ok", "result": {"text": t, "approval": f"act-{uuid.uuid4().hex[:16]}",
                                                                       "at": f"2026-12-0{random.randint(1, 9)}T14:{random.randint(10, 59)}:00.{random.randint(0, 999999)}+00:00"}}),
                        tool_call_id=call_id, name="tool", id=next(ids)),
        ]
    return out


def _ids() -> Iterator[str]:
    while True:
        yield uuid.uuid4().hex


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(_TEXT, min_size=1, max_size=4), dashed=st.booleans())
def test_request_key_ignores_ids_and_volatile_text(texts: list[str], dashed: bool) -> None:
    def blob() -> str:
        return str(uuid.uuid4()) if dashed else uuid.uuid4().hex

    a = _conversation(texts, _ids(), blob())
    b = _conversation(texts, _ids(), blob())
    assert request_key(a) == request_key(b)
    assert request_key(a, [{"type": "function", "function": {"name": "tool", "parameters": {}}}]) != request_key(a)


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(_TEXT, min_size=1, max_size=4), which=st.integers(0, 3), extra=_TEXT)
def test_request_key_is_sensitive_to_content(texts: list[str], which: int, extra: str) -> None:
    blob = uuid.uuid4().hex
    changed = list(texts)
    changed[which % len(texts)] += "!" + extra
    assert request_key(_conversation(texts, _ids(), blob)) != request_key(_conversation(changed, _ids(), blob))
    assert request_key([HumanMessage(content=texts[0])]) != request_key([SystemMessage(content=texts[0])])
