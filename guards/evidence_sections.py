"""Policy sections about evidence and untrusted content.

Per tool:

    tools:
      issue_refund:
        require_citation: true
        citation: {min_relevance: 0.2, max_age_days: 365, trust: [internal], reason_arg: reason}
        provenance:                       # where each sensitive argument's value may come from
          to_account: {kind: iban, from: [request, lookup_customer.payout_iban]}
          note:       {kind: free_text}    # copied verbatim from untrusted text: flagged
      send_email:
        external: true                    # leaves the organisation: secret fields never flow here
        provenance:
          to: {kind: email, from: [request, subject, lookup], on_untrusted: deny, on_unknown: require_approval}
      read_ticket:                        # a read tool: which result fields vouch for a value
        outputs:
          selectors: [ticket_id]          # the arguments that choose what is read
          structural: [id, requester_email, account_number]
          content: [subject, body, comments.text]
          secret: [api_token]

At the root:

    content:
      on_flagged: quarantine              # or summarise, warn
      patterns: ['(?i)wire the funds']    # extra injection-screen patterns
      classifier: null                    # a registered classifier name
      threshold: 0.5
      provenance_depth: 2                 # how many lookups a trusted value may pass through

Sources for ``from``: ``request`` (the user's own text), ``subject`` (the run's subject),
``designated`` (a document the user designated for the run), ``lookup`` (any trusted
structural field of an earlier read), ``TOOL.FIELD`` (that structural field only) and
``anywhere``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tether.guards.policy_sections import _floats as floats
from tether.guards.policy_sections import tuples

__all__ = [
    "DESTINATION_KINDS",
    "PROVENANCE_SOURCES",
    "VALUE_KINDS",
    "CitationSection",
    "ContentSection",
    "CopiedEffect",
    "FlaggedAction",
    "OutputsSection",
    "ProvenanceRule",
    "TrustLevel",
    "ValueKind",
]

TrustLevel = Literal["internal", "external"]
ValueKind = Literal[
    "recipient", "account", "iban", "email", "url", "phone", "record_id", "amount", "free_text"
]
VALUE_KINDS: tuple[str, ...] = ValueKind.__args__  # type: ignore[attr-defined]
DESTINATION_KINDS = frozenset({"recipient", "account", "iban", "email", "url", "phone"})
"""Kinds that say where something goes: found nowhere trusted, they ask a human by default."""
PROVENANCE_SOURCES = ("request", "subject", "designated", "lookup", "anywhere")
"""Named ``from`` sources; any other entry is ``TOOL.FIELD``."""
FlaggedAction = Literal["quarantine", "summarise", "warn"]
CopiedEffect = Literal["flag", "require_approval", "deny"]
_Effect = Literal["deny", "require_approval", "escalate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_tuples, _floats = tuples, floats


class CitationSection(_Strict):
    """How strict the citation gate is for one tool (implies ``require_citation``).

    ``require_citation: true`` without this section uses these defaults. The checks and their
    rule ids are described in ``tether.guards.citations``.
    """

    min_relevance: float = Field(default=0.2, ge=0, le=1)
    """Least relevance (0..1) between the action's stated reason and each cited passage. With
    the default lexical scorer: the share of the reason's content words the passage uses
    (0.2: at least one word in five). 0 turns the check off (no reason needed)."""
    max_age_days: float | None = Field(default=None, gt=0)
    """A cited passage whose document was updated longer ago than this is stale (as is one with
    no update date). ``None``: no age limit; ``superseded`` and ``retired`` passages are always stale."""
    trust: tuple[TrustLevel, ...] = ("internal",)
    """Trust levels a cited passage may have."""
    reason_arg: str | None = None
    """The argument that states why (default: ``reason`` when the tool has it)."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _floats(_tuples(data, "trust"), "min_relevance", "max_age_days")


class OutputsSection(_Strict):
    """Which fields of a read tool's result vouch for a value, and which are third-party text."""

    selectors: tuple[str, ...] | None = None
    """Arguments that choose what is read (``None``: every argument)."""
    structural: tuple[str, ...] = ()
    """Dotted result fields that identify things (ids, senders, accounts, owners): they vouch
    for a value when the read's own selectors were trusted."""
    content: tuple[str, ...] = ()
    """Result fields a third party can write (bodies, comments, page text): never vouch; screened."""
    secret: tuple[str, ...] = ()
    """Result fields that never flow into an ``external`` tool unless the user typed the value."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _tuples(data, "selectors", "structural", "content", "secret")


class ProvenanceRule(_Strict):
    """Where one sensitive argument's value may come from."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, serialize_by_alias=True)

    kind: ValueKind
    from_: tuple[str, ...] = Field(default=("request", "subject", "lookup"), alias="from")
    on_untrusted: _Effect = "deny"
    """The value was found, but only in untrusted content (a body, a comment, an external page)."""
    on_unknown: _Effect | None = None
    """The value was found nowhere (``None``: ``require_approval`` for destinations, else ``deny``)."""
    on_copied: CopiedEffect = "flag"
    """``free_text`` only: text copied verbatim from untrusted content."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _tuples(data, "from")

    @field_validator("from_")
    @classmethod
    def _sources(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            if s not in PROVENANCE_SOURCES and (s.count(".") < 1 or not all(s.split("."))):
                raise ValueError(
                    f"unknown source {s!r}: use {', '.join(PROVENANCE_SOURCES)} or TOOL.FIELD"
                )
        return v


class ContentSection(_Strict):
    """What happens to untrusted text the injection screen flags, and provenance depth."""

    on_flagged: FlaggedAction = "quarantine"
    patterns: tuple[str, ...] = ()
    """Extra regular expressions for the injection screen (besides the built-in rules)."""
    classifier: str | None = None
    """A registered classifier (``tether.guards.screen``) consulted beside the patterns."""
    threshold: float = Field(default=0.5, ge=0, le=1)
    """Classifier score at or above which text is flagged."""
    provenance_depth: int = Field(default=2, ge=0, le=8)
    """How many lookups a trusted value may pass through (a read selected by a trusted value
    vouches in turn, up to this depth)."""

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        data = _floats(_tuples(data, "patterns"), "threshold")
        if isinstance(data, dict) and data.get("on_flagged") == "summarize":
            data = {**data, "on_flagged": "summarise"}
        return data
