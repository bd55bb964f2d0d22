"""Traces: LangSmith runs carry tether's labels and join the ledger; OpenTelemetry spans follow GenAI conventions."""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tether import Approve, Home, Session

REFUND = "Refund $18 on order O-20417"
BIG = "Refund $40 on order O-20417"


class _LangSmith(BaseHTTPRequestHandler):
    """Plays the LangSmith ingestion API: /info, POST /runs, PATCH /runs/<id>, /runs/batch, /runs/multipart."""

    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        self._reply(200, {"version": "0.10.0", "batch_ingest_config": {
            "use_multipart_endpoint": True, "size_limit": 100, "size_limit_bytes": 20_000_000,
            "scale_up_nthreads_limit": 16, "scale_up_qsize_trigger": 1000, "scale_down_nempty_trigger": 4},
                          "instance_flags": {}})

    def do_PATCH(self) -> None:
        self.server.requests.append(("PATCH", self.path))
        run = json.loads(self._body())
        run["id"] = self.path.rsplit("/", 1)[-1]
        self.server.record("patch", run)
        self._reply(200, {})

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        body = self._body()
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/runs/multipart"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            parts: dict[str, dict[str, Any]] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                op, run_id, *field = str(name).split(".")
                payload = json.loads(part.get_content() if isinstance(part.get_content(), str)
                                     else part.get_content().decode())
                run = parts.setdefault(f"{op}.{run_id}", {"id": run_id})
                if field:
                    run[field[0]] = payload
                else:
                    run.update(payload)
            for key, run in parts.items():
                self.server.record(key.split(".")[0], run)
        elif path.endswith("/runs/batch"):
            data = json.loads(body)
            for op in ("post", "patch"):
                for run in data.get(op, []):
                    self.server.record(op, run)
        elif path.endswith("/runs"):
            self.server.record("post", json.loads(body))
        self._reply(202, {})


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LangSmith)
        self.requests: list[tuple[str, str]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def record(self, op: str, run: dict[str, Any]) -> None:
        with self.lock:
            merged = self.runs.setdefault(str(run["id"]), {})
            extra = {**merged.get("extra", {}), **(run.get("extra") or {})}
            merged.update({k: v for k, v in run.items() if v is not None})
            merged["extra"] = extra


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _fresh_langsmith(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Point LangSmith at ``env`` alone: its env-derived settings and client are cached."""
    from langsmith import run_trees, utils

    for name in ("LANGSMITH_TRACING", "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING",
                 "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT",
                 "LANGSMITH_PROJECT", "LANGCHAIN_PROJECT", "TETHER_OTEL"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    utils.get_env_var.cache_clear()
    utils.get_tracer_project.cache_clear()
    monkeypatch.setattr(run_trees, "_CLIENT", None)


def _flush() -> None:
    from langchain_core.tracers.langchain import wait_for_all_tracers

    wait_for_all_tracers()


def _play(tmp_path: Path) -> tuple[list[Any], str, list[str]]:
    """A small refund (resolved) and a larger one (approved, then executed): rows, approval id, trace ids."""
    traces = []
    with Session.open("support", home=Home(root=tmp_path)) as s:
        assert s.run(REFUND, thread_id="T-small", subject="C-1042").status == "resolved"
        traces.append(str(s.last_trace_id))
        asked = s.run(BIG, thread_id="T-big", subject="C-1042")
        traces.append(str(s.last_trace_id))
        assert asked.status == "awaiting_approval"
        approval = asked.waiting_for[0].approval_id
        assert s.decide(approval, Approve(approver="lead@example.com")).status == "resolved"
        traces.append(str(s.last_trace_id))
        rows = s.events("T-small") + s.events("T-big")
    return rows, approval, traces


def test_langsmith_runs_carry_labels_and_join_the_ledger(tmp_path: Path, server: _Server,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_langsmith(monkeypatch, {"LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "test",
                                   "LANGSMITH_PROJECT": "tether-test",
                                   "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{server.server_port}"})
    rows, approval, traces = _play(tmp_path)
    _flush()
    runs = server.runs
    roots = {rid: r for rid, r in runs.items() if not r.get("parent_run_id")}
    assert set(traces) <= set(roots), "every invocation is a root run under the id the session chose"
    for rid in traces:
        meta = roots[rid]["extra"]["metadata"]
        assert meta["tether_trace_id"] == rid and meta["tether_workflow"] == "support"
        assert meta["tether_policy_version"] and meta["tether_prompt_version"]
        assert meta["tether_model"] == "offline:support-v1" and meta["tether_router_model"] == "offline:router-v1"
        assert "tether" in roots[rid]["tags"]
    # every run of a trace carries the labels; the ledger's run ids are named by the traces
    for r in runs.values():
        assert r["extra"]["metadata"]["tether_workflow"] == "support"
    by_run = {roots[t]["extra"]["metadata"]["tether_run_id"] for t in traces}
    assert {r.run_id for r in rows} == by_run
    assert {r.run_id for r in rows} <= set(roots), "a ledger run id is the root run id of the trace that started it"
    small_trace = roots[traces[0]]["extra"]["metadata"]
    assert small_trace["tether_thread_id"] == "T-small"
    executed = [r for r in rows if r.event == "executed" and r.tool == "issue_refund"]
    assert executed and all(r.idempotency_key for r in executed)
    keys = [k for t in traces for k in roots[t]["extra"]["metadata"].get("tether_idempotency_keys", [])]
    assert all(r.idempotency_key in keys for r in executed)
    # the approval: named by the trace that asked and the trace that executed, and by the act node's run
    assert approval in roots[traces[1]]["extra"]["metadata"]["tether_approval_ids"]
    assert approval in roots[traces[2]]["extra"]["metadata"]["tether_approval_ids"]
    act = [r for r in runs.values() if r.get("name") == "act" and r.get("trace_id") == traces[2]]
    assert act and approval in act[0]["extra"]["metadata"]["tether_approval_ids"]
    assert "tether:executed" in act[0]["tags"]


def test_nothing_is_sent_without_a_key(tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_langsmith(monkeypatch, {"LANGSMITH_ENDPOINT": f"http://127.0.0.1:{server.server_port}"})
    _play(tmp_path)
    _flush()
    assert server.requests == []
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/info", timeout=5) as resp:
        assert resp.status == 200  # the endpoint was there all along
    assert server.requests == [("GET", "/info")]


def test_otel_spans_have_genai_and_tether_attributes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _fresh_langsmith(monkeypatch, {})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with Session.open("support", home=Home(root=tmp_path), tracer_provider=provider) as s:
        asked = s.run(BIG, thread_id="T-otel", subject="C-1042")
        first = str(s.last_trace_id)
        approval = asked.waiting_for[0].approval_id
        s.decide(approval, Approve(approver="lead@example.com"))
        rows = s.events("T-otel")
    spans = exporter.get_finished_spans()
    attrs = [dict(sp.attributes or {}) for sp in spans]
    agents = [a for a in attrs if a.get("gen_ai.operation.name") == "invoke_agent"]
    assert len(agents) == 2 and agents[0]["tether.trace_run_id"] == first
    assert all(a["tether.thread_id"] == "T-otel" for a in agents)
    chats = [a for a in attrs if a.get("gen_ai.operation.name") == "chat"]
    assert {a["gen_ai.request.model"] for a in chats} == {"offline:router-v1", "offline:support-v1"}
    assert all(int(a["gen_ai.usage.input_tokens"]) > 0 and int(a["gen_ai.usage.output_tokens"]) > 0 for a in chats)
    tools = [a for a in attrs if a.get("gen_ai.operation.name") == "execute_tool"]
    refund = [a for a in tools if a["gen_ai.tool.name"] == "issue_refund"]
    executed = next(r for r in rows if r.event == "executed" and r.tool == "issue_refund")
    assert refund and refund[0]["tether.approval_id"] == approval
    assert refund[0]["tether.idempotency_key"] == executed.idempotency_key
    assert refund[0]["tether.rule_id"] == executed.rule_id and refund[0]["tether.decision"] == "require_approval"
    assert refund[0]["tether.run_id"] == executed.run_id
    nodes = {sp.name for sp in spans}
    assert {"node router", "node reasoning", "node policy_check", "node act"} <= nodes
    tool_span = next(sp for sp in spans if sp.name == "execute_tool issue_refund")
    parent = next(sp for sp in spans if sp.context.span_id == tool_span.parent.span_id)
    assert parent.name == "node act"
