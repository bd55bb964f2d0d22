"""Chat models by id: deterministic offline stand-ins, or any OpenAI-compatible endpoint.

Model ids are pinned strings recorded in the ledger: ``offline:router-v1``,
``offline:support-v1``, or ``openai:<model>`` (for example ``openai:gpt-4o-mini``). An
OpenAI-compatible server is reached by setting ``base_url`` (or ``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel

from tether.agents.models.offline import OfflineRouter, OfflineSupportModel, ScriptedChatModel
from tether.agents.models.pricing import PRICES, ModelPrice, price_for
from tether.errors import ConfigError

__all__ = [
    "PRICES",
    "ModelConfig",
    "ModelPrice",
    "OfflineRouter",
    "OfflineSupportModel",
    "ScriptedChatModel",
    "load_chat_model",
    "price_for",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """Which models a workflow uses. Defaults run offline."""

    router: str = "offline:router-v1"
    """Cheap model that picks the route."""
    reasoning: str = "offline:support-v1"
    """Stronger model that proposes actions."""
    base_url: str | None = None
    """OpenAI-compatible endpoint for ``openai:`` ids (default: ``OPENAI_BASE_URL`` or OpenAI)."""
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Extra or overriding prices (USD per million tokens)."""

    @classmethod
    def from_env(cls) -> ModelConfig:
        return cls(
            router=os.environ.get("TETHER_ROUTER_MODEL", "offline:router-v1"),
            reasoning=os.environ.get("TETHER_MODEL", "offline:support-v1"),
            base_url=os.environ.get("TETHER_OPENAI_BASE_URL") or None,
        )


def load_chat_model(model_id: str, *, base_url: str | None = None) -> BaseChatModel:
    """Build the chat model for a pinned id. Raises ``ConfigError`` for unknown ids."""
    if model_id == "offline:router-v1":
        return OfflineRouter()
    if model_id == "offline:support-v1":
        return OfflineSupportModel()
    if model_id.startswith("openai:"):
        from langchain_openai import ChatOpenAI

        name = model_id.removeprefix("openai:")
        if not name:
            raise ConfigError(setting="model", reason="write openai:<model>, e.g. openai:gpt-4o-mini")
        return ChatOpenAI(model=name, base_url=base_url, temperature=0, max_retries=1, timeout=60)
    raise ConfigError(
        setting="model",
        reason=f"unknown model id {model_id!r}; use offline:router-v1, offline:support-v1 or openai:<model>",
    )
