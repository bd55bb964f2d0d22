"""The loaded, frozen ``Policy`` and its decision function.

``Policy.from_yaml(path)`` reads an ``agent-policy.yaml`` (see ``policy_file``), validates it
strictly and returns an immutable value versioned by the hash of its canonical content.
``Policy.evaluate(action)`` returns a ``Decision``. A tool the policy does not list is denied.

Optional sections add, in this order of evaluation: risk-tier defaults, argument rules,
named predicates, ``read_only_sql`` checks, and role-based access (``roles:``; deny by
default). ``evaluate_with_shadow`` also reports what a candidate policy, or rules marked
``shadow: true``, would have decided. Rate limits and circuit breakers keep state and live
in ``tether.guards.ratelimit``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tether.guards.budgets import Budgets
from tether.guards.citations import CitationFact, CitationGate, citation_gate
from tether.guards.context import RunContext
from tether.guards.decisions import (
    Allow,
    Deny,
    Escalate,
    RequireApproval,
)
from tether.guards.evidence_sections import ContentSection, OutputsSection
from tether.guards.matchers import sql_scope
from tether.guards.policy_file import (
    EscalationSection,
    PolicyFile,
    ToolRuleSection,
    parse_policy,
    read_policy_file,
)
from tether.guards.policy_plan import PolicyPlan, compile_plans
from tether.guards.policy_sections import ArgRule
from tether.guards.predicates import DEFAULT_PREDICATES, PredicateFn, PredicateRegistry
from tether.guards.sql_safety import SqlScope

__all__ = ["ActionRequest", "AnyDecision", "Policy", "ToolRule"]

ToolRule = ToolRuleSection
"""The rule for one tool (same shape as the file section; frozen)."""


AnyDecision = Allow | Deny | RequireApproval | Escalate
"""Any one decision (the ``Decision`` union without the pydantic discriminator annotation)."""


class ActionRequest(BaseModel):
    """What the policy needs to know about one proposed tool call.

    Built by the tool's contract from the *validated* arguments and the run's context,
    never from free text: the principal comes from the run configuration.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str
    amount_usd: float | None = None
    """The money the call moves, when the tool declares an amount argument."""
    run_total_usd: float = 0.0
    """What this tool already moved, or has been admitted to move, earlier in the same run."""
    fields: tuple[str, ...] | None = None
    """Record fields the call writes, when the tool declares a fields argument."""
    free_sql: bool = False
    """True when the model supplied SQL text instead of a named template."""
    target_subject_ids: tuple[str, ...] = ()
    """Subjects whose data the call reads or writes (the tool's ``subject_arg``)."""
    subject_id: str | None = None
    """The subject this run acts for (from the caller, never the model)."""
    records: tuple[str, ...] = ()
    """Record ids the call reads or writes (the tool's ``record_arg``)."""
    citations: tuple[str, ...] = ()
    """Evidence ids the model cited."""
    retrieved_evidence: frozenset[str] = frozenset()
    """Evidence ids actually retrieved in this run."""
    citation_facts: tuple[CitationFact, ...] = ()
    """What the workflow measured about each cited id (relevance, status, trust, age). Empty:
    the citation gate checks only that each cited id was retrieved (see ``guards.citations``)."""
    principal: str | None = None
    """The agent identity running the call (run configuration; matched against ``principals:``)."""
    roles: tuple[str, ...] = ()
    """Roles of the run (run configuration). Empty: taken from the principal's entry."""
    args: dict[str, Any] = Field(default_factory=dict)
    """The validated arguments, for ``args:`` rules and predicates. Do not mutate."""
    sql: str | None = None
    """The free-form SQL text, when ``free_sql`` (checked under ``mode: read_only_sql``)."""
    context: RunContext = Field(default_factory=RunContext)
    """What the run has seen and done so far (read-only), for context rules and predicates."""


class Policy:
    """An immutable, content-versioned policy. Build with ``from_yaml`` or ``from_text``."""

    __slots__ = (
        "_has_shadow",
        "_plan",
        "_predicates",
        "_registry",
        "_spec",
        "_sql",
        "budgets",
        "candidate",
        "escalation",
        "source",
        "tools",
        "version",
    )

    def __init__(
        self,
        spec: PolicyFile,
        *,
        source: str,
        predicates: PredicateRegistry | None = None,
        candidate: Policy | None = None,
    ) -> None:
        registry = predicates if predicates is not None else DEFAULT_PREDICATES
        canonical = json.dumps(_canonical(spec), sort_keys=True, separators=(",", ":"))
        a = spec.agent
        resolved = _resolve_predicates(spec, registry, source)
        values: dict[str, object] = {
            "_spec": spec,
            "_registry": registry,
            "_predicates": resolved,
            "_plan": compile_plans(spec, resolved),
            "_has_shadow": candidate is not None
            or any(arg.shadow for r in spec.tools.values() for arg in r.args.values()),
            "_sql": {t: sql_scope(r.sql) for t, r in spec.tools.items() if r.sql is not None},
            "candidate": candidate,
            "source": source,
            "version": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16],
            "budgets": Budgets(
                max_wall_clock_seconds=a.max_wall_clock_seconds,
                max_tool_calls=a.max_tool_calls,
                max_model_spend_usd=a.max_model_spend_usd,
            ),
            "escalation": a.escalation,
            "tools": MappingProxyType(dict(spec.tools)),
        }
        for k, v in values.items():
            object.__setattr__(self, k, v)

    _spec: PolicyFile
    _registry: PredicateRegistry
    _predicates: Mapping[str, tuple[tuple[str, PredicateFn], ...]]
    _sql: Mapping[str, SqlScope]
    _plan: PolicyPlan
    _has_shadow: bool
    candidate: Policy | None
    """A policy evaluated in shadow beside this one (``evaluate_with_shadow``); never enforced."""
    source: str
    version: str
    """``sha256:`` + 16 hex digits of the canonical content; formatting does not change it."""
    budgets: Budgets
    escalation: EscalationSection
    tools: Mapping[str, ToolRule]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Policy is frozen; load a new one instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Policy is frozen; load a new one instead")

    def __repr__(self) -> str:
        return f"Policy(source={self.source!r}, version={self.version!r}, tools={list(self.tools)})"

    @classmethod
    def from_yaml(cls, path: str | Path, *, predicates: PredicateRegistry | None = None) -> Policy:
        spec, _ = read_policy_file(path, predicates=predicates)
        return cls(spec, source=str(path), predicates=predicates)

    @classmethod
    def from_text(
        cls, text: str, *, source: str = "<string>", predicates: PredicateRegistry | None = None
    ) -> Policy:
        return cls(
            parse_policy(text, source=source, predicates=predicates), source=source, predicates=predicates
        )

    def with_candidate(self, candidate: Policy | None) -> Policy:
        """This policy, enforced as is, with ``candidate`` evaluated in shadow beside it."""
        return Policy(self._spec, source=self.source, predicates=self._registry, candidate=candidate)

    @property
    def spec(self) -> PolicyFile:
        """A copy of the parsed file: changing it cannot change this policy."""
        return self._spec.model_copy(deep=True)

    @property
    def max_tool_error_retries(self) -> int:
        return self._spec.agent.max_tool_error_retries

    @property
    def approval_ttl_seconds(self) -> float | None:
        """How long an approval request can be granted (``agent.approval_ttl_seconds``), read
        without copying the parsed file."""
        return self._spec.agent.approval_ttl_seconds

    @property
    def has_shadow(self) -> bool:
        """A candidate policy or at least one rule marked ``shadow: true``."""
        return self._has_shadow

    def to_dict(self) -> dict[str, Any]:
        return _canonical(self._spec)

    @property
    def content(self) -> ContentSection | None:
        """The ``content:`` section (injection screen, provenance depth), if the file has one."""
        return self._spec.content

    def outputs(self, tool: str) -> OutputsSection | None:
        """The ``outputs:`` declaration of a read tool, if any."""
        rule = self.tools.get(tool)
        return rule.outputs if rule is not None else None

    def citation_gate(self, tool: str) -> CitationGate | None:
        """The citation gate of ``tool`` (rule id and thresholds), or ``None`` when it has none."""
        rule = self.tools.get(tool)
        return citation_gate(tool, rule, self._spec) if rule is not None else None

    # ------------------------------------------------------------------ decisions

    def evaluate(
        self, action: ActionRequest, *, role: str | None = None, principal: str | None = None
    ) -> AnyDecision:
        """Decide one proposed action. Pure: same policy and action, same decision.

        ``role`` / ``principal`` override the request's (both come from run configuration);
        they only matter when the policy has a ``roles:`` section.
        """
        return self._decide(action, role=role, principal=principal, include_shadow=False)

    def evaluate_with_shadow(
        self, action: ActionRequest, *, role: str | None = None, principal: str | None = None
    ) -> tuple[AnyDecision, AnyDecision | None]:
        """The enforced decision, and what the candidate (or the shadow rules) would decide.

        The second value is ``None`` when there is nothing in shadow.
        """
        enforced = self.evaluate(action, role=role, principal=principal)
        if self.candidate is not None:
            return enforced, self.candidate._decide(
                action, role=role, principal=principal, include_shadow=True
            )
        if self.has_shadow:
            return enforced, self._decide(action, role=role, principal=principal, include_shadow=True)
        return enforced, None

    def _decide(
        self, action: ActionRequest, *, role: str | None, principal: str | None, include_shadow: bool
    ) -> AnyDecision:
        # rules compiled per tool at load (``policy_plan``); same rules, order and reasons as
        # ``tool_rule_result`` followed by the optional matchers and the role grants
        return self._plan.decide(action, role=role, principal=principal, include_shadow=include_shadow)


_NEW_ROOT = ("principals", "roles", "tiers", "content")
_NEW_TOOL = (
    "max_total_usd_per_run", "require_approval_over_total_usd", "risk", "require_approval", "args", "predicates", "rate_limit", "circuit_breaker", "sql",
    "sensitive_fields", "credentials", "context", "citation", "outputs", "provenance", "external",
)  # fmt: skip
_TOOL_DEFAULTS = ToolRuleSection().model_dump(mode="json")
_NEW_ARG = ("effect", "required", "find", "from")
_ARG_DEFAULTS = ArgRule().model_dump(mode="json")
_PLAIN_PREDICATE = "deny"  # a predicate with this effect hashes as its bare name, as before


def _canonical(spec: PolicyFile) -> dict[str, Any]:
    """The spec as JSON, without the optional keys left at their defaults.

    A file that uses none of the optional sections keeps the version (hash) it had before
    they existed.
    """
    data = spec.model_dump(mode="json")
    if data["agent"].get("approval_ttl_seconds") is None:
        data["agent"].pop("approval_ttl_seconds", None)
    for k in _NEW_ROOT:
        if data.get(k) is None:
            data.pop(k, None)
    for rule in data.get("tools", {}).values():
        for k in _NEW_TOOL:
            if k in rule and rule[k] == _TOOL_DEFAULTS[k]:
                del rule[k]
        for arg in rule.get("args", {}).values():
            for k in _NEW_ARG:
                if k in arg and arg[k] == _ARG_DEFAULTS[k]:
                    del arg[k]
        if "predicates" in rule:
            rule["predicates"] = [
                p["name"] if p.get("effect") == _PLAIN_PREDICATE and set(p) == {"name", "effect"} else p
                for p in rule["predicates"]
            ]
    return data


def _resolve_predicates(
    spec: PolicyFile, registry: PredicateRegistry, source: str
) -> dict[str, tuple[tuple[str, PredicateFn], ...]]:
    from tether.errors import PolicyFileError, PolicyProblem

    out: dict[str, tuple[tuple[str, PredicateFn], ...]] = {}
    for t, rule in spec.tools.items():
        fns: list[tuple[str, PredicateFn]] = []
        for i, ref in enumerate(rule.predicates):
            fn = registry.get(ref.name)
            if fn is None:
                raise PolicyFileError(
                    path=source,
                    problems=[
                        PolicyProblem(
                            key=f"tools.{t}.predicates.{i}", reason=f"unknown predicate '{ref.name}'."
                        )
                    ],
                )
            fns.append((ref.name, fn))
        if fns:
            out[t] = tuple(fns)
    return out
