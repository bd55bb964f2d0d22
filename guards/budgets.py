"""Hard budgets, checked *before* spending.

``Budgets`` is the frozen limit set from the policy; ``Usage`` is what a run has spent.
``check_before_model_call`` reserves the worst-case price of the next model call;
``check_before_tool_call`` reserves the next tool call. Either returns a ``BudgetExceeded``
value (limit, observed, what was about to be spent) or ``None``; nothing raises.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["BudgetExceeded", "Budgets", "Usage"]

BudgetName = Literal["max_wall_clock_seconds", "max_tool_calls", "max_model_spend_usd"]


class BudgetExceeded(BaseModel):
    """A budget would be exceeded by the next step. The step did not happen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget: BudgetName
    """Which limit."""
    limit: float
    """The limit from the policy."""
    observed: float
    """What the run had used before the refused step."""
    requested: float
    """What the refused step would have added."""

    @property
    def rule_id(self) -> str:
        return f"agent.{self.budget}"

    def describe(self) -> str:
        return (
            f"{self.budget}: limit {self.limit:g}, used {self.observed:g}, next step needs {self.requested:g}"
        )


class Usage(BaseModel):
    """What a run has consumed so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool_calls: int = 0
    """Tool calls admitted past the policy check (executed or in flight)."""
    model_calls: int = 0
    spend_usd: float = 0.0
    """Model spend, priced from the model price table."""
    active_seconds: float = 0.0
    """Time spent inside workflow steps (waiting for a human does not count)."""

    def add(
        self,
        *,
        tool_calls: int = 0,
        model_calls: int = 0,
        spend_usd: float = 0.0,
        seconds: float = 0.0,
    ) -> Usage:
        return Usage(
            tool_calls=self.tool_calls + tool_calls,
            model_calls=self.model_calls + model_calls,
            spend_usd=round(self.spend_usd + spend_usd, 9),
            active_seconds=self.active_seconds + seconds,
        )


class Budgets(BaseModel):
    """Limits for one run (one user request)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_wall_clock_seconds: float
    max_tool_calls: int
    max_model_spend_usd: float

    def check_wall_clock(self, usage: Usage) -> BudgetExceeded | None:
        if usage.active_seconds > self.max_wall_clock_seconds:
            return BudgetExceeded(
                budget="max_wall_clock_seconds",
                limit=self.max_wall_clock_seconds,
                observed=round(usage.active_seconds, 3),
                requested=0.0,
            )
        return None

    def check_before_model_call(self, usage: Usage, *, worst_case_usd: float) -> BudgetExceeded | None:
        """Refuse a model call whose worst-case price would cross the spend cap."""
        if (over := self.check_wall_clock(usage)) is not None:
            return over
        if usage.spend_usd + worst_case_usd > self.max_model_spend_usd:
            return BudgetExceeded(
                budget="max_model_spend_usd",
                limit=self.max_model_spend_usd,
                observed=round(usage.spend_usd, 6),
                requested=round(worst_case_usd, 6),
            )
        return None

    def check_before_tool_call(self, usage: Usage) -> BudgetExceeded | None:
        """Refuse a tool call that would be one past ``max_tool_calls``."""
        if (over := self.check_wall_clock(usage)) is not None:
            return over
        if usage.tool_calls + 1 > self.max_tool_calls:
            return BudgetExceeded(
                budget="max_tool_calls",
                limit=self.max_tool_calls,
                observed=usage.tool_calls,
                requested=1,
            )
        return None
