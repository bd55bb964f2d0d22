"""Optional sections of ``agent-policy.yaml`` beyond ``agent`` and ``tools``.

All are optional; a file without them behaves exactly as before.

    principals:   # who runs the agent (from run configuration, never model output)
      support_bot: {id: tether-agent, roles: [support_agent]}
    roles:        # deny by default once this section exists
      support_agent: {tools: [lookup_order, issue_refund]}
    tiers:        # defaults per risk tier; a tool rule may tighten, never loosen
      financial: {require_citation: true}
      irreversible: {require_approval: true}

Per tool: ``risk``, ``args`` (min/max/enum/pattern), ``predicates``, ``rate_limit``,
``circuit_breaker``, ``sql`` (scope for ``mode: read_only_sql``), ``sensitive_fields`` and
``credentials`` (secret references, resolved by ``tether.guards.secrets``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ArgRule",
    "CircuitBreakerSection",
    "PrincipalSection",
    "RateLimitSection",
    "RiskTier",
    "RoleSection",
    "SecretRefSection",
    "SqlScopeSection",
    "TierSection",
    "tuples",
]

Scalar = str | int | float | bool


def tuples(data: Any, *keys: str) -> Any:
    """Strict pydantic refuses lists for tuple fields: convert the named keys."""
    if isinstance(data, dict):
        data = dict(data)
        for k in keys:
            if isinstance(data.get(k), list):
                data[k] = tuple(data[k])
    return data


def _floats(data: Any, *keys: str) -> Any:
    if isinstance(data, dict):
        data = dict(data)
        for k in keys:
            v = data.get(k)
            if isinstance(v, int) and not isinstance(v, bool):
                data[k] = float(v)
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RiskTier(StrEnum):
    """How much harm a tool can do; ordered from least to most."""

    READ = "read"
    WRITE = "write"
    FINANCIAL = "financial"
    IRREVERSIBLE = "irreversible"


class PrincipalSection(_Strict):
    """An identity the agent runs as, bound by the run configuration."""

    id: str | None = None
    """Identity as recorded in the ledger (``Workflow.principal``); defaults to the key."""
    roles: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return tuples(data, "roles")


class RoleSection(_Strict):
    """Tools a role may call. Tools not granted to any of a run's roles are denied."""

    tools: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return tuples(data, "tools")


class TierSection(_Strict):
    """Defaults every tool of a risk tier inherits (a tool rule may only tighten them)."""

    require_citation: bool = False
    require_approval: bool = False
    """Every call needs a human approval."""
    max_amount_usd: float | None = Field(default=None, ge=0)
    require_approval_over_usd: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _floats(data, "max_amount_usd", "require_approval_over_usd")


class ArgRule(_Strict):
    """Constraints on one argument of a tool call."""

    min: float | None = None
    max: float | None = None
    enum: tuple[Scalar, ...] | None = None
    pattern: str | None = None
    """Regular expression the whole string value must match."""
    shadow: bool = False
    """Evaluated and reported, but not enforced (see ``tether.guards.shadow``)."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return tuples(_floats(data, "min", "max"), "enum")

    @model_validator(mode="after")
    def _sane(self) -> ArgRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}); no value could pass.")
        if self.enum is not None and not self.enum:
            raise ValueError("enum is empty; no value could pass. List the allowed values.")
        return self


class RateLimitSection(_Strict):
    """At most ``max_calls`` calls in any ``per_seconds`` window (sliding)."""

    max_calls: int = Field(ge=1)
    per_seconds: float = Field(gt=0)
    per: Literal["principal", "customer", "tool"] = "principal"
    """Count per agent principal, per end customer, or for the tool as a whole."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _floats(data, "per_seconds")


class CircuitBreakerSection(_Strict):
    """After ``failures`` consecutive tool errors, refuse calls for ``cooldown_seconds``."""

    failures: int = Field(ge=1)
    cooldown_seconds: float = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _floats(data, "cooldown_seconds")


class SqlScopeSection(_Strict):
    """What free-form SELECTs may read under ``mode: read_only_sql``."""

    tables: dict[str, tuple[str, ...]]
    """Allowed table -> allowed columns."""
    row_filters: dict[str, str] = Field(default_factory=dict)
    """Table -> column that must equal the run's customer (row-level security)."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tables"), dict):
            data = {**data, "tables": {k: tuples({"c": v}, "c")["c"] for k, v in data["tables"].items()}}
        return data


class SecretRefSection(_Strict):
    """``{secret: "env:NAME"}`` or ``{secret: "file:/path"}``; the value is never in the file."""

    secret: str = Field(pattern=r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")
