"""Run-context rules (``tools.<t>.context``), per-rule effects, their load-time checks and
``check_against_tools``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import PolicyFileError, PolicyProblem
from tether.guards.context import PriorAction, RunContext, Subject
from tether.guards.context_checks import ToolShape, check_against_tools
from tether.guards.decisions import Allow, Deny, Escalate, RequireApproval
from tether.guards.policy import ActionRequest, Policy
from tether.guards.predicates import PredicateRegistry

HEAD = """agent:
  max_wall_clock_seconds: 60
  max_tool_calls: 10
  max_model_spend_usd: 1
tools:
  verify_identity: {allowed: true}
  lookup_person: {allowed: true}
  list_people: {allowed: true}
"""

GRANT = (
    HEAD
    + """  grant_group:
    allowed: true
    context:
      - {id: identity_verified, after: verify_identity, same: {person_id: person_id}}
      - id: person_active
        read: lookup_person
        match: {id: person_id}
        field: status
        in: [active, onboarding]
      - {id: once_per_person, max_per_record: 1, effect: require_approval}
"""
)


def policy(text: str, **kw: Any) -> Policy:
    return Policy.from_text(text, source="<test>", **kw)


def load_error(text: str, **kw: Any) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(text, source="p.yaml", **kw)
    return info.value


def line_of(text: str, fragment: str) -> int:
    """1-based line of the first line containing ``fragment``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def done(
    tool: str,
    args: dict[str, Any],
    result: Any = None,
    *,
    status: str = "executed",
    records: tuple[str, ...] = (),
) -> PriorAction:
    return PriorAction(tool=tool, args=args, status=status, result=result, records=records)  # type: ignore[arg-type]


VERIFIED = done("verify_identity", {"person_id": "P-1"}, {"ok": True})
ACTIVE = done("lookup_person", {"person_id": "P-1"}, {"id": "P-1", "status": "active"})


def grant(
    *actions: PriorAction, person: str | None = "P-1", records: tuple[str, ...] | None = None
) -> ActionRequest:
    args = {"person_id": person, "group": "readers"} if person is not None else {"group": "readers"}
    recs = records if records is not None else ((person,) if person else ())
    return ActionRequest(
        tool="grant_group", args=args, records=recs, context=RunContext(request="add P-1", actions=actions)
    )


# ---------------------------------------------------------------- the three kinds


def test_all_context_rules_pass_when_the_run_did_what_they_ask() -> None:
    d = policy(GRANT).evaluate(grant(VERIFIED, ACTIVE))
    assert isinstance(d, Allow) and d.rule_id == "tools.grant_group.allowed"


def test_after_fails_without_a_prior_success() -> None:
    d = policy(GRANT).evaluate(grant(ACTIVE))
    assert isinstance(d, Deny) and d.rule_id == "tools.grant_group.context.identity_verified"
    assert "'verify_identity' has not succeeded" in d.reason


@pytest.mark.parametrize("status", ["failed", "denied", "rejected", "invalid", "skipped"])
def test_after_only_counts_executed_calls(status: str) -> None:
    attempt = done("verify_identity", {"person_id": "P-1"}, status=status)
    d = policy(GRANT).evaluate(grant(attempt, ACTIVE))
    assert d.rule_id == "tools.grant_group.context.identity_verified"


def test_after_same_needs_matching_arguments() -> None:
    other = done("verify_identity", {"person_id": "P-2"}, {"ok": True})
    d = policy(GRANT).evaluate(grant(other, ACTIVE))
    assert isinstance(d, Deny) and d.rule_id == "tools.grant_group.context.identity_verified"
    assert "person_id equal to this call's person_id" in d.reason
    # any one of several earlier calls may match
    assert policy(GRANT).evaluate(grant(other, VERIFIED, ACTIVE)).kind == "allow"


def test_after_same_with_the_argument_missing_is_a_violation() -> None:
    nobody = done("verify_identity", {}, {"ok": True})
    d = policy(GRANT).evaluate(grant(nobody, ACTIVE, person=None, records=()))
    assert d.kind == "deny"
    rules = {m.rule_id for m in d.matched}
    assert "tools.grant_group.context.identity_verified" in rules  # None never equals None here
    assert "tools.grant_group.context.person_active" in rules


def test_read_fails_when_the_record_was_not_read() -> None:
    elsewhere = done("lookup_person", {"person_id": "P-9"}, {"id": "P-9", "status": "active"})
    d = policy(GRANT).evaluate(grant(VERIFIED, elsewhere))
    assert d.rule_id == "tools.grant_group.context.person_active"
    assert "was not read in this run" in d.reason and "P-9" not in d.reason


def test_read_fails_when_the_field_value_is_not_allowed_and_names_it() -> None:
    left = done("lookup_person", {"person_id": "P-1"}, {"id": "P-1", "status": "terminated"})
    d = policy(GRANT).evaluate(grant(VERIFIED, left))
    assert isinstance(d, Deny) and d.rule_id == "tools.grant_group.context.person_active"
    assert "'terminated'" in d.reason and "'active', 'onboarding'" in d.reason


def test_read_uses_the_latest_read_of_the_record() -> None:
    left = done("lookup_person", {"person_id": "P-1"}, {"id": "P-1", "status": "terminated"})
    assert policy(GRANT).evaluate(grant(VERIFIED, ACTIVE, left)).kind == "deny"
    assert policy(GRANT).evaluate(grant(VERIFIED, left, ACTIVE)).kind == "allow"


def test_read_of_a_failed_call_does_not_count() -> None:
    failed = done("lookup_person", {"person_id": "P-1"}, {"id": "P-1", "status": "active"}, status="failed")
    assert (
        policy(GRANT).evaluate(grant(VERIFIED, failed)).rule_id == "tools.grant_group.context.person_active"
    )


def test_read_without_the_field_in_the_matched_result_is_a_violation() -> None:
    blank = done("lookup_person", {"person_id": "P-1"}, {"id": "P-1"})
    d = policy(GRANT).evaluate(grant(VERIFIED, blank))
    assert d.rule_id == "tools.grant_group.context.person_active" and "returned no status" in d.reason


LISTED = (
    HEAD
    + """  grant_group:
    allowed: true
    context:
      - {id: listed_active, read: list_people, match: {people.id: person_id}, field: people.status, in: [active]}
      - {id: top_level, read: lookup_person, match: {id: person_id}, field: status, in: [active]}
"""
)


def test_read_matches_record_by_record_inside_lists() -> None:
    p = policy(LISTED)
    people = {"people": [{"id": "P-1", "status": "left"}, {"id": "P-2", "status": "active"}]}
    as_list = done("lookup_person", {}, [{"id": "P-2", "status": "left"}, {"id": "P-1", "status": "active"}])
    # P-2 is active, P-1 is not: a status of another record in the same list must not count
    ok = p.evaluate(grant(done("list_people", {}, people), as_list, person="P-2", records=()))
    assert ok.kind == "deny" and ok.rule_id == "tools.grant_group.context.top_level"
    assert p.evaluate(grant(done("list_people", {}, people), as_list, person="P-1", records=())).rule_id == (
        "tools.grant_group.context.listed_active"
    )
    both_ok = done("lookup_person", {}, [{"id": "P-2", "status": "active"}])
    assert (
        p.evaluate(grant(done("list_people", {}, people), both_ok, person="P-2", records=())).kind == "allow"
    )


def test_max_per_record_counts_successes_of_this_tool_per_record() -> None:
    p = policy(GRANT)
    first = grant(VERIFIED, ACTIVE)
    assert p.evaluate(first).kind == "allow"
    earlier = done("grant_group", {"person_id": "P-1"}, {"ok": True}, records=("P-1",))
    d = p.evaluate(grant(VERIFIED, ACTIVE, earlier))
    assert isinstance(d, RequireApproval) and d.rule_id == "tools.grant_group.context.once_per_person"
    assert "already succeeded 1 time(s) for record P-1" in d.reason
    # failed attempts, other tools and other records do not count
    tried = done("grant_group", {"person_id": "P-1"}, status="failed", records=("P-1",))
    other_record = done("grant_group", {"person_id": "P-2"}, {"ok": True}, records=("P-2",))
    other_tool = done(
        "lookup_person", {"person_id": "P-1"}, {"id": "P-1", "status": "active"}, records=("P-1",)
    )
    assert p.evaluate(grant(VERIFIED, ACTIVE, tried, other_record, other_tool)).kind == "allow"


def test_max_per_record_zero_refuses_every_call_with_a_record() -> None:
    p = policy(HEAD + "  grant_group:\n    allowed: true\n    context: [{id: never, max_per_record: 0}]\n")
    assert p.evaluate(grant()).rule_id == "tools.grant_group.context.never"
    assert p.evaluate(grant(records=())).kind == "allow"  # nothing to count


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(min_value=0, max_value=5), prior=st.integers(min_value=0, max_value=8))
def test_max_per_record_allows_exactly_n_prior_successes(limit: int, prior: int) -> None:
    p = policy(
        HEAD + f"  grant_group:\n    allowed: true\n    context: [{{id: cap, max_per_record: {limit}}}]\n"
    )
    earlier = [
        done("grant_group", {"person_id": "P-1"}, {"ok": True}, records=("P-1",)) for _ in range(prior)
    ]
    noise = [done("grant_group", {"person_id": "P-1"}, status="failed", records=("P-1",))] * 3
    d = p.evaluate(grant(*earlier, *noise))
    assert (d.kind == "allow") == (prior < limit)
    if prior >= limit:
        assert d.rule_id == "tools.grant_group.context.cap"


# ---------------------------------------------------------------- effects


@pytest.mark.parametrize(
    ("effect", "cls"), [("deny", Deny), ("require_approval", RequireApproval), ("escalate", Escalate)]
)
def test_every_rule_kind_takes_its_effect(effect: str, cls: type) -> None:
    reg = PredicateRegistry()
    reg.register("never")(lambda a: "never allowed")
    blocks = {
        "args": f"    args:\n      group: {{enum: [admins], effect: {effect}}}\n",
        "predicates": f"    predicates: [{{name: never, effect: {effect}}}]\n",
        "context": f"    context: [{{id: c, after: verify_identity, effect: {effect}}}]\n",
    }
    ids = {"args": "args.group", "predicates": "predicates.never", "context": "context.c"}
    for kind, block in blocks.items():
        p = policy(HEAD + "  grant_group:\n    allowed: true\n" + block, predicates=reg)
        d = p.evaluate(grant())
        assert isinstance(d, cls), kind
        assert d.rule_id == f"tools.grant_group.{ids[kind]}", kind
        # the fallback allow is dropped once a rule fires
        assert "tools.grant_group.allowed" not in {m.rule_id for m in d.matched}


def test_effects_combine_deny_over_escalate_over_approval() -> None:
    text = (
        HEAD
        + """  grant_group:
    allowed: true
    context:
      - {id: a, after: verify_identity, effect: require_approval}
      - {id: b, after: lookup_person, effect: escalate}
"""
    )
    d = policy(text).evaluate(grant())
    assert isinstance(d, Escalate) and d.rule_id == "tools.grant_group.context.b"
    assert [m.rule_id for m in d.matched] == ["tools.grant_group.context.b", "tools.grant_group.context.a"]


def test_bare_predicate_name_still_denies() -> None:
    reg = PredicateRegistry()
    reg.register("never")(lambda a: "no")
    d = policy(
        HEAD + "  grant_group:\n    allowed: true\n    predicates: [never]\n", predicates=reg
    ).evaluate(grant())
    assert isinstance(d, Deny) and d.rule_id == "tools.grant_group.predicates.never"


def test_a_raising_predicate_denies_whatever_its_effect() -> None:
    reg = PredicateRegistry()

    @reg.register("boom")
    def boom(a: ActionRequest) -> str | None:
        raise RuntimeError("bug")

    text = (
        HEAD + "  grant_group:\n    allowed: true\n    predicates: [{name: boom, effect: require_approval}]\n"
    )
    d = policy(text, predicates=reg).evaluate(grant())
    assert isinstance(d, Deny) and "RuntimeError" in d.reason


# ---------------------------------------------------------------- load errors


def _one(err: PolicyFileError, key: str) -> PolicyProblem:
    found = [p for p in err.problems if p.key == key]
    assert found, [str(p) for p in err.problems]
    return found[0]


@pytest.mark.parametrize(
    ("block", "key", "fragment", "marker"),
    [
        (
            "    args:\n      group: {enum: [a], effect: deni}\n",
            "tools.grant_group.args.group.effect",
            "Did you mean 'deny'? Accepted: deny, require_approval, escalate",
            "effect: deni",
        ),
        (
            "    predicates: [{name: p, effect: aprove}]\n",
            "tools.grant_group.predicates.0.effect",
            "Accepted: deny, require_approval, escalate",
            "aprove",
        ),
        (
            "    context:\n      - {id: c, after: verify_identity, effect: escalat}\n",
            "tools.grant_group.context.0.effect",
            "Did you mean 'escalate'?",
            "escalat",
        ),
        (
            "    context:\n      - {id: c, aftr: verify_identity}\n",
            "tools.grant_group.context.0.aftr",
            "Did you mean 'after'?",
            "aftr",
        ),
        (
            "    predicates:\n      - {nme: p}\n",
            "tools.grant_group.predicates.0.nme",
            "Did you mean 'name'?",
            "nme",
        ),
        (
            "    args:\n      group: {form: [request]}\n",
            "tools.grant_group.args.group.form",
            "Did you mean 'from'?",
            "form",
        ),
    ],
)
def test_schema_typos_name_key_line_and_did_you_mean(
    block: str, key: str, fragment: str, marker: str
) -> None:
    reg = PredicateRegistry()
    reg.register("p")(lambda a: None)
    text = HEAD + "  grant_group:\n    allowed: true\n" + block
    problem = _one(load_error(text, predicates=reg), key)
    assert fragment in problem.reason
    assert problem.line == line_of(text, marker)


CHECKS: list[tuple[str, str, str, str]] = [
    (
        "    context:\n      - {id: c, after: verify_identiy}\n",
        "tools.grant_group.context.0.after",
        "unknown tool 'verify_identiy'. Did you mean 'verify_identity'?",
        "verify_identiy",
    ),
    (
        "    context:\n      - {id: c, read: lookup_persn, match: {id: person_id}}\n",
        "tools.grant_group.context.0.read",
        "Did you mean 'lookup_person'?",
        "lookup_persn",
    ),
    (
        "    args:\n      to: {from: [request, lookup_persn.email]}\n",
        "tools.grant_group.args.to.from.1",
        "Did you mean 'lookup_person'?",
        "lookup_persn",
    ),
    (
        "    args:\n      to: {from: [requst]}\n",
        "tools.grant_group.args.to.from.0",
        "unknown from source 'requst'. Did you mean 'request'?",
        "requst",
    ),
    (
        "    args:\n      to:\n        from:\n          - request\n          - lookup_person.\n",
        "tools.grant_group.args.to.from.1",
        "must be TOOL.FIELD",
        "lookup_person.",
    ),
    (
        "    args:\n      body: {find: emial, pattern: x}\n",
        "tools.grant_group.args.body.find",
        "unknown find kind 'emial'. Did you mean 'email'?",
        "emial",
    ),
    (
        "    args:\n      body: {find: email}\n",
        "tools.grant_group.args.body.find",
        "find needs enum, pattern or from",
        "find: email",
    ),
    (
        "    args:\n      body: {find: phone, pattern: x, max: 3}\n",
        "tools.grant_group.args.body.find",
        "min/max do not apply",
        "find: phone",
    ),
    (
        "    context:\n      - {id: c, after: verify_identity}\n      - {id: c, max_per_record: 1}\n",
        "tools.grant_group.context.1.id",
        "duplicate context rule id 'c' (also item 0)",
        "max_per_record",
    ),
    (
        "    context:\n      - {id: c, effect: deny}\n",
        "tools.grant_group.context.0",
        "exactly one of after, read, max_per_record (got none)",
        "id: c",
    ),
    (
        "    context:\n      - {id: c, after: verify_identity, max_per_record: 2}\n",
        "tools.grant_group.context.0",
        "(got after, max_per_record)",
        "id: c",
    ),
    (
        "    context:\n      - id: c\n        read: lookup_person\n        match: {id: person_id}\n        in: [active]\n",
        "tools.grant_group.context.0.in",
        "in needs field",
        "in: [active]",
    ),
    (
        "    context:\n      - id: c\n        read: lookup_person\n        match: {id: person_id}\n        field: status\n",
        "tools.grant_group.context.0.field",
        "field needs in",
        "field: status",
    ),
    (
        "    context:\n      - {id: c, max_per_record: 1, same: {a: b}}\n",
        "tools.grant_group.context.0.same",
        "same only applies with after",
        "same",
    ),
    (
        "    context:\n      - {id: c, read: lookup_person}\n",
        "tools.grant_group.context.0.read",
        "read needs match",
        "read",
    ),
    (
        "    context:\n      - {id: c, after: verify_identity, field: status, in: [a]}\n",
        "tools.grant_group.context.0.field",
        "field only applies with read",
        "field",
    ),
]


@pytest.mark.parametrize(("block", "key", "fragment", "marker"), CHECKS)
def test_cross_checks_name_key_line_and_hint(block: str, key: str, fragment: str, marker: str) -> None:
    text = HEAD + "  grant_group:\n    allowed: true\n" + block
    problem = _one(load_error(text), key)
    assert fragment in problem.reason
    assert problem.line == line_of(text, marker)


def test_max_per_record_cannot_be_negative() -> None:
    err = load_error(HEAD + "  grant_group:\n    allowed: true\n    context: [{id: c, max_per_record: -1}]\n")
    assert err.key == "tools.grant_group.context.0.max_per_record"


def test_a_valid_context_section_loads() -> None:
    p = policy(GRANT)
    rules = p.tools["grant_group"].context
    assert [r.id for r in rules] == ["identity_verified", "person_active", "once_per_person"]
    assert rules[1].in_ == ("active", "onboarding") and rules[2].effect == "require_approval"
    assert p.to_dict()["tools"]["grant_group"]["context"][1]["in"] == ["active", "onboarding"]


# ---------------------------------------------------------------- check_against_tools

SHAPES = {
    "verify_identity": ToolShape(args=frozenset({"person_id"}), fields=frozenset({"ok"})),
    "lookup_person": ToolShape(
        args=frozenset({"person_id"}), fields=frozenset({"id", "status", "manager.email"})
    ),
    "grant_group": ToolShape(args=frozenset({"person_id", "group"}), record_arg="person_id"),
}


def test_check_against_tools_accepts_a_consistent_policy() -> None:
    assert check_against_tools(policy(GRANT), SHAPES) == []
    assert check_against_tools(policy(GRANT).spec, SHAPES) == []


def test_check_against_tools_reports_each_mismatch_with_did_you_mean() -> None:
    text = (
        HEAD
        + """  grant_group:
    allowed: true
    args:
      gruop: {enum: [readers]}
      group: {from: [lookup_person.manager.emial, lookup_person.manager]}
    context:
      - {id: a, after: verify_identity, same: {persn_id: person_ide}}
      - {id: b, read: lookup_person, match: {idd: person_id}, field: stauts, in: [active]}
      - {id: c, after: list_people}
"""
    )
    shapes = {**SHAPES, "grant_group": ToolShape(args=frozenset({"person_id", "group"}))}
    got = {(p.key, p.reason) for p in check_against_tools(policy(text), shapes)}
    keys = sorted(k for k, _ in got)
    assert keys == sorted(
        [
            "tools.grant_group.args.gruop",
            "tools.grant_group.args.group.from.0",
            "tools.grant_group.context.0.same.persn_id",
            "tools.grant_group.context.0.same.persn_id",
            "tools.grant_group.context.1.match.idd",
            "tools.grant_group.context.1.field",
            "tools.grant_group.context.2.after",
        ]
    )
    reasons = " | ".join(r for _, r in got)
    assert "tool 'grant_group' has no argument 'gruop'. Did you mean 'group'?" in reasons
    assert (
        "tool 'lookup_person' has no result field 'manager.emial'. Did you mean 'manager.email'?" in reasons
    )
    assert "tool 'verify_identity' has no argument 'persn_id'. Did you mean 'person_id'?" in reasons
    assert "tool 'grant_group' has no argument 'person_ide'. Did you mean 'person_id'?" in reasons
    assert "has no result field 'idd'. Did you mean 'id'?" in reasons
    assert "has no result field 'stauts'. Did you mean 'status'?" in reasons
    assert "'list_people' is not a tool of this workflow" in reasons


def test_check_against_tools_max_per_record_needs_a_record_arg() -> None:
    shapes = {**SHAPES, "grant_group": ToolShape(args=frozenset({"person_id", "group"}))}
    problems = check_against_tools(policy(GRANT), shapes)
    assert [p.key for p in problems] == ["tools.grant_group.context.2.max_per_record"]
    assert "declares no record argument" in problems[0].reason


def test_check_against_tools_skips_tools_the_workflow_lacks() -> None:
    assert check_against_tools(policy(GRANT), {}) == []


def test_subject_in_run_context_is_available_to_rules() -> None:
    text = HEAD + "  grant_group:\n    allowed: true\n    args:\n      person_id: {from: [subject]}\n"
    ctx = RunContext(subject=Subject(id="P-1"))
    ok = ActionRequest(tool="grant_group", args={"person_id": "P-1"}, context=ctx)
    bad = ActionRequest(tool="grant_group", args={"person_id": "P-2"}, context=ctx)
    assert policy(text).evaluate(ok).kind == "allow"
    assert policy(text).evaluate(bad).rule_id == "tools.grant_group.args.person_id"
