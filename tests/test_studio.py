"""``langgraph dev`` serves every shipped workflow from ``langgraph.json``: run, interrupt, resume over HTTP.

The server is really started on loopback (the ``langgraph`` CLI of the ``studio`` extra) and every
graph it serves is called the way LangGraph Studio calls it: a run that pauses for an approval,
a resume payload that is not a decision (refused, nothing recorded), then a typed decision.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tether.checkpoints.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).with_name("langgraph")
pytestmark = pytest.mark.slow


GRAPHS: dict[str, str] = json.loads((ROOT / "langgraph.json").read_text())["graphs"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StudioCase:
    """One Studio session with a workflow: what to type, the approval it pauses for, what it changes."""

    input: dict[str, Any]
    rule_id: str
    decision: dict[str, Any]
    world: str
    """The workflow's SQLite world under ``$TETHER_HOME/world``."""
    effect_sql: str
    """Rows the approved write left, for this thread's idempotency keys (``?``: ``thread:%``)."""
    effect: list[tuple[Any, ...]]


CASES: dict[str, StudioCase] = {
    "support": StudioCase(
        input={"messages": [{"role": "user", "content": "Please refund $40 for order O-20417, the kettle arrived damaged"}],
               "subject": {"id": "C-1042"}},
        rule_id="tools.issue_refund.require_approval_over_usd",
        decision={"kind": "approve", "approver": "studio"},
        world="support.sqlite",
        effect_sql="SELECT amount_usd FROM refunds WHERE idempotency_key LIKE ?",
        effect=[(40.0,)],
    ),
    "itdesk": StudioCase(
        input={"messages": [{"role": "user", "content": "Please add me to prod-db, request AR-2004. My one-time code is 119847."}],
               "subject": {"id": "P-1004"}},
        rule_id="tools.grant_group.context.privileged_group",
        decision={"kind": "approve", "approver": "sec-lead@example.com"},
        world="itdesk.sqlite",
        effect_sql="SELECT tool, person_id, target FROM changes WHERE idempotency_key LIKE ?",
        effect=[("grant_group", "P-1004", "prod-db")],
    ),
}


def test_langgraph_json_points_at_a_graph_factory_for_every_shipped_workflow() -> None:
    from tether.graphs.registry import list_workflows

    shipped = {w.name for w in list_workflows()} & {"support", "itdesk"}
    assert set(GRAPHS) >= shipped == {"support", "itdesk"}
    for graph, target in GRAPHS.items():
        path, _, name = target.partition(":")
        assert (ROOT / path).is_file() and name == "make_graph", graph
    assert set(CASES) == set(GRAPHS), "every graph langgraph.json serves needs a Studio case below"


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One server for the module (each test uses threads of its own); its data in a fresh $TETHER_HOME."""
    tmp_path = tmp_path_factory.mktemp("studio")
    if not LANGGRAPH.exists():
        if os.environ.get("CI"):
            pytest.fail("langgraph-cli[inmem] is part of the dev extra and must be installed in CI")
        pytest.skip("langgraph CLI not installed: from a checkout, pip install -e '.[studio]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    env = {**os.environ, "TETHER_HOME": str(home), "LANGSMITH_TRACING": "false"}
    proc = subprocess.Popen(
        [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _post(f"{url}/assistants/search", {})
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(
                        f"langgraph dev did not start: {(proc.stderr.read() if proc.stderr else '')[-2000:]}"
                    )
                time.sleep(0.5)
        yield url, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_server_lists_an_assistant_per_graph(server: tuple[str, Path]) -> None:
    url, _ = server
    assistants = _post(f"{url}/assistants/search", {"limit": 100})
    assert {a["graph_id"] for a in assistants} == set(GRAPHS)


@pytest.mark.parametrize("graph", sorted(CASES))
def test_studio_run_pauses_for_approval_and_resumes(server: tuple[str, Path], graph: str) -> None:
    url, home = server
    case = CASES[graph]
    thread = _post(f"{url}/threads", {})["thread_id"]
    first = _post(f"{url}/threads/{thread}/runs/wait", {"assistant_id": graph, "input": case.input})
    (intr,) = first["__interrupt__"]
    assert intr["value"]["rule_id"] == case.rule_id
    approval_id = intr["value"]["approval_id"]

    # a payload that is not a decision: refused with the accepted shapes, the approval stays pending
    bad = _post(f"{url}/threads/{thread}/runs/wait",
                {"assistant_id": graph, "command": {"resume": {"kind": "approve"}}})
    (again,) = bad["__interrupt__"]
    assert again["value"]["approval_id"] == approval_id
    assert '"kind": "approve", "approver": "NAME"' in (again["value"]["refused"] or "")
    with sqlite3.connect(home / "world" / case.world) as db:
        assert db.execute(case.effect_sql, (f"{thread}:%",)).fetchall() == []

    final = _post(f"{url}/threads/{thread}/runs/wait",
                  {"assistant_id": graph, "command": {"resume": case.decision}})
    assert final["outcome"]["kind"] == "resolved", final
    assert not final.get("__interrupt__")
    with sqlite3.connect(home / "world" / case.world) as db:
        assert db.execute(case.effect_sql, (f"{thread}:%",)).fetchall() == case.effect
    ledger = Ledger.open(home / "ledger.sqlite")
    try:
        approval = ledger.approval(approval_id)
        executed = [r for r in ledger.events(thread) if r.event == "executed" and r.approval_id == approval_id]
    finally:
        ledger.close()
    assert (approval.status, approval.decided_by) == ("approved", case.decision["approver"])
    assert len(executed) == 1


def test_studio_reject_runs_nothing(server: tuple[str, Path]) -> None:
    url, home = server
    case = CASES["support"]
    thread = _post(f"{url}/threads", {})["thread_id"]
    first = _post(f"{url}/threads/{thread}/runs/wait", {"assistant_id": "support", "input": case.input})
    assert first["__interrupt__"]
    final = _post(f"{url}/threads/{thread}/runs/wait", {"assistant_id": "support", "command": {
        "resume": {"kind": "reject", "approver": "studio", "reason": "no photo of the damage"}}})
    assert not final.get("__interrupt__")
    with sqlite3.connect(home / "world" / case.world) as db:
        assert db.execute(case.effect_sql, (f"{thread}:%",)).fetchall() == []
