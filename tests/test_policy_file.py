"""The policy file format and the loaded ``Policy``: strict loading, immutability, versioning,
and the decision function (properties over random actions for the support desk's policy)."""

from __future__ import annotations

import json
import math
from importlib.resources import files
from itertools import permutations
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tether.agents.support.tools import build_support_tools
from tether.errors import PolicyFileError
from tether.guards import ActionRequest, Allow, Deny, Escalate, EscalationAction, Policy, RequireApproval
from tether.guards.decisions import RuleMatch, combine

ARTICLE = Path(__file__).parent / "fixtures" / "article-agent-policy.yaml"
SUPPORT = Path(str(files("tether.agents.support") / "agent-policy.yaml"))
ARTICLE_TEXT = ARTICLE.read_text(encoding="utf-8")
ARTICLE_TOOLS = ("issue_refund", "update_crm_record", "run_sql_query")


def load_error(text: str, *, source: str = "policy.yaml") -> PolicyFileError:
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(text, source=source)
    return info.value


def article_with(old: str, new: str) -> str:
    assert ARTICLE_TEXT.count(old) == 1, f"fixture edit {old!r} is ambiguous or missing"
    return ARTICLE_TEXT.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


# ---------------------------------------------------------------- the article's example


def test_article_example_loads_with_exactly_its_values() -> None:
    p = Policy.from_yaml(ARTICLE)
    b = p.budgets
    assert (b.max_wall_clock_seconds, b.max_tool_calls, b.max_model_spend_usd) == (90.0, 8, 0.35)
    assert p.escalation.on_budget_exceeded is EscalationAction.HANDOFF_TO_HUMAN
    assert p.escalation.on_tool_error_retries_exhausted is EscalationAction.HANDOFF_TO_HUMAN
    assert list(p.tools) == list(ARTICLE_TOOLS)

    refund = p.tools["issue_refund"]
    assert refund.allowed is True
    assert refund.max_amount_usd == 50
    assert refund.require_approval_over_usd == 25
    assert refund.require_citation is True
    assert refund.allowed_fields is None and refund.mode is None and not refund.row_level_security

    crm = p.tools["update_crm_record"]
    assert crm.allowed is True
    assert crm.allowed_fields == ("email", "phone", "shipping_address")
    assert crm.max_amount_usd is None and not crm.require_citation and crm.mode is None

    sql = p.tools["run_sql_query"]
    assert sql.allowed is True
    assert sql.mode == "parameterized_only"
    assert sql.row_level_security is True
    assert sql.allowed_fields is None and sql.max_amount_usd is None


def test_to_dict_is_the_yaml_content_with_defaults_filled_in() -> None:
    raw = yaml.safe_load(ARTICLE_TEXT)
    d = Policy.from_yaml(ARTICLE).to_dict()
    assert d["agent"]["max_tool_calls"] == raw["agent"]["max_tool_calls"]
    assert d["agent"]["escalation"] == raw["agent"]["escalation"]
    for name, rule in raw["tools"].items():
        for key, value in rule.items():
            assert d["tools"][name][key] == value, (name, key)


def test_support_policy_keeps_the_article_rules_and_adds_only_ungoverned_safe_tools() -> None:
    article = Policy.from_yaml(ARTICLE)
    support = Policy.from_yaml(SUPPORT)
    assert support.spec.agent == article.spec.agent
    evidence = {"citation", "outputs", "provenance", "external"}  # the desk's own evidence sections
    for name in ARTICLE_TOOLS:
        assert support.tools[name].model_dump(exclude=evidence) == article.tools[name].model_dump(
            exclude=evidence), name

    toolset = build_support_tools()
    # every tool of the desk is listed, and nothing else
    assert set(support.tools) == set(toolset.names())
    extras = set(support.tools) - set(ARTICLE_TOOLS)
    assert extras == {"lookup_customer", "lookup_order", "search_policy", "handoff_to_human",
                      "read_messages", "get_ticket", "send_email"}
    for name in extras:
        rule = support.tools[name]
        assert rule.allowed is True
        assert rule.model_dump(exclude={"allowed", *evidence}) == type(rule)().model_dump(
            exclude={"allowed", *evidence})
        spec = toolset.get(name)
        assert spec is not None
        # an ungoverned tool either only reads or ends the run (the hand-off)
        # (or leaves the shop only to destinations its provenance rules vouch for)
        assert spec.effect == "read" or spec.terminal or (rule.external and "to" in rule.provenance), name
    assert support.version != article.version


# ---------------------------------------------------------------- PolicyFileError


@pytest.mark.parametrize(
    ("old", "new", "key", "suggestion"),
    [
        ("agent:", "agnet:", "agnet", "agent"),
        ("  max_tool_calls: 8", "  max_tools_calls: 8", "agent.max_tools_calls", "max_tool_calls"),
        ("escalation:", "escalaton:", "agent.escalaton", "escalation"),
        (
            "on_budget_exceeded:",
            "on_budget_exeeded:",
            "agent.escalation.on_budget_exeeded",
            "on_budget_exceeded",
        ),
        (
            "require_citation: true",
            "require_citations: true",
            "tools.issue_refund.require_citations",
            "require_citation",
        ),
        (
            "    row_level_security: true",
            "    row_level_securty: true",
            "tools.run_sql_query.row_level_securty",
            "row_level_security",
        ),
    ],
)
def test_unknown_key_names_path_key_line_and_did_you_mean(
    old: str, new: str, key: str, suggestion: str
) -> None:
    text = article_with(old, new)
    err = load_error(text, source="conf/agent-policy.yaml")
    assert err.path == "conf/agent-policy.yaml"
    problem = next(p for p in err.problems if p.key == key)
    assert "unknown key" in problem.reason
    assert f"Did you mean '{suggestion}'?" in problem.reason
    assert problem.line == line_of(text, new.strip())
    message = str(err)
    assert "conf/agent-policy.yaml" in message and key in message and suggestion in message


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    err = load_error(article_with("    require_citation: true", "    colour: blue"))
    problem = next(p for p in err.problems if p.key == "tools.issue_refund.colour")
    assert "Did you mean" not in problem.reason
    assert "require_citation" in problem.reason and "max_amount_usd" in problem.reason


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ("max_tool_calls: 8", 'max_tool_calls: "eight"', "agent.max_tool_calls", "integer"),
        ("max_tool_calls: 8", "max_tool_calls: 8.5", "agent.max_tool_calls", "integer"),
        ("max_tool_calls: 8", "max_tool_calls: true", "agent.max_tool_calls", "integer"),
        (
            "allowed: true\n    max_amount_usd",
            'allowed: "maybe"\n    max_amount_usd',
            "tools.issue_refund.allowed",
            "boolean",
        ),
        ("max_amount_usd: 50", 'max_amount_usd: "50"', "tools.issue_refund.max_amount_usd", "number"),
        (
            'allowed_fields: ["email", "phone", "shipping_address"]',
            'allowed_fields: "email"',
            "tools.update_crm_record.allowed_fields",
            "tuple",
        ),
        ('mode: "parameterized_only"', 'mode: "free"', "tools.run_sql_query.mode", "parameterized_only"),
        ("tools:", "tools: 5\nunused:", "tools", "dictionary"),
    ],
)
def test_wrong_type_names_the_key_and_what_was_given(old: str, new: str, key: str, fragment: str) -> None:
    text = article_with(old, new)
    err = load_error(text)
    problem = next(p for p in err.problems if p.key == key)
    assert fragment in problem.reason
    assert problem.line == line_of(text, new.split("\n")[0].strip())
    assert err.path == "policy.yaml"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("max_amount_usd: 50", "max_amount_usd: -5", "tools.issue_refund.max_amount_usd"),
        ("require_approval_over_usd: 25", "require_approval_over_usd: -1", "tools.issue_refund.require_approval_over_usd"),
        ("max_tool_calls: 8", "max_tool_calls: -1", "agent.max_tool_calls"),
        ("max_model_spend_usd: 0.35", "max_model_spend_usd: -0.01", "agent.max_model_spend_usd"),
        ("max_wall_clock_seconds: 90", "max_wall_clock_seconds: 0", "agent.max_wall_clock_seconds"),
        ("max_model_spend_usd: 0.35", "max_model_spend_usd: .nan", "agent.max_model_spend_usd"),
    ],
)
def test_negative_limits_are_refused(old: str, new: str, key: str) -> None:
    err = load_error(article_with(old, new))
    assert err.key == key
    assert "cannot be negative" in err.reason


def test_approval_threshold_above_max_is_refused_with_both_values() -> None:
    text = article_with("require_approval_over_usd: 25", "require_approval_over_usd: 60")
    err = load_error(text)
    assert err.key == "tools.issue_refund"
    assert "require_approval_over_usd (60)" in err.reason and "max_amount_usd (50)" in err.reason
    assert err.problems[0].line == line_of(text, "issue_refund:")
    # equal is fine: approvals are asked for nothing, but the file is coherent
    Policy.from_text(article_with("require_approval_over_usd: 25", "require_approval_over_usd: 50"))


@pytest.mark.parametrize("value", ['"panic"', '"HANDOFF_TO_HUMAN"', "3", "[halt]"])
def test_bad_escalation_action_is_refused(value: str) -> None:
    text = article_with(
        'on_budget_exceeded: "handoff_to_human"', f"on_budget_exceeded: {value}"
    )
    err = load_error(text)
    assert err.key == "agent.escalation.on_budget_exceeded"
    assert err.problems[0].line == line_of(text, "on_budget_exceeded")


def test_bad_escalation_action_lists_the_accepted_values() -> None:
    err = load_error(
        article_with('on_budget_exceeded: "handoff_to_human"', 'on_budget_exceeded: "panic"')
    )
    for action in EscalationAction:
        assert action.value in err.reason


@pytest.mark.parametrize(
    "action", [a.value for a in EscalationAction]
)
def test_every_documented_escalation_action_loads(action: str) -> None:
    p = Policy.from_text(
        article_with('on_budget_exceeded: "handoff_to_human"', f"on_budget_exceeded: {action}")
    )
    assert p.escalation.on_budget_exceeded == EscalationAction(action)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("  max_tool_calls: 8\n", "agent.max_tool_calls"),
        ("  max_wall_clock_seconds: 90\n", "agent.max_wall_clock_seconds"),
        ("  max_model_spend_usd: 0.35\n", "agent.max_model_spend_usd"),
    ],
)
def test_missing_required_key(line: str, key: str) -> None:
    err = load_error(article_with(line, ""))
    assert err.key == key
    assert "required" in err.reason and "missing" in err.reason
    assert err.problems[0].line == 2  # the parent 'agent:' line


def test_missing_agent_section() -> None:
    err = load_error("tools:\n  lookup_order:\n    allowed: true\n")
    assert [p.key for p in err.problems] == ["agent"]
    assert "missing" in err.reason


def test_every_problem_is_listed_not_just_the_first() -> None:
    text = article_with("max_tool_calls: 8", 'max_tool_calls: "eight"').replace(
        "require_citation: true", "require_citations: true"
    )
    err = load_error(text)
    keys = {p.key for p in err.problems}
    assert {"agent.max_tool_calls", "tools.issue_refund.require_citations"} <= keys
    assert f"{len(err.problems)} problem(s)" in str(err)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("agent:\n  max_tool_calls: [8\n", 3),
        ("agent:\n  max_tool_calls: 8\n   bad: 1\n", 3),
        ("agent:\n\tmax_tool_calls: 8\n", 2),
    ],
)
def test_invalid_yaml_names_the_line(text: str, line: int) -> None:
    err = load_error(text, source="broken.yaml")
    assert err.path == "broken.yaml"
    assert err.key == "<yaml>"
    assert "not valid YAML" in err.reason
    assert err.problems[0].line == line
    assert f"line {line}" in str(err)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "- agent\n- tools\n", "42\n"])
def test_empty_or_non_mapping_file_is_refused(text: str) -> None:
    err = load_error(text, source="empty.yaml")
    assert err.path == "empty.yaml"
    assert err.key == "<root>"
    assert "mapping" in err.reason


def test_empty_file_on_disk(tmp_path: Path) -> None:
    f = tmp_path / "agent-policy.yaml"
    f.write_text("")
    with pytest.raises(PolicyFileError) as info:
        Policy.from_yaml(f)
    assert info.value.path == str(f)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    f = tmp_path / "nope.yaml"
    with pytest.raises(PolicyFileError) as info:
        Policy.from_yaml(f)
    assert info.value.path == str(f)
    assert info.value.key == "<file>"
    assert "cannot read" in info.value.reason


def test_article_block_with_flattened_indentation_is_refused_not_misread() -> None:
    flat = "\n".join(line.strip() for line in ARTICLE_TEXT.splitlines())
    # plain YAML would accept this and silently keep the last 'allowed:' of three tools
    assert isinstance(yaml.safe_load(flat), dict)
    err = load_error(flat, source="flat.yaml")
    assert {p.key for p in err.problems} == {"allowed"}
    lines = [i for i, ln in enumerate(flat.splitlines(), start=1) if ln.startswith("allowed:")]
    assert sorted(p.line for p in err.problems) == lines[1:]
    for p in err.problems:
        assert "duplicate key" in p.reason
        assert f"first at line {lines[0]}" in p.reason


def test_duplicate_nested_key_is_refused() -> None:
    text = ARTICLE_TEXT + "  issue_refund:\n    allowed: true\n    max_amount_usd: 500\n"
    # yaml.safe_load keeps the second block: the $50 limit would vanish without a word
    assert yaml.safe_load(text)["tools"]["issue_refund"]["max_amount_usd"] == 500
    err = load_error(text)
    assert err.key == "tools.issue_refund"
    assert err.problems[0].line == line_of(text, "max_amount_usd: 500") - 2
    assert f"first at line {line_of(text, 'issue_refund:')}" in err.reason


def test_yaml_tags_that_build_objects_are_refused() -> None:
    text = article_with("max_tool_calls: 8", "max_tool_calls: !!python/object/apply:os.getpid []")
    err = load_error(text)
    assert err.key == "<yaml>"


# ---------------------------------------------------------------- unlisted and disabled tools


@pytest.mark.parametrize("tool", ["delete_customer", "ISSUE_REFUND", "issue_refund ", ""])
def test_unlisted_tool_is_denied(tool: str) -> None:
    d = Policy.from_yaml(ARTICLE).evaluate(ActionRequest(tool=tool, amount_usd=1.0))
    assert isinstance(d, Deny)
    assert d.rule_id == "default.unlisted_tool"
    assert [m.rule_id for m in d.matched] == ["default.unlisted_tool"]


def test_listed_but_disabled_tool_is_denied() -> None:
    p = Policy.from_text(ARTICLE_TEXT + "  lookup_order:\n    allowed: false\n")
    d = p.evaluate(ActionRequest(tool="lookup_order"))
    assert isinstance(d, Deny) and d.rule_id == "tools.lookup_order.allowed"
    # a listed tool with an empty body is disabled too: allowed defaults to false
    p2 = Policy.from_text(ARTICLE_TEXT + "  lookup_order: {}\n")
    assert isinstance(p2.evaluate(ActionRequest(tool="lookup_order")), Deny)


# ---------------------------------------------------------------- frozen


def test_policy_is_frozen() -> None:
    p = Policy.from_yaml(ARTICLE)
    for name, value in [("version", "sha256:0"), ("tools", {}), ("budgets", None), ("new", 1)]:
        with pytest.raises(AttributeError):
            setattr(p, name, value)
    with pytest.raises(TypeError):
        p.tools["issue_refund"] = p.tools["run_sql_query"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del p.tools["issue_refund"]  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        p.tools["issue_refund"].max_amount_usd = 5000  # type: ignore[misc]
    with pytest.raises(ValidationError):
        p.budgets.max_tool_calls = 1000  # type: ignore[misc]
    with pytest.raises(ValidationError):
        p.escalation.on_budget_exceeded = EscalationAction.HALT  # type: ignore[misc]
    assert p.tools["issue_refund"].max_amount_usd == 50
    assert p.budgets.max_tool_calls == 8


def test_policy_attributes_cannot_be_deleted() -> None:
    p = Policy.from_yaml(ARTICLE)
    with pytest.raises(AttributeError):
        del p.version
    assert p.version.startswith("sha256:")


def test_policy_spec_tools_cannot_be_mutated() -> None:
    p = Policy.from_yaml(ARTICLE)
    before = p.to_dict()
    spec = p.spec
    spec.tools["issue_refund"] = spec.tools["run_sql_query"]  # a copy: the policy is untouched
    assert p.to_dict() == before
    assert p.spec.tools["issue_refund"].max_amount_usd == 50


# ---------------------------------------------------------------- version


def _same_content_variants() -> list[str]:
    data = yaml.safe_load(ARTICLE_TEXT)
    reordered = {
        "tools": dict(reversed(list(data["tools"].items()))),
        "agent": dict(reversed(list(data["agent"].items()))),
    }
    no_defaults = json.loads(json.dumps(data))
    del no_defaults["agent"]["escalation"]  # the article spells out the defaults
    explicit_defaults = json.loads(json.dumps(data))
    explicit_defaults["agent"]["max_tool_error_retries"] = 2
    explicit_defaults["tools"]["update_crm_record"]["require_citation"] = False
    return [
        "# a comment on top\n" + ARTICLE_TEXT.replace("\n", "   # trailing\n", 3),
        "\n".join(line.replace("  ", "    ") for line in ARTICLE_TEXT.splitlines()),
        json.dumps(data),
        json.dumps(data, indent=7),
        yaml.safe_dump(reordered, sort_keys=False),
        ARTICLE_TEXT.replace('"', ""),
        ARTICLE_TEXT.replace("max_amount_usd: 50", "max_amount_usd: 50.0")
        .replace("max_wall_clock_seconds: 90", "max_wall_clock_seconds: 9.0e1"),
        ARTICLE_TEXT.replace("allowed: true", "allowed: yes"),
        yaml.safe_dump(no_defaults),
        yaml.safe_dump(explicit_defaults),
    ]


@pytest.mark.parametrize("variant", range(len(_same_content_variants())))
def test_version_ignores_formatting_comments_order_and_spelled_out_defaults(variant: int) -> None:
    text = _same_content_variants()[variant]
    assert text != ARTICLE_TEXT
    original = Policy.from_yaml(ARTICLE)
    assert Policy.from_text(text, source="elsewhere.yaml").version == original.version


def test_version_format_and_independence_from_source() -> None:
    p = Policy.from_yaml(ARTICLE)
    prefix, digest = p.version.split(":")
    assert prefix == "sha256" and len(digest) == 16 and int(digest, 16) >= 0
    assert Policy.from_text(ARTICLE_TEXT, source="a").version == p.version


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("max_tool_calls: 8", "max_tool_calls: 9"),
        ("max_model_spend_usd: 0.35", "max_model_spend_usd: 0.36"),
        ("max_amount_usd: 50", "max_amount_usd: 50.01"),
        ("require_approval_over_usd: 25", "require_approval_over_usd: 24"),
        ("require_citation: true", "require_citation: false"),
        ('["email", "phone", "shipping_address"]', '["email", "phone"]'),
        ("row_level_security: true", "row_level_security: false"),
        ('on_budget_exceeded: "handoff_to_human"', 'on_budget_exceeded: "halt"'),
        ("  run_sql_query:", "  run_sql_query_v2:"),
    ],
)
def test_version_changes_with_any_value(old: str, new: str) -> None:
    assert Policy.from_text(article_with(old, new)).version != Policy.from_yaml(ARTICLE).version


def test_version_changes_when_a_tool_is_added() -> None:
    more = ARTICLE_TEXT + "  lookup_order:\n    allowed: true\n"
    assert Policy.from_text(more).version != Policy.from_yaml(ARTICLE).version


# ---------------------------------------------------------------- combination


RANK = {"allow": 0, "require_approval": 1, "escalate": 2, "deny": 3}
KIND = {"allow": Allow, "require_approval": RequireApproval, "escalate": Escalate, "deny": Deny}


@given(
    st.lists(
        st.sampled_from(["allow", "require_approval", "escalate", "deny"]), min_size=1, max_size=6
    ),
    st.sampled_from(list(EscalationAction)),
)
def test_combine_strongest_effect_wins_and_keeps_every_match(
    effects: list[str], escalation: EscalationAction
) -> None:
    matches = [
        RuleMatch(rule_id=f"r{i}", effect=e, reason=f"because {i}")  # type: ignore[arg-type]
        for i, e in enumerate(effects)
    ]
    d = combine(matches, escalation=escalation)
    top = max(effects, key=RANK.__getitem__)
    assert isinstance(d, KIND[top])
    assert d.kind == top
    assert sorted(m.rule_id for m in d.matched) == sorted(m.rule_id for m in matches)
    assert [RANK[m.effect] for m in d.matched] == sorted((RANK[e] for e in effects), reverse=True)
    first = next(m for m in matches if m.effect == top)  # ties keep the given order
    assert (d.rule_id, d.reason) == (first.rule_id, first.reason)
    if isinstance(d, Escalate):
        assert d.action is escalation


def test_combine_order_deny_escalate_approval_allow() -> None:
    effects = ["allow", "require_approval", "escalate", "deny"]
    for order in permutations(effects):
        for n in range(1, 5):
            present = [e for e in order if e in effects[-n:]]
            matches = [RuleMatch(rule_id=e, effect=e, reason=e) for e in present]  # type: ignore[arg-type]
            assert combine(matches).kind == effects[-1], present
        for strongest in range(4):
            present = [e for e in order if RANK[e] <= strongest]
            matches = [RuleMatch(rule_id=e, effect=e, reason=e) for e in present]  # type: ignore[arg-type]
            assert combine(matches).kind == effects[strongest]


def test_combine_needs_a_match() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine([])


# ---------------------------------------------------------------- the support policy, by property

POLICY = Policy.from_yaml(SUPPORT)
CRM_ALLOWED = {"email", "phone", "shipping_address"}
CUSTOMERS = ["C-1042", "C-1043", "C-2000"]
EVIDENCE = ["KB-REFUND@v3#p1", "KB-REFUND@v3#p2", "KB-SHIP@v2#p3", "KB-FAKE@v1#p1"]

actions = st.builds(
    ActionRequest,
    tool=st.sampled_from([*POLICY.tools, "delete_customer", "issue_refund", "run_sql_query"]),
    amount_usd=st.one_of(
        st.none(),
        st.sampled_from([0.0, 0.01, 25.0, 25.01, 49.99, 50.0, 50.01, 80.0, math.inf]),
        st.floats(min_value=0, max_value=500, allow_nan=False),
    ),
    fields=st.one_of(
        st.none(),
        st.lists(
            st.sampled_from([*sorted(CRM_ALLOWED), "credit_limit_usd", "name"]), unique=True, max_size=4
        ).map(lambda xs: tuple(sorted(xs))),
    ),
    free_sql=st.booleans(),
    target_subject_ids=st.lists(st.sampled_from(CUSTOMERS), unique=True, max_size=2).map(tuple),
    subject_id=st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
    citations=st.lists(st.sampled_from(EVIDENCE), unique=True, max_size=2).map(tuple),
    retrieved_evidence=st.frozensets(st.sampled_from(EVIDENCE)),
)


def expected_rules(a: ActionRequest) -> dict[str, str]:
    """The support policy written out by hand: matched rule id -> effect."""
    t = f"tools.{a.tool}"
    out: dict[str, str] = {}
    if a.tool not in POLICY.tools:
        return {"default.unlisted_tool": "deny"}
    if a.tool == "issue_refund":
        if a.amount_usd is None:
            out[f"{t}.max_amount_usd"] = "deny"
        else:
            if a.amount_usd > 50:
                out[f"{t}.max_amount_usd"] = "deny"
            if a.amount_usd > 25:
                out[f"{t}.require_approval_over_usd"] = "require_approval"
        if not a.citations or not set(a.citations) <= a.retrieved_evidence:
            out[f"{t}.require_citation"] = "deny"
    elif a.tool == "update_crm_record":
        if not a.fields or not set(a.fields) <= CRM_ALLOWED:
            out[f"{t}.allowed_fields"] = "deny"
    elif a.tool == "run_sql_query":
        if a.free_sql:
            out[f"{t}.mode"] = "deny"
        if a.subject_id is None or any(
            c != a.subject_id for c in a.target_subject_ids
        ):
            out[f"{t}.row_level_security"] = "deny"
    return out or {f"{t}.allowed": "allow"}


@settings(max_examples=400, deadline=None)
@given(actions)
def test_support_policy_decisions(a: ActionRequest) -> None:
    d = POLICY.evaluate(a)
    matched = {m.rule_id: m.effect for m in d.matched}
    assert len(matched) == len(d.matched), "a rule matched twice"
    assert matched == expected_rules(a)

    # the strongest matched rule decides; matched is listed strongest first
    assert d.kind == max(matched.values(), key=RANK.__getitem__)
    assert d.rule_id == d.matched[0].rule_id and d.reason == d.matched[0].reason
    ranks = [RANK[m.effect] for m in d.matched]
    assert ranks == sorted(ranks, reverse=True)
    assert all(m.reason for m in d.matched)

    # the spec, as implications
    cited = bool(a.citations) and set(a.citations) <= a.retrieved_evidence
    if a.tool == "issue_refund":
        if a.amount_usd is not None and a.amount_usd > 50:
            assert isinstance(d, Deny)
            assert "tools.issue_refund.max_amount_usd" in matched
            assert "tools.issue_refund.require_approval_over_usd" in matched
        elif a.amount_usd is not None and a.amount_usd > 25 and cited:
            assert isinstance(d, RequireApproval)
            assert d.rule_id == "tools.issue_refund.require_approval_over_usd"
        elif a.amount_usd is not None and cited:
            assert isinstance(d, Allow)
        else:
            assert isinstance(d, Deny)
    if a.tool == "update_crm_record":
        ok = bool(a.fields) and set(a.fields or ()) <= CRM_ALLOWED
        assert isinstance(d, Allow if ok else Deny)
        if a.fields and not set(a.fields) <= CRM_ALLOWED:
            assert d.rule_id == "tools.update_crm_record.allowed_fields"
    if a.tool == "run_sql_query":
        if a.free_sql:
            assert isinstance(d, Deny) and "tools.run_sql_query.mode" in matched
        if any(c != a.subject_id for c in a.target_subject_ids):
            assert isinstance(d, Deny) and "tools.run_sql_query.row_level_security" in matched
    if a.tool in ("lookup_customer", "lookup_order", "search_policy", "handoff_to_human"):
        assert isinstance(d, Allow)
    if a.tool not in POLICY.tools:
        assert isinstance(d, Deny) and d.rule_id == "default.unlisted_tool"

    # deterministic: same action, same decision, from this or a freshly loaded policy
    assert POLICY.evaluate(a) == d
    assert Policy.from_yaml(SUPPORT).evaluate(a) == d
    assert POLICY.evaluate(ActionRequest.model_validate(a.model_dump())) == d


@pytest.mark.parametrize(
    ("amount", "kind", "rule"),
    [
        (18.0, "allow", "tools.issue_refund.allowed"),
        (25.0, "allow", "tools.issue_refund.allowed"),
        (25.01, "require_approval", "tools.issue_refund.require_approval_over_usd"),
        (40.0, "require_approval", "tools.issue_refund.require_approval_over_usd"),
        (50.0, "require_approval", "tools.issue_refund.require_approval_over_usd"),
        (50.01, "deny", "tools.issue_refund.max_amount_usd"),
        (80.0, "deny", "tools.issue_refund.max_amount_usd"),
    ],
)
def test_refund_thresholds(amount: float, kind: str, rule: str) -> None:
    cite = "KB-REFUND@v3#p1"
    d = POLICY.evaluate(
        ActionRequest(
            tool="issue_refund", amount_usd=amount, citations=(cite,), retrieved_evidence=frozenset({cite})
        )
    )
    assert (d.kind, d.rule_id) == (kind, rule)
    assert f"{amount:,.2f}" in d.reason


def test_uncited_refund_over_limit_lists_all_three_rules() -> None:
    d = POLICY.evaluate(ActionRequest(tool="issue_refund", amount_usd=80.0))
    assert isinstance(d, Deny)
    assert [m.rule_id for m in d.matched] == [
        "tools.issue_refund.max_amount_usd",
        "tools.issue_refund.require_citation",
        "tools.issue_refund.require_approval_over_usd",
    ]
    assert [m.effect for m in d.matched] == ["deny", "deny", "require_approval"]


def test_nan_amount_is_not_allowed() -> None:
    cite = "KB-REFUND@v3#p1"
    d = POLICY.evaluate(
        ActionRequest(
            tool="issue_refund",
            amount_usd=float("nan"),
            citations=(cite,),
            retrieved_evidence=frozenset({cite}),
        )
    )
    assert isinstance(d, Deny)
