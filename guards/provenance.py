"""Provenance of sensitive argument values: ``tools.<t>.provenance``, ``outputs`` and ``external``.

A write tool names its sensitive arguments, their kind and where each value may come from
(``ProvenanceRule``). ``provenance_matches`` checks one proposed call against what the run
has seen (``RunContext``): the user's request, the subject, the designated documents and the
raw results of earlier reads. Trust is per result field, never per tool output:

- a read *vouches* when its selector arguments (``outputs.selectors``) were themselves
  trusted: taken from the request, the subject or a designated id, or from a structural
  field of an earlier read that vouches, at most ``content.provenance_depth`` lookups deep;
- only fields listed in ``outputs.structural`` of a read that vouches vouch, and only as a
  whole field after canonical normalisation for the kind (``tether.guards.identifiers``);
  content fields, undeclared fields and parts of a field never do;
- ``designated`` vouches for anything in a read selected by a designated id, and for any
  result record (an evidence passage) whose ``doc_id``, ``evidence_id`` or ``id`` is one.

A value not vouched for is *untrusted* when it appears where nothing vouches (a content
field, an undeclared field, a read selected by an untrusted value, too many lookups deep,
part of a longer field) and *unknown* otherwise; the rule's ``on_untrusted`` and
``on_unknown`` decide. ``free_text`` copied verbatim from untrusted content (six words or
forty characters in a row, punctuation aside, that the user did not write) gets ``on_copied`` (``flag``: allowed, and
the finding is recorded). A value of an ``outputs.secret`` field in any argument of an
``external: true`` tool is denied unless the user's request holds it too. Rule ids:
``tools.<t>.provenance.<arg>`` and ``tools.<t>.external.secret``. Reasons show the value
(secrets masked), where it was found and why that place does not vouch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from tether.guards.context import field_values
from tether.guards.decisions import RuleMatch
from tether.guards.evidence_sections import DESTINATION_KINDS, ProvenanceRule
from tether.guards.identifiers import canonical, compact, mentions
from tether.guards.provenance_index import (
    HistoryIndex,
    Leaf,
    scalars,
)

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest, AnyDecision, Policy
    from tether.guards.policy_file import PolicyFile, ToolRuleSection

__all__ = ["ProvenanceFinding", "ledger_flags", "provenance_findings", "provenance_matches"]

FindingEffect = Literal["deny", "require_approval", "escalate", "flag"]
Verdict = Literal["untrusted", "unknown", "copied", "secret"]

MAX_VALUES = 50
"""Values checked per argument (list elements)."""
_WORDS = {"request": "the user's request", "subject": "the run's subject", "anywhere": "anywhere",
          "designated": "a designated document", "lookup": "a trusted lookup"}


@dataclass(frozen=True, kw_only=True, slots=True)
class ProvenanceFinding:
    """One argument value the run's history does not vouch for (recorded in the ledger)."""

    rule_id: str
    tool: str
    arg: str
    kind: str
    verdict: Verdict
    effect: FindingEffect
    value: str
    """The value as shown (secrets: first two characters and the length)."""
    found: tuple[str, ...] = ()
    """Where it was found: ``read_ticket.comments.0.text (content field)``."""
    why: str
    """Why none of those places vouches for it."""
    allowed: str = ""
    """The sources the rule allows, in words."""

    @property
    def reason(self) -> str:
        where = f"found at {', '.join(self.found)}; " if self.found else ""
        words = {"untrusted": "comes only from places that do not vouch for it",
                 "unknown": "comes from no allowed source", "copied": "is copied verbatim from untrusted text",
                 "secret": "holds the value of a secret field"}[self.verdict]
        allowed = f"; allowed: {self.allowed}" if self.allowed else ""
        return f"{self.arg}={self.value} ({self.kind}) {words}: {where}{self.why}{allowed}"

    def as_flag(self) -> dict[str, Any]:
        return {"type": "provenance", **asdict(self), "found": list(self.found)}

    def match(self) -> RuleMatch:
        effect = "allow" if self.effect == "flag" else self.effect
        return RuleMatch(rule_id=self.rule_id, effect=effect, reason=self.reason)


def _mask(value: Any) -> str:
    text = str(value)
    return f"'{text[:2]}…' ({len(text)} chars)"



# ---------------------------------------------------------------- checking one value


def _allowed(rule: ProvenanceRule) -> str:
    return ", ".join(_WORDS.get(s, s) for s in rule.from_)


def _vouches(leaf: Leaf, whole: bool, sources: tuple[str, ...]) -> bool:
    if "designated" in sources and leaf.designated:
        return True
    if not whole or leaf.role != "structural" or not leaf.read.vouches:
        return False
    if "lookup" in sources:
        return True
    for s in sources:
        tool, _, field = s.partition(".")
        if tool == leaf.tool and field and (leaf.field == field or leaf.field.startswith(field + ".")):
            return True
    return False


def _why(leaf: Leaf, whole: bool) -> tuple[str, bool]:
    """Why this place does not vouch, and whether it makes the value untrusted."""
    if leaf.role == "content":
        return "content fields never vouch", True
    if leaf.role == "undeclared":
        if not leaf.read.declared:
            return leaf.read.why, True
        return f"'{leaf.tool}' does not list {leaf.field} in outputs.structural, so it never vouches", True
    if not whole:
        return "the value is only part of that field; identifiers must match a whole field", True
    if not leaf.read.vouches:
        return leaf.read.why, True
    return f"{leaf.tool}.{leaf.field} is trusted but not an allowed source for this argument", False


def _check_value(ix: HistoryIndex, rid: str, tool: str, arg: str, rule: ProvenanceRule, value: Any,
                 canon: str) -> ProvenanceFinding | None:
    kind, src, ctx = rule.kind, rule.from_, ix.ctx
    if "anywhere" in src:
        return None
    in_req = mentions(kind, canon, ctx.request)
    in_subject = any(canonical(kind, v) == canon for v in ix.subject)
    if ("request" in src and in_req) or ("subject" in src and in_subject):
        return None
    places = ix.places(kind, canon)
    if any(_vouches(leaf, whole, src) for leaf, whole in places):
        return None
    found = [("the user's request", "not an allowed source here", False)] if in_req else []
    found += [("the run's subject", "not an allowed source here", False)] if in_subject else []
    for leaf, whole in places[:6]:
        why, bad = _why(leaf, whole)
        part = "part of a " if not whole and leaf.role == "structural" else ""
        found.append((f"{leaf.path} ({part}{leaf.role} field)", why, bad))
    untrusted = any(bad for _, _, bad in found)
    effect = rule.on_untrusted if untrusted else rule.on_unknown or (
        "require_approval" if kind in DESTINATION_KINDS else "deny")
    secret = compact(str(value)) in ix.secrets()
    reasons = list(dict.fromkeys(why for _, why, _ in found))
    return ProvenanceFinding(
        rule_id=rid, tool=tool, arg=arg, kind=kind, verdict="untrusted" if untrusted else "unknown",
        effect=effect, value=_mask(value) if secret else repr(str(value)[:120]),
        found=tuple(place for place, _, _ in found),
        why="; ".join(reasons) or "it is in no earlier result, nor in the user's request or the subject",
        allowed=_allowed(rule),
    )


def _check_copied(ix: HistoryIndex, rid: str, tool: str, arg: str, rule: ProvenanceRule, text: str) -> ProvenanceFinding | None:
    hit = ix.copied(text)
    if hit is None:
        return None
    run, leaf = hit
    return ProvenanceFinding(
        rule_id=rid, tool=tool, arg=arg, kind=rule.kind, verdict="copied", effect=rule.on_copied,
        value=repr(run[:120]), found=(f"{leaf.path} ({leaf.role} field)",),
        why="text a third party can write, copied word for word; the user did not type it",
    )


def _check_secrets(ix: HistoryIndex, tool: str, args: Mapping[str, Any]) -> list[ProvenanceFinding]:
    secrets = ix.secrets()
    if not secrets:
        return []
    typed = compact(ix.ctx.request)
    texts = [(name, compact(str(v))) for name in args for v in scalars([args[name]])]
    out: list[ProvenanceFinding] = []
    for c, leaf in secrets.items():
        arg = next((name for name, t in texts if c in t), None)
        if arg is None or c in typed:
            continue
        out.append(ProvenanceFinding(
            rule_id=f"tools.{tool}.external.secret", tool=tool, arg=arg, kind="secret", verdict="secret",
            effect="deny", value=_mask(leaf.value), found=(f"{leaf.path} (secret field)",),
            why=f"fields marked secret never flow into the external tool '{tool}' unless the user typed the value",
        ))
        if len(out) >= 5:
            break
    return out


# ---------------------------------------------------------------- entry points


def provenance_findings(tool: str, rule: ToolRuleSection, action: ActionRequest,
                        spec: PolicyFile) -> tuple[ProvenanceFinding, ...]:
    """Every provenance finding of one proposed call (empty: nothing to say)."""
    if not rule.provenance and not rule.external:
        return ()
    index: list[HistoryIndex] = []  # built on first use: a call without such values needs none

    def history() -> HistoryIndex:
        if not index:
            index.append(HistoryIndex(spec, action.context))
        return index[0]

    out: list[ProvenanceFinding] = []
    for arg, prule in rule.provenance.items():
        rid = f"tools.{tool}.provenance.{arg}"
        for value in list(scalars(field_values(action.args, arg)))[:MAX_VALUES]:
            ix = history()
            if prule.kind == "free_text":
                finding = _check_copied(ix, rid, tool, arg, prule, str(value))
            else:
                canon = canonical(prule.kind, value)
                finding = None if canon is None else _check_value(ix, rid, tool, arg, prule, value, canon)
            if finding is not None:
                out.append(finding)
                break
    if rule.external and any(True for _ in scalars(list(action.args.values()))):
        out += _check_secrets(history(), tool, action.args)
    return tuple(out)


def provenance_matches(tool: str, rule: ToolRuleSection, action: ActionRequest, spec: PolicyFile) -> list[RuleMatch]:
    """The findings as rule matches (``flag`` findings match with effect ``allow``)."""
    return [f.match() for f in provenance_findings(tool, rule, action, spec)]


def ledger_flags(policy: Policy, action: ActionRequest, decision: AnyDecision) -> tuple[dict[str, Any], ...] | None:
    """The provenance findings behind ``decision``, as ledger ``flags`` (``None``: none)."""
    t = action.tool
    rule = policy.tools.get(t)
    prefix, secret = f"tools.{t}.provenance.", f"tools.{t}.external.secret"
    if rule is None or not any(m.rule_id.startswith(prefix) or m.rule_id == secret for m in decision.matched):
        return None
    findings = provenance_findings(t, rule, action, policy._spec)
    return tuple(f.as_flag() for f in findings) or None
