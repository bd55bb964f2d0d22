"""Checks of a policy against the tools a workflow really has (their arguments and results).

The file loader cannot know a tool's argument names or result fields; the workflow does. It
describes each tool with a ``ToolShape`` and calls ``check_against_tools`` when it is built:

    problems = check_against_tools(policy, {
        "grant_group": ToolShape(args=frozenset({"person_id", "group"}), record_arg="person_id"),
        "lookup_person": ToolShape(args=frozenset({"person_id"}),
                                   fields=frozenset({"id", "status", "manager.email"})),
    })

Reported, with a did-you-mean: an ``args:`` rule, or a ``same``/``match`` value, naming an
argument the tool does not have; a ``same`` key naming an argument the ``after`` tool does not
have; a ``match`` key, ``field`` or ``from: TOOL.FIELD`` naming a result field the other tool
does not return (a field is known when it is listed or is a prefix of a listed path); a rule
depending on a tool the workflow does not have (it could never pass); ``max_per_record`` on a
tool without a record argument. Tools of the policy the workflow lacks are not checked.

For evidence sections: a ``provenance`` key must name an argument of the tool (a dotted path
reaches inside one), ``outputs.selectors`` must be arguments of the read tool, and a
``from: TOOL.FIELD`` source must name a tool of the workflow whose ``outputs.structural``
lists FIELD (only structural fields vouch).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tether.errors import PolicyProblem
from tether.guards.context_rules import SOURCES
from tether.guards.evidence_sections import PROVENANCE_SOURCES
from tether.guards.policy import Policy
from tether.guards.policy_file import PolicyFile, ToolRuleSection
from tether.guards.policy_sections import ContextRule

__all__ = ["ToolShape", "check_against_tools"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolShape:
    """What a workflow knows about one tool."""

    args: frozenset[str] = frozenset()
    """Argument names."""
    fields: frozenset[str] = frozenset()
    """Dotted result field paths (``status``, ``person.email``, ``items.sku``)."""
    record_arg: str | None = None
    """The argument naming the record the call touches, if any."""


def _has_field(shape: ToolShape, path: str) -> bool:
    return path in shape.fields or any(f.startswith(path + ".") for f in shape.fields)


def _no(owner: str, what: str, name: str, options: Iterable[str]) -> str:
    opts = sorted(options)
    close = difflib.get_close_matches(name, opts, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"tool '{owner}' has no {what} '{name}'.{hint} Known: {', '.join(opts) or '(none)'}."


def _absent(tool: str, shapes: Mapping[str, ToolShape]) -> str:
    close = difflib.get_close_matches(tool, sorted(shapes), n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"'{tool}' is not a tool of this workflow, so the rule can never pass.{hint}"


def check_against_tools(policy: Policy | PolicyFile, shapes: Mapping[str, ToolShape]) -> list[PolicyProblem]:
    """Every problem of ``policy`` against the workflow's tools (empty: consistent)."""
    spec = policy.spec if isinstance(policy, Policy) else policy
    out: list[PolicyProblem] = []
    for t, rule in spec.tools.items():
        shape = shapes.get(t)
        if shape is None:
            continue
        for name, arg in rule.args.items():
            at = f"tools.{t}.args.{name}"
            if name not in shape.args:
                out.append(PolicyProblem(key=at, reason=_no(t, "argument", name, shape.args)))
            for i, source in enumerate(arg.from_ or ()):
                reason = _source(source, shapes)
                if reason is not None:
                    out.append(PolicyProblem(key=f"{at}.from.{i}", reason=reason))
        for i, ctx in enumerate(rule.context):
            at = f"tools.{t}.context.{i}"
            out += [PolicyProblem(key=f"{at}.{k}", reason=r) for k, r in _context(t, shape, ctx, shapes)]
        out += [PolicyProblem(key=f"tools.{t}.{k}", reason=r) for k, r in _evidence(t, rule, shape, spec, shapes)]
    return out


def _covered(path: str, entries: Iterable[str]) -> bool:
    return any(path == e or path.startswith(e + ".") for e in entries)


def _evidence(
    t: str, rule: ToolRuleSection, shape: ToolShape, spec: PolicyFile, shapes: Mapping[str, ToolShape]
) -> list[tuple[str, str]]:
    """(key under the tool, reason) for each problem of its ``provenance`` and ``outputs``."""
    out: list[tuple[str, str]] = []
    for name, prov in rule.provenance.items():
        top = name.split(".", 1)[0]
        if top not in shape.args:
            out.append((f"provenance.{name}", _no(t, "argument", top, shape.args)
                        + " Name an argument (a dotted path reaches inside one, e.g. fields.email)."))
        for i, source in enumerate(prov.from_):
            reason = _structural_source(source, spec, shapes)
            if reason is not None:
                out.append((f"provenance.{name}.from.{i}", reason))
    outputs = rule.outputs
    for i, sel in enumerate(outputs.selectors or () if outputs is not None else ()):
        if sel.split(".", 1)[0] not in shape.args:
            out.append((f"outputs.selectors.{i}", _no(t, "argument", sel.split(".", 1)[0], shape.args)
                        + " Selectors are the arguments that choose what the tool reads."))
    return out


def _structural_source(source: str, spec: PolicyFile, shapes: Mapping[str, ToolShape]) -> str | None:
    """Why a ``from: TOOL.FIELD`` source can never vouch, or None."""
    if source in PROVENANCE_SOURCES:
        return None
    tool, _, field = source.partition(".")
    if tool not in shapes:
        return _absent(tool, shapes)
    other = spec.tools.get(tool)
    listed = other.outputs.structural if other is not None and other.outputs is not None else ()
    if _covered(field, listed):
        return None
    if not listed:
        return (f"'{source}' can never vouch: tools.{tool}.outputs.structural lists no fields. "
                f"Declare it (tools.{tool}.outputs.structural: [{field}]) or use 'lookup'.")
    close = difflib.get_close_matches(field, listed, n=1, cutoff=0.5)
    close = close or [e for e in listed if e.endswith("." + field)][:1]
    hint = f" Did you mean '{tool}.{close[0]}'?" if close else ""
    return (f"'{source}' can never vouch: only fields in tools.{tool}.outputs.structural vouch, and "
            f"'{field}' is not one.{hint} Listed: {', '.join(listed)}.")


def _source(source: str, shapes: Mapping[str, ToolShape]) -> str | None:
    if source in SOURCES:
        return None
    tool, _, field = source.partition(".")
    other = shapes.get(tool)
    if other is None:
        return _absent(tool, shapes)
    return None if _has_field(other, field) else _no(tool, "result field", field, other.fields)


def _context(
    t: str, shape: ToolShape, rule: ContextRule, shapes: Mapping[str, ToolShape]
) -> list[tuple[str, str]]:
    """(key under the rule, reason) for each problem of one context rule."""
    out: list[tuple[str, str]] = []
    if rule.max_per_record is not None and shape.record_arg is None:
        out.append(
            ("max_per_record", f"tool '{t}' declares no record argument, so there is nothing to count.")
        )
    other_name = rule.after if rule.after is not None else rule.read
    if other_name is None:
        return out
    other = shapes.get(other_name)
    kind = "after" if rule.after is not None else "read"
    if other is None:
        return [*out, (kind, _absent(other_name, shapes))]
    for theirs, mine in rule.same.items() if rule.after is not None else ():
        if theirs not in other.args:
            out.append((f"same.{theirs}", _no(other_name, "argument", theirs, other.args)))
        if mine not in shape.args:
            out.append((f"same.{theirs}", _no(t, "argument", mine, shape.args)))
    if rule.read is None:
        return out
    for theirs, mine in rule.match.items():
        if not _has_field(other, theirs):
            out.append((f"match.{theirs}", _no(other_name, "result field", theirs, other.fields)))
        if mine not in shape.args:
            out.append((f"match.{theirs}", _no(t, "argument", mine, shape.args)))
    if rule.field is not None and not _has_field(other, rule.field):
        out.append(("field", _no(other_name, "result field", rule.field, other.fields)))
    return out
