"""Routing by difficulty: the tier rule, price files, and fallback on provider errors over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage

from tether.graphs.fallback import Candidate, call_with_fallback, provider_error_kind
from tether.graphs.routing import choose_tier
from tether.guards.budgets import Budgets, Usage
from tether.models import PriceFileError, load_prices, price_for, price_stamp

conf = st.floats(min_value=0.0, max_value=2.0)


@given(difficulty=st.sampled_from(["easy", "hard"]), high=conf, low=conf, threshold=conf)
def test_lowering_confidence_never_moves_a_request_from_strong_to_cheap(difficulty, high, low, threshold) -> None:
    high, low = max(high, low), min(high, low)
    if choose_tier(difficulty, high, threshold) == "strong":
        assert choose_tier(difficulty, low, threshold) == "strong"
    assert choose_tier("hard", high, threshold) == "strong"
    assert choose_tier(difficulty, None, threshold) == "strong"


def test_a_price_file_overrides_and_is_stamped(tmp_path: Path) -> None:
    f = tmp_path / "prices.yaml"
    f.write_text("version: acme-1\nprices:\n  openai:gpt-4o: {input_per_mtok: 1.0, output_per_mtok: 2.0}\n")
    table = load_prices(f)
    assert price_for("openai:gpt-4o", table).input_per_mtok == 1.0
    assert price_for("openai:gpt-4o-mini", table).input_per_mtok == 0.15  # the built-in table still applies
    stamp = price_stamp(["openai:gpt-4o"], table)
    assert stamp["version"] == "acme-1" and stamp != price_stamp(["openai:gpt-4o"])


@pytest.mark.parametrize(("text", "key"), [
    ("prices: {}\n", "version"),
    ("version: v\nprices:\n  openai:gpt-4o: {input_per_mtok: -1, output_per_mtok: 2}\n",
     "prices.openai:gpt-4o.input_per_mtok"),
    ("version: v\nprices:\n  openai:gpt-4o: {input_per_mtok: 1, output_per_mtok: 2, colour: red}\n",
     "prices.openai:gpt-4o.colour"),
    ("version: v\nprices:\n  gpt-4o: {input_per_mtok: 1, output_per_mtok: 2}\n", "prices.gpt-4o"),
    ("version: [unclosed\n", "<file>"),
])
def test_a_bad_price_file_names_the_file_and_the_field(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PriceFileError) as err:
        load_prices(f)
    assert err.value.key == key and str(f) in str(err.value)


class _Provider(BaseHTTPRequestHandler):
    mode = "ok"
    hits: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.hits.append(self.mode)
        if self.mode == "slow":
            time.sleep(1.5)
        status = {"500": 500, "429": 429}.get(self.mode, 200)
        body = {"error": {"message": "boom", "type": "server_error"}} if status != 200 else {
            "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer from {self.mode}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def _server(mode: str) -> ThreadingHTTPServer:
    handler = type(f"P{mode}", (_Provider,), {"mode": mode, "hits": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def servers() -> Iterator[dict[str, ThreadingHTTPServer]]:
    made = {m: _server(m) for m in ("500", "429", "slow", "ok")}
    yield made
    for s in made.values():
        s.shutdown()


def _chat(srv: ThreadingHTTPServer):  # type: ignore[no-untyped-def]
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="gpt-4o", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="test",
                      max_retries=0, timeout=0.5)


@pytest.mark.parametrize(("mode", "kind"), [("500", "server_error"), ("429", "rate_limit"), ("slow", "timeout")])
def test_a_provider_error_falls_back_and_every_attempt_is_charged(servers, mode: str, kind: str) -> None:
    seen: list[tuple[str, str, str]] = []
    budgets = Budgets(max_wall_clock_seconds=60, max_tool_calls=5, max_model_spend_usd=1.0)
    got = call_with_fallback(
        [Candidate(model_id="openai:gpt-4o", model=_chat(servers[mode])),
         Candidate(model_id="openai:gpt-4o-mini", model=_chat(servers["ok"]))],
        [HumanMessage("hello")], [], usage=Usage(), budgets=budgets,
        on_fallback=lambda f, to: seen.append((f.model_id, to, f.kind)))
    assert got.reply is not None and got.reply.content == "answer from ok"
    assert got.model_id == "openai:gpt-4o-mini"
    assert seen == [("openai:gpt-4o", "openai:gpt-4o-mini", kind)]
    assert got.usage.model_calls == 2 and got.usage.spend_usd > price_for("openai:gpt-4o-mini").cost(
        input_tokens=10, output_tokens=5)  # the failed attempt's input counts too


def test_a_fallback_never_spends_past_the_cap(servers) -> None:
    # ~1,000 input tokens: the first attempt's worst case fits under the cap; after its input is
    # charged, the fallback's worst case no longer does
    budgets = Budgets(max_wall_clock_seconds=60, max_tool_calls=5, max_model_spend_usd=0.014)
    got = call_with_fallback(
        [Candidate(model_id="openai:gpt-4o", model=_chat(servers["500"])),
         Candidate(model_id="openai:gpt-4o", model=_chat(servers["ok"]))],
        [HumanMessage("x" * 4000)], [], usage=Usage(), budgets=budgets)
    assert got.reply is None and got.over is not None and got.usage.model_calls == 1
    assert servers["ok"].RequestHandlerClass.hits == []  # type: ignore[attr-defined]


def test_other_errors_are_not_provider_errors() -> None:
    assert provider_error_kind(ValueError("bad")) is None
    assert provider_error_kind(TimeoutError()) == "timeout"
