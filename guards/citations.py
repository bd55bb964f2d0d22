"""The citation gate: every cited id must be retrieved, relevant, current and trusted.

A tool whose rule sets ``require_citation`` (or has a ``citation:`` section, or belongs to a
tier with ``require_citation``) runs only when each id it cites passes five checks, in order:

* ``missing``: the call cites nothing, or cites an id no knowledge base knows;
* ``foreign``: a real evidence id that was not retrieved in this run;
* ``irrelevant``: the passage's relevance to the call's stated reason is below ``min_relevance``
  (no reason stated: relevance cannot be shown, and the check fails unless ``min_relevance`` is 0);
* ``stale``: the passage is ``superseded`` or ``retired``, or older than ``max_age_days``;
* ``untrusted``: the passage's trust level is not in the rule's ``trust``.

The policy stays a pure function of the ``ActionRequest``: the workflow measures each cited id
once (``measure_citations``: retrieved? known? relevance, status, trust, age) and puts the
``CitationFact`` values on the request; ``check_citation`` judges one fact against the rule's
``CitationSection``. A request without facts (``policy explain``, replays, hand-built requests)
is judged on ``missing`` and ``foreign`` only, as before the other checks existed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from tether.guards.evidence_sections import CitationSection, TrustLevel
from tether.guards.policy_file import PolicyFile, ToolRuleSection

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest
    from tether.guards.relevance import RelevanceScorer

__all__ = [
    "CITATION_CHECKS",
    "CitationCheck",
    "CitationFact",
    "CitationGate",
    "CitationVerdict",
    "check_citation",
    "citation_gate",
    "citation_rows",
    "gate_failure",
    "looks_like_evidence_id",
    "measure_citations",
    "stated_reason",
]

CitationCheck = Literal["missing", "foreign", "irrelevant", "stale", "untrusted"]
CITATION_CHECKS: tuple[CitationCheck, ...] = ("missing", "foreign", "irrelevant", "stale", "untrusted")
"""The checks, in the order they are applied (the first that fails is reported)."""
DocStatus = Literal["current", "superseded", "retired"]


class CitationFact(BaseModel):
    """What the workflow found out about one cited evidence id (measured, never judged)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evidence_id: str
    retrieved: bool
    """Retrieved by a tool earlier in this run."""
    known: bool
    """A knowledge base has this id (without one to ask: the id looks like an evidence id)."""
    doc_id: str | None = None
    version: int | None = None
    status: DocStatus | None = None
    trust: TrustLevel | None = None
    updated_at: str | None = None
    age_days: float | None = None
    """Days between ``updated_at`` and when the fact was measured (``None``: date unknown)."""
    relevance: float | None = None
    """0..1 between the call's stated reason and the passage (``None``: not computed)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CitationGate:
    """The citation gate of one tool: the rule id that turns it on and its thresholds."""

    rule_id: str
    section: CitationSection


@dataclass(frozen=True, kw_only=True, slots=True)
class CitationVerdict:
    """One cited id judged: ``failed`` is the first check it fails (``None``: valid)."""

    evidence_id: str
    failed: CitationCheck | None
    why: str

    @property
    def ok(self) -> bool:
        return self.failed is None


class _Lookup(Protocol):
    def get(self, evidence_id: str) -> Any: ...


def citation_gate(tool: str, rule: ToolRuleSection, spec: PolicyFile) -> CitationGate | None:
    """The gate for ``tool``: on through ``require_citation`` (the tool's, else its tier's) or a
    ``citation:`` section; ``None`` when off. The flag's rule id wins over the section's."""
    tier = (spec.tiers or {}).get(rule.risk) if rule.risk is not None else None
    if rule.require_citation:
        rule_id = f"tools.{tool}.require_citation"
    elif tier is not None and tier.require_citation:
        rule_id = f"tiers.{rule.risk}.require_citation"
    elif rule.citation is not None:
        rule_id = f"tools.{tool}.citation"
    else:
        return None
    return CitationGate(rule_id=rule_id, section=rule.citation or CitationSection())


_ID_SHAPE = re.compile(r"^[A-Za-z0-9][^\s]{2,199}$")


def looks_like_evidence_id(value: str) -> bool:
    """A token that could name a passage (no spaces, 3..200 characters, with a digit or one of
    ``@#:/``): without a knowledge base to ask, such an unretrieved id counts as ``foreign``."""
    return bool(_ID_SHAPE.match(value)) and any(c.isdigit() or c in "@#:/" for c in value)


def _legacy(evidence_id: str, retrieved: frozenset[str]) -> CitationFact:
    known = evidence_id in retrieved or looks_like_evidence_id(evidence_id)
    return CitationFact(evidence_id=evidence_id, retrieved=evidence_id in retrieved, known=known)


def _stale(f: CitationFact, s: CitationSection) -> str | None:
    doc = f.doc_id or "its document"
    if f.status == "superseded":
        return f"superseded: a newer version of {doc} exists" + (f" (cited v{f.version})" if f.version else "")
    if f.status == "retired":
        return f"retired: {doc} was withdrawn"
    if s.max_age_days is not None:
        if f.age_days is None:
            return f"its update date is unknown and the policy allows at most {s.max_age_days:g} days"
        if f.age_days > s.max_age_days:
            return f"updated {f.age_days:.0f} days ago, over the {s.max_age_days:g}-day limit"
    return None


def check_citation(fact: CitationFact, section: CitationSection, *, measured: bool = True) -> CitationVerdict:
    """Judge one fact. ``measured=False`` (no passage facts available) applies only the
    ``missing`` and ``foreign`` checks."""
    i = fact.evidence_id

    def fail(check: CitationCheck, why: str) -> CitationVerdict:
        return CitationVerdict(evidence_id=i, failed=check, why=why)

    if not fact.retrieved and not fact.known:
        return fail("missing", "no knowledge base has this id; cite an id a search returned")
    if not fact.retrieved:
        return fail("foreign", "it was not retrieved in this run; search first, then cite what came back")
    if not measured:
        return CitationVerdict(evidence_id=i, failed=None, why="retrieved (relevance, age and trust not computed)")
    if section.min_relevance > 0:
        if fact.relevance is None:
            return fail("irrelevant", "the call states no reason, so its relevance cannot be shown")
        if fact.relevance < section.min_relevance:
            return fail("irrelevant", f"relevance {fact.relevance:.2f} between the stated reason and the "
                        f"passage is below {section.min_relevance:.2f}")
    if (why := _stale(fact, section)) is not None:
        return fail("stale", why)
    if fact.trust not in section.trust:
        accepted = ", ".join(section.trust) or "none"
        level = f"trust '{fact.trust}'" if fact.trust else "an unknown trust level"
        return fail("untrusted", f"it has {level}; the policy accepts {accepted}")
    rel = f"relevance {fact.relevance:.2f}, " if fact.relevance is not None else ""
    return CitationVerdict(evidence_id=i, failed=None, why=f"{rel}{fact.status or 'current'}, {fact.trust}")


def _judged(a: ActionRequest, section: CitationSection) -> list[tuple[CitationFact, CitationVerdict]]:
    measured = bool(a.citation_facts)
    facts = {f.evidence_id: f for f in a.citation_facts}
    out = []
    for i in dict.fromkeys(a.citations):
        fact = facts.get(i) or _legacy(i, a.retrieved_evidence)
        out.append((fact, check_citation(fact, section, measured=measured)))
    return out


def gate_failure(a: ActionRequest, gate: CitationGate) -> str | None:
    """Why the gate refuses the call (the first failing id, then how many others fail), or None."""
    if not a.citations:
        return "citation check 'missing' failed: the call cites no evidence; cite a retrieved policy passage"
    bad = [v for _, v in _judged(a, gate.section) if not v.ok]
    if not bad:
        return None
    first = bad[0]
    why = f"citation check '{first.failed}' failed for {first.evidence_id}: {first.why}"
    if len(bad) > 1:
        why += "; also " + ", ".join(f"'{v.failed}' for {v.evidence_id}" for v in bad[1:])
    return why


def citation_rows(facts: Sequence[CitationFact], section: CitationSection) -> tuple[dict[str, Any], ...]:
    """Per cited id, what the ledger records: the measured facts and the verdict."""
    rows = []
    for f in facts:
        v = check_citation(f, section)
        rows.append({"id": f.evidence_id, "retrieved": f.retrieved, "known": f.known, "doc_id": f.doc_id,
                     "version": f.version, "relevance": f.relevance, "status": f.status, "trust": f.trust,
                     "age_days": f.age_days, "ok": v.ok, "failed": v.failed, "why": v.why})
    return tuple(rows)


def stated_reason(section: CitationSection | None, args: Mapping[str, Any]) -> str | None:
    """The call's stated reason: ``citation.reason_arg``, else a ``reason`` argument; None if blank."""
    key = section.reason_arg if section is not None and section.reason_arg else "reason"
    value = args.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _age_days(updated_at: str | None, now: datetime) -> float | None:
    if not updated_at:
        return None
    try:
        when = datetime.fromisoformat(updated_at)
    except ValueError:
        try:
            when = datetime.combine(date.fromisoformat(updated_at[:10]), datetime.min.time())
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(max(0.0, (now - when).total_seconds() / 86400), 3)


def measure_citations(
    cited: Iterable[str],
    evidence: Iterable[Any],
    *,
    reason: str | None,
    scorer: RelevanceScorer,
    knowledge: _Lookup | None = None,
    now: datetime | None = None,
) -> tuple[CitationFact, ...]:
    """The facts about each cited id, from the ``Evidence`` retrieved in this run.

    ``knowledge`` (``get(id)``) tells an id no knowledge base has (``missing``) from a real one
    that was not retrieved (``foreign``); without it, the id's shape decides.
    """
    when = now or datetime.now(UTC)
    by_id = {e.evidence_id: e for e in evidence}
    out = []
    for i in dict.fromkeys(cited):
        e = by_id.get(i)
        if e is None:
            known = knowledge.get(i) is not None if knowledge is not None else looks_like_evidence_id(i)
            out.append(CitationFact(evidence_id=i, retrieved=False, known=known))
            continue
        relevance = None
        if reason is not None:
            relevance = round(min(1.0, max(0.0, float(scorer.score(reason, f"{e.title}. {e.text}")))), 4)
        out.append(CitationFact(
            evidence_id=i, retrieved=True, known=True, doc_id=e.doc_id, version=e.version, status=e.status,
            trust=e.trust, updated_at=e.updated_at, age_days=_age_days(e.updated_at, when), relevance=relevance,
        ))
    return tuple(out)
