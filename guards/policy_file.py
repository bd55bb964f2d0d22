"""The policy *file* format (``agent-policy.yaml``) and its strict loader.

The file is parsed into these pydantic schema types (unknown keys are errors, with a
did-you-mean), then turned into the frozen runtime ``Policy`` by ``tether.guards.policy``.
Duplicate keys are errors too: YAML would otherwise keep the last one silently.

Per tool, besides the article's keys (``allowed``, amounts, ``require_citation``, ...), a rule
may hold argument rules, predicates and run-context rules, each with its own ``effect``
(``deny`` by default, ``require_approval`` or ``escalate``):

    tools:
      grant_group:
        allowed: true
        args:
          group: {enum: [readers, editors]}
          person_id: {pattern: 'P-[0-9]+', required: true}   # absent passes unless required
          notify: {find: email, pattern: '.*@example\\.com$'} # every address in the text
          ticket: {from: [request, lookup_ticket.id], effect: require_approval}
        predicates: [office_hours, {name: not_on_leave, effect: escalate}]
        context:
          - {id: identity_verified, after: verify_identity, same: {person_id: person_id}}
          - {id: person_active, read: lookup_person, match: {id: person_id},
             field: status, in: [active, onboarding]}
          - {id: once_per_person, max_per_record: 1}

``args`` keys: ``min``, ``max``, ``enum``, ``pattern``, ``required``, ``find`` (``email``,
``url``, ``iban``, ``account_number``, ``phone``), ``from`` (``request``, ``subject``,
``TOOL.FIELD``), ``effect``, ``shadow``. A list value has every element checked. ``context``
items have an ``id`` and exactly one of ``after`` (with optional ``same``), ``read`` (with
``match`` and optional ``field`` + ``in``) or ``max_per_record``. Rule ids:
``tools.<t>.args.<name>``, ``tools.<t>.predicates.<name>``, ``tools.<t>.context.<id>``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tether.errors import PolicyFileError, PolicyProblem
from tether.guards.decisions import EscalationAction
from tether.guards.evidence_sections import (
    CitationSection,
    ContentSection,
    OutputsSection,
    ProvenanceRule,
)
from tether.guards.policy_sections import (
    ArgRule,
    CircuitBreakerSection,
    ContextRule,
    PredicateRef,
    PrincipalSection,
    RateLimitSection,
    RiskTier,
    RoleSection,
    SecretRefSection,
    SqlScopeSection,
    TierSection,
    ToolContractKeys,
    TraitsSection,
    tuples,
)
from tether.guards.predicates import PredicateRegistry

__all__ = [
    "AgentSection",
    "EscalationSection",
    "PolicyFile",
    "ToolRuleSection",
    "parse_policy",
    "read_policy_file",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EscalationSection(_Strict):
    on_budget_exceeded: EscalationAction = EscalationAction.HANDOFF_TO_HUMAN
    on_tool_error_retries_exhausted: EscalationAction = EscalationAction.HANDOFF_TO_HUMAN

    @field_validator("on_budget_exceeded", "on_tool_error_retries_exhausted", mode="before")
    @classmethod
    def _action(cls, v: Any) -> Any:
        # strict mode refuses plain strings for enums; accept exactly the documented spellings
        if isinstance(v, EscalationAction):
            return v
        if isinstance(v, str) and v in _ESCALATIONS:
            return EscalationAction(v)
        raise ValueError(f"must be one of {', '.join(sorted(_ESCALATIONS))} (got {v!r})")


_ESCALATIONS = {e.value for e in EscalationAction}


class AgentSection(_Strict):
    max_wall_clock_seconds: float = Field(gt=0)
    max_tool_calls: int = Field(ge=0)
    max_model_spend_usd: float = Field(ge=0)
    max_tool_error_retries: int = Field(default=2, ge=0)
    """Consecutive malformed or failed tool calls tolerated before escalation."""
    approval_ttl_seconds: float | None = Field(default=None, gt=0)
    """An approval decided (or applied) later than this after it was requested is void."""
    escalation: EscalationSection = EscalationSection()

    @model_validator(mode="before")
    @classmethod
    def _ints_as_floats(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for k in ("max_wall_clock_seconds", "max_model_spend_usd", "approval_ttl_seconds"):
                v = data.get(k)
                if isinstance(v, int) and not isinstance(v, bool):
                    data[k] = float(v)
        return data


class ToolRuleSection(ToolContractKeys):  # + effect, traits (wrapped tools)
    allowed: bool = False
    max_amount_usd: float | None = Field(default=None, ge=0)
    require_approval_over_usd: float | None = Field(default=None, ge=0)
    max_total_usd_per_run: float | None = Field(default=None, ge=0)
    """Cap on the sum this tool may move in one run (splitting a refund cannot get around it)."""
    require_approval_over_total_usd: float | None = Field(default=None, ge=0)
    """Approval needed once the run's sum through this tool would exceed this."""
    require_citation: bool = False
    allowed_fields: tuple[str, ...] | None = None
    mode: Literal["parameterized_only", "read_only_sql"] | None = None
    row_level_security: bool = False
    # ---- optional extensions (absent: behaviour as before)
    risk: RiskTier | None = None
    """Risk tier; the matching ``tiers:`` entry supplies defaults this rule may only tighten."""
    require_approval: bool = False
    """Every call needs a human approval."""
    args: dict[str, ArgRule] = Field(default_factory=dict)
    predicates: tuple[PredicateRef, ...] = ()
    """Registered predicates (``tether.guards.predicates``) that must pass; a bare name or
    ``{name: ..., effect: ...}``."""
    context: tuple[ContextRule, ...] = ()
    """Run-context rules (``tether.guards.context_rules``): prior success, record state, counts."""
    rate_limit: RateLimitSection | None = None
    circuit_breaker: CircuitBreakerSection | None = None
    sql: SqlScopeSection | None = None
    """Tables/columns free-form SELECTs may read (``mode: read_only_sql``)."""
    sensitive_fields: tuple[str, ...] = ()
    """Argument/result fields masked by ``redact`` in logs and the ledger."""
    credentials: dict[str, SecretRefSection] = Field(default_factory=dict)
    # ---- evidence and untrusted content (``tether.guards.evidence_sections``)
    citation: CitationSection | None = None
    """Citation-gate thresholds (relevance, age, trust); implies ``require_citation``."""
    outputs: OutputsSection | None = None
    """A read tool's result fields: structural (vouch), content (third-party text), secret."""
    provenance: dict[str, ProvenanceRule] = Field(default_factory=dict)
    """Sensitive arguments of a write tool: their kind and where their values may come from."""
    external: bool = False
    """The tool sends data out of the organisation (secret fields never flow into it)."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for k in (
                "max_amount_usd",
                "require_approval_over_usd",
                "max_total_usd_per_run",
                "require_approval_over_total_usd",
            ):
                v = data.get(k)
                if isinstance(v, int) and not isinstance(v, bool):
                    data[k] = float(v)
            data = tuples(data, "allowed_fields", "predicates", "sensitive_fields", "context")
            if isinstance(data.get("predicates"), tuple):
                data["predicates"] = tuple(
                    {"name": p} if isinstance(p, str) else p for p in data["predicates"]
                )
            if isinstance(data.get("risk"), str) and data["risk"] in _RISKS:
                data["risk"] = RiskTier(data["risk"])
        return data

    @model_validator(mode="after")
    def _threshold_below_max(self) -> ToolRuleSection:
        if (
            self.max_amount_usd is not None
            and self.require_approval_over_usd is not None
            and self.require_approval_over_usd > self.max_amount_usd
        ):
            raise ValueError(
                f"require_approval_over_usd ({self.require_approval_over_usd:g}) is above "
                f"max_amount_usd ({self.max_amount_usd:g}); approvals would never be asked. "
                "Lower the threshold or raise the max."
            )
        return self


_RISKS = {r.value for r in RiskTier}


class PolicyFile(_Strict):
    agent: AgentSection
    tools: dict[str, ToolRuleSection] = Field(default_factory=dict)
    principals: dict[str, PrincipalSection] | None = None
    roles: dict[str, RoleSection] | None = None
    """Present: role-based access, deny by default. Absent: every listed tool may be called."""
    tiers: dict[RiskTier, TierSection] | None = None
    content: ContentSection | None = None
    """The injection screen and provenance depth (absent: the defaults of ``ContentSection``)."""

    @model_validator(mode="before")
    @classmethod
    def _tier_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tiers"), dict):
            data = {**data, "tiers": {RiskTier(k) if k in _RISKS else k: v for k, v in data["tiers"].items()}}
        return data


# ---------------------------------------------------------------- YAML with positions


_FLOAT_12 = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)")
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _compose_with_lines(text: str) -> tuple[Any, dict[tuple[str, ...], int], list[PolicyProblem]]:
    """Load YAML safely, recording each key's line and every duplicate key."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    constructor = yaml.SafeLoader("")
    lines: dict[tuple[str, ...], int] = {}
    dups: list[PolicyProblem] = []

    def walk(n: yaml.Node | None, path: tuple[str, ...]) -> Any:
        if n is None:
            return None
        if isinstance(n, yaml.MappingNode | yaml.SequenceNode) and n.tag not in _PLAIN_TAGS:
            # safe construction would refuse this tag; walking by hand must refuse it too
            raise yaml.constructor.ConstructorError(
                None, None, f"tag {n.tag!r} is not allowed in a policy file", n.start_mark
            )
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in n.value:
                key = walk(k_node, path)
                p = (*path, str(key))
                line = k_node.start_mark.line + 1
                if key in out:
                    dups.append(
                        PolicyProblem(
                            key=".".join(p),
                            reason=(
                                f"duplicate key (first at line {lines[p]}); YAML would silently "
                                "keep the last one. Check the indentation of the block above."
                            ),
                            line=line,
                        )
                    )
                lines.setdefault(p, line)
                out[key] = walk(v_node, p)
            return out
        if isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines.setdefault((*path, str(i)), v.start_mark.line + 1)
            return [walk(v, (*path, str(i))) for i, v in enumerate(n.value)]
        value = constructor.construct_object(n, deep=True)
        plain = isinstance(n, yaml.ScalarNode) and n.style is None and isinstance(value, str)
        if plain and _FLOAT_12.fullmatch(value):  # YAML 1.1 misses 9.0e1, 1e3; YAML 1.2 reads them
            return float(value)
        return value

    try:
        return walk(node, ()), lines, dups
    finally:
        constructor.dispose()


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


_KNOWN_KEYS: dict[str, list[str]] = {
    "": list(PolicyFile.model_fields),
    "agent": list(AgentSection.model_fields),
    "agent.escalation": list(EscalationSection.model_fields),
    "tools.*": list(ToolRuleSection.model_fields),
    "tools.*.args.*": _keys(ArgRule),
    "tools.*.predicates.*": _keys(PredicateRef),
    "tools.*.context.*": _keys(ContextRule),
    "tools.*.traits": list(TraitsSection.model_fields),
    "tools.*.rate_limit": list(RateLimitSection.model_fields),
    "tools.*.circuit_breaker": list(CircuitBreakerSection.model_fields),
    "tools.*.sql": list(SqlScopeSection.model_fields),
    "tools.*.credentials.*": list(SecretRefSection.model_fields),
    "tools.*.citation": list(CitationSection.model_fields),
    "tools.*.outputs": list(OutputsSection.model_fields),
    "tools.*.provenance.*": _keys(ProvenanceRule),
    "content": list(ContentSection.model_fields),
    "principals.*": list(PrincipalSection.model_fields),
    "roles.*": list(RoleSection.model_fields),
    "tiers.*": list(TierSection.model_fields),
}
_NAMED = {"tools", "principals", "roles", "tiers"}  # sections whose keys are user-chosen names


def _did_you_mean(parent: tuple[str, ...], key: str) -> str:
    parts = list(parent)
    if len(parts) >= 2 and parts[0] in _NAMED:
        parts[1] = "*"
    if (
        len(parts) >= 4
        and parts[0] == "tools"
        and parts[2] in ("args", "credentials", "predicates", "context", "provenance")
    ):
        parts[3] = "*"
    scope = ".".join(parts)
    options = _KNOWN_KEYS.get(scope, [])
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    allowed = ", ".join(options)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown key.{hint} Allowed here: {allowed}."


def _problems(err: ValidationError, lines: dict[tuple[str, ...], int]) -> list[PolicyProblem]:
    out: list[PolicyProblem] = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        line = None
        for i in range(len(loc), 0, -1):
            if loc[:i] in lines:
                line = lines[loc[:i]]
                break
        key = ".".join(loc) or "<root>"
        if e["type"] == "extra_forbidden":
            reason = _did_you_mean(loc[:-1], loc[-1])
        elif e["type"] == "missing":
            reason = "required key is missing."
        elif e["type"] == "value_error":
            reason = str(e["msg"]).removeprefix("Value error, ")
        else:
            got = e.get("input")
            reason = f"{e['msg']} (got {got!r})."
            if "greater_than" in e["type"]:
                reason += " Limits cannot be negative."
        out.append(PolicyProblem(key=key, reason=reason, line=line))
    return out


def parse_policy(
    text: str, *, source: str = "<string>", predicates: PredicateRegistry | None = None
) -> PolicyFile:
    """Parse and validate policy text. Raises ``PolicyFileError`` listing every problem.

    ``predicates`` resolves ``tools.*.predicates`` names (default: ``DEFAULT_PREDICATES``).
    """
    try:
        data, lines, dups = _compose_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyFileError(
            path=source,
            problems=[PolicyProblem(key="<yaml>", reason=f"not valid YAML: {problem}", line=line)],
        ) from None
    if dups:
        raise PolicyFileError(path=source, problems=dups)
    if not isinstance(data, dict):
        raise PolicyFileError(
            path=source,
            problems=[PolicyProblem(key="<root>", reason="expected a mapping with 'agent' and 'tools'.")],
        )
    try:
        spec = PolicyFile.model_validate(data)
    except ValidationError as err:
        raise PolicyFileError(path=source, problems=_problems(err, lines)) from None
    from tether.guards.policy_checks import cross_check

    problems = cross_check(spec, lines, predicates)
    if problems:
        raise PolicyFileError(path=source, problems=problems)
    return spec


def read_policy_file(
    path: str | Path, *, predicates: PredicateRegistry | None = None
) -> tuple[PolicyFile, str]:
    """Read and parse a policy file; returns the schema value and the file text."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(
            path=str(p), problems=[PolicyProblem(key="<file>", reason=f"cannot read: {exc.strerror}")]
        ) from None
    return parse_policy(text, source=str(p), predicates=predicates), text
