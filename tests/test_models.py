"""Models: offline stand-ins, pricing, and a real ``langchain-openai`` model over HTTP.

The provider test starts an OpenAI-compatible chat-completions server on loopback (its replies
come from the offline playbook) and runs the support desk with ``openai:`` model ids through
``langchain-openai``. The server refuses any request whose history leaves a tool call
unanswered, as OpenAI does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai.chat_models.base import _convert_dict_to_message

from tether.agents.support.desk import SupportDesk
from tether.agents.support.models import OfflineSupportModel, register_offline_models, support_router
from tether.config import Home
from tether.errors import ConfigError
from tether.models import ModelConfig, load_chat_model, price_for

REFUND_18 = "I need a refund of $18 for the damaged kettle in order O-20417"


def test_offline_models_are_deterministic_and_report_usage() -> None:
    msgs = [HumanMessage(REFUND_18)]
    a = support_router().bind_tools([]).invoke(msgs)
    b = support_router().bind_tools([]).invoke(msgs)
    assert isinstance(a, AIMessage) and a.tool_calls == b.tool_calls
    assert a.tool_calls[0]["args"] == {"route": "refund"}
    assert a.usage_metadata is not None and a.usage_metadata["input_tokens"] > 0


def test_every_model_needs_a_price_for_its_spend_cap() -> None:
    register_offline_models()
    assert price_for("offline:support-v1").cost(input_tokens=1_000_000, output_tokens=0) == 2.5
    with pytest.raises(ConfigError, match="no price"):
        price_for("openai:some-unpriced-model")


def test_model_ids_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown model id"):
        load_chat_model("anthropic:claude")
    with pytest.raises(ConfigError):
        load_chat_model("openai:")


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        problem = _unanswered(body["messages"])
        if problem:
            self._send(400, {"error": {"message": problem, "type": "invalid_request_error"}})
            return
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        history = [_convert_dict_to_message(m) for m in body["messages"]]
        model = support_router() if tools == ["route"] else OfflineSupportModel()
        reply = model.bind_tools(body.get("tools", [])).invoke(history)
        assert isinstance(reply, AIMessage)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": tc["id"],
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": json.dumps(tc["args"])},
                }
                for tc in reply.tool_calls
            ]
        self._send(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140},
            },
        )

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _unanswered(messages: list[dict[str, Any]]) -> str | None:
    for i, m in enumerate(messages):
        for tc in m.get("tool_calls") or []:
            later = [x for x in messages[i + 1 :] if x.get("role") == "tool"]
            if tc["id"] not in {x.get("tool_call_id") for x in later}:
                return f"tool call {tc['id']} has no tool message"
    return None


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def test_the_desk_runs_on_an_openai_compatible_endpoint(provider: str, home: Home) -> None:
    models = ModelConfig(router="openai:gpt-4o-mini", reasoning="openai:gpt-4o", base_url=provider)
    with SupportDesk(home=home, models=models) as desk:
        r = desk.run(REFUND_18, customer_id="C-1042", thread_id="openai")
        waiting = desk.run(
            "Please refund $40 for order O-20417, the kettle arrived damaged",
            customer_id="C-1042",
            thread_id="openai-2",
        )
        rows = desk.ledger.events("openai")
    assert r.status == "resolved" and "$18.00" in (r.outcome.answer if r.outcome else "")
    assert waiting.status == "awaiting_approval"
    assert {e.model_id for e in rows if e.event == "proposed"} == {"openai:gpt-4o"}
    assert any(e.model_id == "openai:gpt-4o-mini" for e in rows if e.event == "routed")
    assert [b["model"] for b in _Handler.requests][:2] == ["gpt-4o-mini", "gpt-4o"]
    # spend is priced from the provider's reported usage: 120 in + 20 out tokens per call at gpt-4o rates
    spent = max(e.spend_usd or 0 for e in rows)
    assert spent == pytest.approx((120 * 0.15 + 20 * 0.6) / 1e6 + 4 * (120 * 2.5 + 20 * 10) / 1e6, rel=1e-6)


def test_a_provider_error_escalates_instead_of_crashing(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    models = ModelConfig(
        router="offline:router-v1", reasoning="openai:gpt-4o", base_url="http://127.0.0.1:9/v1"
    )
    with SupportDesk(home=home, models=models) as desk:
        r = desk.run(REFUND_18, customer_id="C-1042", thread_id="down")
    assert r.status == "escalated" and r.outcome is not None and r.outcome.rule_id == "model.error"
