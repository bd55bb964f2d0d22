"""Optional sections of ``agent-policy.yaml`` beyond ``agent`` and ``tools``.

All are optional; a file without them behaves exactly as before.

    principals:   # who runs the agent (from run configuration, never model output)
      support_bot: {id: tether-agent, roles: [support_agent]}
    roles:        # deny by default once this section exists
      support_agent: {tools: [lookup_order, issue_refund]}
    tiers:        # defaults per risk tier; a tool rule may tighten, never loosen
      financial: {require_citation: true}
      irreversible: {require_approval: true}

Per tool, for tools wrapped from LangChain or MCP (``tether.tools.adapters``,
``tether.tools.mcp``), whose meaning cannot be declared in code: ``effect`` (``read`` or
``write``) and ``traits`` (which argument is the amount, fields, subject, record, citations or
SQL; see ``tether.tools.base.ToolTraits``):

    tools:
      pay_invoice:
        allowed: true
        effect: write
        traits: {amount_arg: amount_usd, record_arg: invoice_id}
        require_approval_over_usd: 100

Also per tool: ``risk``, ``args``, ``predicates``, ``context``, ``rate_limit``,
``circuit_breaker``, ``sql`` (scope for ``mode: read_only_sql``), ``sensitive_fields`` and
``credentials`` (secret references, resolved by ``tether.guards.secrets``).

Argument rules, predicates and context rules each choose their ``effect``: ``deny`` (the
default), ``require_approval`` or ``escalate``:

    tools:
      send_email:
        allowed: true
        args:
          to:   {from: [request, subject, lookup_person.email], effect: require_approval}
          body: {find: email, pattern: '.*@example\\.com$'}   # every address found in the text
          cc:   {pattern: '.*@example\\.com$'}                # a list: every element is checked
          ref:  {pattern: 'P-[0-9]+', required: true}          # absent passes unless required
        predicates: [business_hours, {name: not_on_leave, effect: escalate}]
        context:
          - {id: identity_verified, after: verify_identity, same: {person_id: person_id}}
          - {id: person_active, read: lookup_person, match: {id: person_id},
             field: status, in: [active]}
          - {id: once_per_person, max_per_record: 1, effect: require_approval}

``find`` kinds and ``from`` sources are described in ``tether.guards.matchers`` and
``tether.guards.context_rules``.
"""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "CONTEXT_KINDS",
    "EFFECTS",
    "TOOL_EFFECTS",
    "TRAIT_KEYS",
    "ArgRule",
    "CircuitBreakerSection",
    "ContextRule",
    "PredicateRef",
    "PrincipalSection",
    "RateLimitSection",
    "RiskTier",
    "RoleSection",
    "RuleEffect",
    "SecretRefSection",
    "SqlScopeSection",
    "TierSection",
    "ToolContractKeys",
    "ToolEffect",
    "TraitsSection",
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


RuleEffect = Literal["deny", "require_approval", "escalate"]
"""What a violated argument rule, predicate or context rule asks for."""
EFFECTS: tuple[RuleEffect, ...] = ("deny", "require_approval", "escalate")


def _effect(v: Any) -> Any:
    if isinstance(v, str) and v in EFFECTS:
        return v
    close = difflib.get_close_matches(str(v), EFFECTS, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown effect {v!r}.{hint} Accepted: {', '.join(EFFECTS)}.")


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
    """Constraints on one argument of a tool call (each element, when the value is a list)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, serialize_by_alias=True)

    min: float | None = None
    max: float | None = None
    enum: tuple[Scalar, ...] | None = None
    pattern: str | None = None
    """Regular expression the whole string value must match."""
    shadow: bool = False
    """Evaluated and reported, but not enforced (see ``tether.guards.shadow``)."""
    effect: RuleEffect = "deny"
    """What a violation asks for."""
    required: bool = False
    """A missing (absent or null) argument is a violation; otherwise it passes."""
    find: str | None = None
    """The argument is text: check every value of this kind found in it (``FIND_KINDS``)."""
    from_: tuple[str, ...] | None = Field(default=None, alias="from")
    """Where the value must come from: ``request``, ``subject`` or ``TOOL.FIELD``."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return tuples(_floats(data, "min", "max"), "enum", "from")

    @field_validator("effect", mode="before")
    @classmethod
    def _effect(cls, v: Any) -> Any:
        return _effect(v)

    @model_validator(mode="after")
    def _sane(self) -> ArgRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}); no value could pass.")
        if self.enum is not None and not self.enum:
            raise ValueError("enum is empty; no value could pass. List the allowed values.")
        if self.from_ is not None and not self.from_:
            raise ValueError("from is empty; no value could pass. List the allowed sources.")
        return self


class PredicateRef(_Strict):
    """One entry of ``predicates:``: a bare name (effect deny) or ``{name: ..., effect: ...}``."""

    name: str = Field(min_length=1)
    effect: RuleEffect = "deny"

    @field_validator("effect", mode="before")
    @classmethod
    def _effect(cls, v: Any) -> Any:
        return _effect(v)


CONTEXT_KINDS = ("after", "read", "max_per_record")
"""The keys that choose a context rule's kind; a rule has exactly one of them."""


class ContextRule(_Strict):
    """One run-context rule (``tools.<t>.context``); see ``tether.guards.context_rules``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, serialize_by_alias=True)

    id: str = Field(min_length=1)
    """Unique per tool; the rule id is ``tools.<t>.context.<id>``."""
    effect: RuleEffect = "deny"
    after: str | None = None
    """Prior success: this tool must have succeeded earlier in the run."""
    same: dict[str, str] = Field(default_factory=dict)
    """With ``after``: the earlier call's argument (key) equals this call's argument (value)."""
    read: str | None = None
    """Record state: a result of this tool, read earlier in the run, describes the record."""
    match: dict[str, str] = Field(default_factory=dict)
    """With ``read``: result field (dotted, key) that equals this call's argument (value)."""
    field: str | None = None
    """With ``read``: the matched result's field whose value ``in`` restricts."""
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    max_per_record: int | None = Field(default=None, ge=0)
    """Per-record count: at most this many successful calls of the tool per record and run."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return tuples(data, "in")

    @field_validator("effect", mode="before")
    @classmethod
    def _effect(cls, v: Any) -> Any:
        return _effect(v)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kind keys this rule sets (exactly one in a valid file)."""
        return tuple(k for k in CONTEXT_KINDS if getattr(self, k) is not None)


class RateLimitSection(_Strict):
    """At most ``max_calls`` calls in any ``per_seconds`` window (sliding)."""

    max_calls: int = Field(ge=1)
    per_seconds: float = Field(gt=0)
    per: Literal["principal", "subject", "customer", "tool"] = "principal"
    """Count per agent principal, per subject (``customer`` is the same), or for the tool."""

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


ToolEffect = Literal["read", "write"]
"""What a tool call does: ``read`` has no side effect, ``write`` changes something."""
TOOL_EFFECTS: tuple[ToolEffect, ...] = ("read", "write")
TRAIT_KEYS = ("amount_arg", "fields_arg", "subject_arg", "record_arg", "citations_arg", "sql_arg")


class TraitsSection(_Strict):
    """``tools.<t>.traits``: which argument of a wrapped tool means what to the policy.

    Each value names an argument of the tool (checked when the tool is wrapped).
    """

    amount_arg: str | None = Field(default=None, min_length=1)
    fields_arg: str | None = Field(default=None, min_length=1)
    subject_arg: str | None = Field(default=None, min_length=1)
    record_arg: str | None = Field(default=None, min_length=1)
    citations_arg: str | None = Field(default=None, min_length=1)
    sql_arg: str | None = Field(default=None, min_length=1)


def _tool_effect(v: Any) -> Any:
    if isinstance(v, str) and v in TOOL_EFFECTS:
        return v
    if v in EFFECTS:
        raise ValueError(
            f"a tool's effect is what the call does ({' or '.join(TOOL_EFFECTS)}), not a decision "
            f"(got {v!r}). To refuse the tool write allowed: false; to ask a human, require_approval: true."
        )
    close = difflib.get_close_matches(str(v), TOOL_EFFECTS, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown tool effect {v!r}.{hint} Accepted: {', '.join(TOOL_EFFECTS)}.")


class ToolContractKeys(_Strict):
    """The keys of a tool rule that declare a wrapped tool's contract (``effect``, ``traits``).

    Left out, they are left out of the policy's canonical form too, so a file without them
    keeps its version.
    """

    effect: ToolEffect | None = None
    """``read`` or ``write``; needed for an allowed tool wrapped from LangChain or MCP."""
    traits: TraitsSection | None = None
    """Which argument means what (amount, fields, subject, record, citations, SQL)."""

    @field_validator("effect", mode="before")
    @classmethod
    def _effect(cls, v: Any) -> Any:
        return None if v is None else _tool_effect(v)

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for k in ("effect", "traits"):
                if data.get(k) is None:
                    data.pop(k, None)
        return data
