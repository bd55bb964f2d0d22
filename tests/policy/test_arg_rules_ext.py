"""Argument rules on lists, optional arguments, values found inside text (``find``) and the
provenance of values (``from``); the version hash of files that use none of this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.guards.context import PriorAction, RunContext, Subject
from tether.guards.decisions import Allow, Deny, RequireApproval
from tether.guards.matchers import find_values
from tether.guards.policy import ActionRequest, Policy

ROOT = Path(__file__).resolve().parents[2]
SUPPORT_TEXT = (ROOT / "agents" / "support" / "agent-policy.yaml").read_text()

HEAD = """agent:
  max_wall_clock_seconds: 60
  max_tool_calls: 10
  max_model_spend_usd: 1
tools:
  lookup_person: {allowed: true}
  send_email:
    allowed: true
    args:
"""


def policy(args_block: str) -> Policy:
    return Policy.from_text(HEAD + args_block, source="<test>")


def email(
    args: dict[str, Any],
    *,
    request: str = "",
    actions: tuple[PriorAction, ...] = (),
    subject: Subject | None = None,
) -> ActionRequest:
    ctx = RunContext(request=request, actions=actions, subject=subject)
    return ActionRequest(tool="send_email", args=args, context=ctx)


# ---------------------------------------------------------------- lists and optional arguments


def test_every_list_element_is_checked_and_the_first_failure_is_reported_with_its_index() -> None:
    p = policy("      cc: {pattern: '.*@example\\.com'}\n")
    assert p.evaluate(email({"cc": ["a@example.com", "b@example.com"]})).kind == "allow"
    d = p.evaluate(email({"cc": ["a@example.com", "x@evil.io", "y@evil.io"]}))
    assert isinstance(d, Deny) and d.rule_id == "tools.send_email.args.cc"
    assert "element 1 of argument 'cc'" in d.reason and "evil" not in d.reason
    assert p.evaluate(email({"cc": []})).kind == "allow"


def test_list_elements_checked_against_enum_and_range() -> None:
    p = policy("      groups: {enum: [readers, editors]}\n      sizes: {min: 1, max: 5}\n")
    assert p.evaluate(email({"groups": ["readers", "editors"], "sizes": [1, 5]})).kind == "allow"
    d = p.evaluate(email({"groups": ["readers", "admins"]}))
    assert d.rule_id == "tools.send_email.args.groups" and "element 1" in d.reason and "'admins'" in d.reason
    d = p.evaluate(email({"sizes": [2, 9]}))
    assert d.rule_id == "tools.send_email.args.sizes" and "above the maximum 5" in d.reason


def test_missing_optional_argument_passes_and_required_one_does_not() -> None:
    p = policy("      cc: {pattern: 'x'}\n      to: {pattern: '.+', required: true}\n")
    assert p.evaluate(email({"to": "a"})).kind == "allow"  # cc absent
    assert p.evaluate(email({"to": "a", "cc": None})).kind == "allow"  # cc null
    d = p.evaluate(email({"cc": "x"}))
    assert d.rule_id == "tools.send_email.args.to" and "required" in d.reason and "does not give" in d.reason


# ---------------------------------------------------------------- find


@pytest.mark.parametrize(
    ("kind", "text", "found"),
    [
        (
            "email",
            "write to Bob <bob.smith@corp.example.com>, or ann+x@b.io.",
            ["bob.smith@corp.example.com", "ann+x@b.io"],
        ),
        (
            "url",
            "see https://example.com/a?b=1. and (www.x.org/p), not ftp://y",
            ["https://example.com/a?b=1", "www.x.org/p"],
        ),
        (
            "iban",
            "pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432 now",
            ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
        ),
        ("account_number", "acct 12345678 or 1234567 or 9.12345678 or 123456789012345678901", ["12345678"]),
        ("phone", "call +1 (555) 123-4567 or 030 1234567; not 12345", ["+1 (555) 123-4567", "030 1234567"]),
        ("email", "no address here @ all", []),
    ],
)
def test_find_patterns(kind: str, text: str, found: list[str]) -> None:
    assert find_values(kind, text) == found


def test_find_checks_every_value_found_in_the_text() -> None:
    p = policy("      body: {find: email, pattern: '.*@example\\.com'}\n")
    assert p.evaluate(email({"body": "Hi, reply to a@example.com or b@example.com."})).kind == "allow"
    assert p.evaluate(email({"body": "no addresses at all"})).kind == "allow"
    d = p.evaluate(email({"body": "cc a@example.com and secret@evil.io please"}))
    assert isinstance(d, Deny) and d.rule_id == "tools.send_email.args.body"
    assert "email address #2" in d.reason and "secret" not in d.reason and "evil" not in d.reason
    # a look-alike domain is one address, and it does not match
    assert p.evaluate(email({"body": "x@example.com.evil.io"})).kind == "deny"


def test_find_on_a_list_of_texts_and_on_non_text() -> None:
    p = policy("      lines: {find: url, enum: ['https://example.com/ok']}\n")
    assert p.evaluate(email({"lines": ["see https://example.com/ok", "nothing"]})).kind == "allow"
    d = p.evaluate(email({"lines": ["fine", "go to https://evil.io/x"]}))
    assert d.kind == "deny" and "element 1" in d.reason and "URL #1" in d.reason and "evil" not in d.reason
    assert "must be text" in p.evaluate(email({"lines": 42})).reason


def test_find_with_from_asks_approval_for_account_numbers_not_in_the_request() -> None:
    p = policy("      note: {find: iban, from: [request], effect: require_approval}\n")
    req = "please pay my landlord, IBAN DE89 3704 0044 0532 0130 00"
    ok = p.evaluate(email({"note": "paying DE89 3704 0044 0532 0130 00 today"}, request=req))
    assert isinstance(ok, Allow)
    d = p.evaluate(email({"note": "paying GB82WEST12345698765432"}, request=req))
    assert isinstance(d, RequireApproval) and d.rule_id == "tools.send_email.args.note"
    assert "the user's request" in d.reason and "GB82" not in d.reason


# ---------------------------------------------------------------- from


LOOKUP = PriorAction(
    tool="lookup_person",
    args={"person_id": "P-1"},
    status="executed",
    result={"person": {"email": "ann@corp.io"}, "aliases": [{"email": "a@corp.io"}]},
)


def test_from_request_subject_and_tool_result() -> None:
    p = policy(
        "      to: {from: [request, subject, lookup_person.person.email, lookup_person.aliases.email]}\n"
    )
    subject = Subject(id="S-7", attributes={"emails": ["me@home.io"], "manager": {"email": "boss@corp.io"}})
    cases = {
        "Bob@Example.com": True,  # in the request, case-insensitively
        "S-7": True,  # the subject's id
        "me@home.io": True,  # a value in the subject's attributes (lists searched)
        "boss@corp.io": True,  # nested attribute
        "ann@corp.io": True,  # lookup_person result
        "a@corp.io": True,  # inside a list of the result
        "eve@evil.io": False,
    }
    for value, allowed in cases.items():
        d = p.evaluate(
            email({"to": value}, request="mail bob@example.com", actions=(LOOKUP,), subject=subject)
        )
        assert (d.kind == "allow") == allowed, value
        if not allowed:
            assert d.rule_id == "tools.send_email.args.to"
            assert "the user's request" in d.reason and "the run's subject" in d.reason
            assert "lookup_person.person.email" in d.reason and value not in d.reason


def test_from_request_matches_whole_tokens_only() -> None:
    p = policy("      ref: {from: [request]}\n")
    assert p.evaluate(email({"ref": "P-12"}, request="grant P-12 access")).kind == "allow"
    assert p.evaluate(email({"ref": "P-1"}, request="grant P-12 access")).kind == "deny"
    assert p.evaluate(email({"ref": ""}, request="anything")).kind == "deny"
    assert p.evaluate(email({"ref": 40}, request="refund 40 dollars")).kind == "allow"
    assert p.evaluate(email({"ref": 40.0}, request="refund 40 dollars")).kind == "allow"
    assert p.evaluate(email({"ref": True}, request="true")).kind == "deny"


def test_from_tool_only_counts_successful_calls_and_exact_values() -> None:
    p = policy("      to: {from: [lookup_person.person.email]}\n")
    failed = LOOKUP.model_copy(update={"status": "failed"})
    assert p.evaluate(email({"to": "ann@corp.io"}, actions=(failed,))).kind == "deny"
    assert p.evaluate(email({"to": "ANN@corp.io"}, actions=(LOOKUP,))).kind == "deny"
    assert p.evaluate(email({"to": "ann@corp.io"}, actions=(LOOKUP,))).kind == "allow"


def test_from_subject_without_a_subject_admits_nothing() -> None:
    p = policy("      to: {from: [subject]}\n")
    assert p.evaluate(email({"to": "x"})).kind == "deny"


def test_from_on_a_list_checks_each_element() -> None:
    p = policy("      to: {from: [request]}\n")
    ok = p.evaluate(email({"to": ["a@x.io", "b@x.io"]}, request="send to a@x.io and b@x.io"))
    assert ok.kind == "allow"
    d = p.evaluate(email({"to": ["a@x.io", "c@x.io"]}, request="send to a@x.io and b@x.io"))
    assert d.kind == "deny" and "element 1" in d.reason


@settings(max_examples=200, deadline=None)
@given(request=st.text(max_size=40), value=st.text(min_size=0, max_size=8))
def test_from_request_never_admits_a_value_absent_from_the_request(request: str, value: str) -> None:
    p = policy("      to: {from: [request]}\n")
    d = p.evaluate(email({"to": value}, request=request))
    if d.kind == "allow":
        assert value.strip() and value.casefold() in request.casefold()
    if value.strip() and value.casefold() not in request.casefold():
        assert d.kind == "deny"
        assert d.reason == "argument 'to' does not come from the user's request"  # the value is not echoed


@given(value=st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True))
@settings(max_examples=100, deadline=None)
def test_from_request_admits_a_value_written_as_its_own_word(value: str) -> None:
    p = policy("      to: {from: [request]}\n")
    assert p.evaluate(email({"to": value}, request=f"please use {value.upper()} now")).kind == "allow"


# ---------------------------------------------------------------- version hash


ARGS_BLOCK = """    require_citation: true
    args:
      amount_usd: {min: 0.5, max: 45}
      order_id: {pattern: "O-[0-9]{5}", shadow: true}
"""


def test_arg_rules_without_new_keys_keep_their_version() -> None:
    base = SUPPORT_TEXT.replace("    require_citation: true\n", ARGS_BLOCK, 1)
    spelled = base.replace("{min: 0.5, max: 45}", "{min: 0.5, max: 45, effect: deny, required: false}")
    assert Policy.from_text(spelled).version == Policy.from_text(base).version
    canon = Policy.from_text(base).to_dict()["tools"]["issue_refund"]
    assert set(canon["args"]["amount_usd"]) == {"min", "max", "enum", "pattern", "shadow"}
    assert "context" not in canon
    changed = base.replace("{min: 0.5, max: 45}", "{min: 0.5, max: 45, effect: escalate}")
    assert Policy.from_text(changed).version != Policy.from_text(base).version
    required = base.replace("{min: 0.5, max: 45}", "{min: 0.5, max: 45, required: true}")
    assert Policy.from_text(required).version != Policy.from_text(base).version


def test_predicate_mapping_with_default_effect_hashes_as_the_bare_name() -> None:
    from tether.guards.predicates import PredicateRegistry

    reg = PredicateRegistry()
    reg.register("p")(lambda a: None)
    bare = SUPPORT_TEXT.replace(
        "    require_citation: true\n", "    require_citation: true\n    predicates: [p]\n", 1
    )
    mapped = bare.replace("[p]", "[{name: p, effect: deny}]")
    escal = bare.replace("[p]", "[{name: p, effect: escalate}]")
    v = Policy.from_text(bare, predicates=reg).version
    assert Policy.from_text(mapped, predicates=reg).version == v
    assert Policy.from_text(escal, predicates=reg).version != v
    assert Policy.from_text(bare, predicates=reg).to_dict()["tools"]["issue_refund"]["predicates"] == ["p"]


def test_to_dict_round_trips_through_the_loader() -> None:
    import json

    text = SUPPORT_TEXT.replace("    require_citation: true\n", ARGS_BLOCK, 1).replace(
        'order_id: {pattern: "O-[0-9]{5}", shadow: true}',
        'order_id: {pattern: "O-[0-9]{5}", from: [request, lookup_order.order_id], effect: require_approval}',
    )
    p = Policy.from_text(text)
    again = Policy.from_text(json.dumps(p.to_dict()))
    assert again.version == p.version
    assert again.tools["issue_refund"].args["order_id"].from_ == ("request", "lookup_order.order_id")
