"""``langgraph dev`` serves the support desk from ``langgraph.json``: run, interrupt, resume over HTTP."""

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
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).with_name("langgraph")
pytestmark = pytest.mark.slow


def test_langgraph_json_points_at_the_support_graph_factory() -> None:
    spec = json.loads((ROOT / "langgraph.json").read_text())
    path, _, name = spec["graphs"]["support"].partition(":")
    assert (ROOT / path).is_file() and name == "make_graph"


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if not LANGGRAPH.exists():
        if os.environ.get("CI"):
            pytest.fail("langgraph-cli[inmem] is part of the dev extra and must be installed in CI")
        pytest.skip("langgraph CLI not installed: pip install 'tether[studio]'")
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


def test_studio_run_pauses_for_approval_and_resumes(server: tuple[str, Path]) -> None:
    url, home = server
    thread = _post(f"{url}/threads", {})["thread_id"]
    request = {"role": "user", "content": "Please refund $40 for order O-20417, the kettle arrived damaged"}
    first = _post(
        f"{url}/threads/{thread}/runs/wait",
        {"assistant_id": "support", "input": {"messages": [request], "subject": {"id": "C-1042"}}},
    )
    (intr,) = first["__interrupt__"]
    assert intr["value"]["rule_id"] == "tools.issue_refund.require_approval_over_usd"
    final = _post(
        f"{url}/threads/{thread}/runs/wait",
        {"assistant_id": "support", "command": {"resume": {"kind": "approve", "approver": "studio"}}},
    )
    assert final["outcome"]["kind"] == "resolved", final
    with sqlite3.connect(home / "world" / "support.sqlite") as db:
        rows = db.execute(
            "SELECT amount_usd FROM refunds WHERE idempotency_key LIKE ?", (f"{thread}:%",)
        ).fetchall()
    assert rows == [(40.0,)]
