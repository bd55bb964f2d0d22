"""Model price table: spend caps are enforced in USD, so every model needs a price.

Prices are USD per million tokens. The offline models carry a notional price so that spend
caps are exercised offline exactly as they would be with a paid provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict

from tether.errors import ConfigError

__all__ = ["PRICES", "ModelPrice", "estimate_tokens", "price_for"]


class ModelPrice(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_per_mtok: float
    output_per_mtok: float
    max_output_tokens: int = 1024
    """Worst case reserved before each call."""

    def cost(self, *, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def worst_case(self, *, input_tokens: int) -> float:
        return self.cost(input_tokens=input_tokens, output_tokens=self.max_output_tokens)


PRICES: Mapping[str, ModelPrice] = {
    # offline stand-ins: notional prices in the range of a small and a large hosted model
    "offline:router-v1": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60, max_output_tokens=64),
    "offline:support-v1": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00, max_output_tokens=512),
    "openai:gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "openai:gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "openai:gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    "openai:gpt-4.1": ModelPrice(input_per_mtok=2.00, output_per_mtok=8.00),
}


def price_for(model_id: str, extra: Mapping[str, ModelPrice] | None = None) -> ModelPrice:
    table = {**PRICES, **(extra or {})}
    try:
        return table[model_id]
    except KeyError:
        raise ConfigError(
            setting=f"price of {model_id}",
            reason="no price in the model price table, so the spend cap cannot be enforced; "
            "pass prices={...} to ModelConfig or pick one of " + ", ".join(sorted(table)),
        ) from None


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A conservative token estimate (about 4 characters per token, rounded up)."""
    chars = 0
    for m in messages:
        chars += len(str(m.content)) + 16
        for tc in getattr(m, "tool_calls", None) or []:
            chars += len(str(tc.get("args"))) + len(tc.get("name", ""))
    return chars // 4 + 1
