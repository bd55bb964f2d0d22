"""Chat models by pinned id, their prices, and deterministic offline models for any workflow.

Model ids are strings recorded in the ledger: ``openai:<model>`` (any OpenAI-compatible
endpoint through ``langchain-openai``), or an id a workflow registered with
``register_model`` (its offline stand-ins). Every model needs a price: spend caps are enforced
in USD, so a model without one is refused.

Offline models for your own workflow, with no network:

* ``KeywordRouter(keywords={"refund": ("refund", "money back")})`` picks a route by keywords
  and answers with a call of the ``route`` tool the workflow offers.
* ``ScriptedChatModel(script=[...])`` plays a fixed list of replies. The turn it plays is read
  from the conversation (replies since the user's last message), not from a counter, so a run
  resumed in another process continues where it stopped. ``by_request`` picks a script by a
  phrase of the request, for threads with several requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict

from tether.errors import ConfigError

__all__ = [
    "PRICES",
    "KeywordRouter",
    "ModelConfig",
    "ModelPrice",
    "OfflineChatModel",
    "ScriptedChatModel",
    "estimate_tokens",
    "load_chat_model",
    "price_for",
    "register_model",
]


class ModelPrice(BaseModel):
    """USD per million tokens, and the output reserved as the worst case before each call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float
    output_per_mtok: float
    max_output_tokens: int = 1024
    """Worst case reserved before each call."""

    def cost(self, *, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def worst_case(self, *, input_tokens: int) -> float:
        return self.cost(input_tokens=input_tokens, output_tokens=self.max_output_tokens)


_OFFLINE_PRICE = ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0, max_output_tokens=256)
PRICES: dict[str, ModelPrice] = {
    "offline:scripted": _OFFLINE_PRICE,
    "offline:keyword-router": _OFFLINE_PRICE,
    "openai:gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "openai:gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "openai:gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    "openai:gpt-4.1": ModelPrice(input_per_mtok=2.00, output_per_mtok=8.00),
}
"""The price table; ``register_model`` adds to it, ``ModelConfig.prices`` overrides it per run."""

_FACTORIES: dict[str, Callable[[], BaseChatModel]] = {}


def register_model(model_id: str, factory: Callable[[], BaseChatModel], *, price: ModelPrice) -> None:
    """Make ``model_id`` loadable by ``load_chat_model`` (e.g. a workflow's offline stand-in)."""
    if ":" not in model_id or model_id.startswith("openai:"):
        raise ConfigError(setting="model id", reason=f"{model_id!r}: use PROVIDER:NAME, not openai:")
    _FACTORIES[model_id] = factory
    PRICES[model_id] = price


def price_for(model_id: str, extra: Mapping[str, ModelPrice] | None = None) -> ModelPrice:
    table = {**PRICES, **(extra or {})}
    try:
        return table[model_id]
    except KeyError:
        raise ConfigError(
            setting=f"price of model {model_id!r}",
            reason="no price in the model price table, so the spend cap cannot be enforced; "
            "pass Workflow(prices={...}) or ModelConfig(prices={...}), or pick one of "
            + ", ".join(sorted(table)),
        ) from None


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A conservative token estimate (about 4 characters per token, rounded up)."""
    chars = 0
    for m in messages:
        chars += len(str(m.content)) + 16
        for tc in getattr(m, "tool_calls", None) or []:
            chars += len(str(tc.get("args"))) + len(tc.get("name", ""))
    return chars // 4 + 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """Which models a run uses. ``None`` takes the workflow's own default."""

    router: str | None = None
    """Cheap model that picks the route."""
    reasoning: str | None = None
    """Stronger model that proposes actions."""
    base_url: str | None = None
    """OpenAI-compatible endpoint for ``openai:`` ids (default: ``OPENAI_BASE_URL`` or OpenAI)."""
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Extra or overriding prices (USD per million tokens)."""

    @classmethod
    def from_env(cls) -> ModelConfig:
        """``TETHER_ROUTER_MODEL``, ``TETHER_MODEL`` and ``TETHER_OPENAI_BASE_URL``."""
        return cls(
            router=os.environ.get("TETHER_ROUTER_MODEL") or None,
            reasoning=os.environ.get("TETHER_MODEL") or None,
            base_url=os.environ.get("TETHER_OPENAI_BASE_URL") or None,
        )


def load_chat_model(model_id: str, *, base_url: str | None = None) -> BaseChatModel:
    """Build the chat model for a pinned id. Raises ``ConfigError`` for unknown ids."""
    if model_id.startswith("openai:"):
        from langchain_openai import ChatOpenAI

        name = model_id.removeprefix("openai:")
        if not name:
            raise ConfigError(setting="model", reason="write openai:<model>, e.g. openai:gpt-4o-mini")
        return ChatOpenAI(model=name, base_url=base_url, temperature=0, max_retries=1, timeout=60)
    factory = _FACTORIES.get(model_id)
    if factory is None:
        known = ", ".join(sorted(_FACTORIES)) or "none registered"
        raise ConfigError(
            setting="model",
            reason=f"unknown model id {model_id!r}; use openai:<model> or a registered id ({known})",
        )
    return factory()


# ---------------------------------------------------------------- offline models


class OfflineChatModel(BaseChatModel):
    """Base of deterministic offline models: tool binding, token usage, a pinned id.

    Subclasses implement ``reply(messages, tools)``; ``tools`` are the bound tool schemas.
    """

    model_id: str = "offline:base"

    @property
    def _llm_type(self) -> str:
        return self.model_id

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=list(tools), **kwargs)  # type: ignore[return-value]

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = [t for t in kwargs.get("tools", []) if isinstance(t, dict) and "function" in t]
        msg = self.reply(messages, tools)
        n_in, n_out = estimate_tokens(messages), estimate_tokens([msg])
        msg.usage_metadata = {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
        msg.response_metadata = {"model_name": self.model_id}
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _since_request(messages: Sequence[BaseMessage]) -> tuple[str, int]:
    """The user's latest text and how many model replies followed it."""
    idx = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    text = str(messages[idx].content) if idx >= 0 else ""
    return text, sum(isinstance(m, AIMessage) for m in messages[idx + 1 :])


class ScriptedChatModel(OfflineChatModel):
    """Plays scripted replies; the turn is read from the conversation, so it survives restarts.

    Raises ``RuntimeError`` when a run asks for a turn the script does not have.
    """

    model_id: str = "offline:scripted"
    script: list[AIMessage] = []
    """Replies for any request, in order."""
    by_request: dict[str, list[AIMessage]] = {}
    """Phrase -> replies: the first phrase found in the request picks its script."""
    calls: list[int] = [0]
    """How many replies this instance produced (for tests; not used to pick a turn)."""

    def model_post_init(self, context: Any) -> None:
        self.calls = [0]

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        text, turn = _since_request(messages)
        script = next((s for phrase, s in self.by_request.items() if phrase in text), self.script)
        if turn >= len(script):
            raise RuntimeError(
                f"ScriptedChatModel: the run asked for reply {turn + 1} to {text[:60]!r}; "
                f"the script has {len(script)}"
            )
        self.calls[0] += 1
        return script[turn].model_copy()


class KeywordRouter(OfflineChatModel):
    """Offline router: the first route whose keyword occurs in the request (case-insensitive).

    Answers with a call of the bound ``route`` tool; the routes it may pick are that tool's enum.
    """

    model_id: str = "offline:keyword-router"
    keywords: dict[str, tuple[str, ...]]
    """Route -> words or phrases that select it, tried in order."""
    default: str | None = None
    """Route when nothing matches (``None``: the first route the workflow offers)."""

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        text, _ = _since_request(messages)
        offered = _route_enum(tools)
        low = text.lower()
        route = next(
            (r for r, words in self.keywords.items() if any(w.lower() in low for w in words)),
            self.default or (offered[0] if offered else "other"),
        )
        call = {"name": "route", "args": {"route": route}, "id": "call_route", "type": "tool_call"}
        return AIMessage(content="", tool_calls=[call])  # type: ignore[list-item]


def _route_enum(tools: list[dict[str, Any]]) -> list[str]:
    for t in tools:
        fn = t.get("function", {})
        if fn.get("name") == "route":
            return list(fn.get("parameters", {}).get("properties", {}).get("route", {}).get("enum", []))
    return []
