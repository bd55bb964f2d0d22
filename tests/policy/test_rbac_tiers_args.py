"""RBAC, risk tiers, argument rules and predicates, on top of the article's policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import PolicyFileError
from tether.guards.policy import ActionRequest, Policy
from tether.guards.predicates import PredicateRegistry, policy_predicate

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "agents" / "support" / "agent-policy.yaml"
ARTICLE = ROOT / "tests" / "fixtures" / "article-agent-policy.yaml"
SUPPORT_TEXT = SUPPORT.read_text()
CITE = "KB-REFUND@v3#p1"

RBAC = SUPPORT_TEXT + """
principals:
  support_bot: {id: tether-agent, roles: [support_agent]}
  reporting_bot: {roles: [analyst]}
roles:
  support_agent:
    tools: [lookup_customer, lookup_order, search_policy, issue_refund, update_crm_record, handoff_to_human]
  analyst:
    tools: [run_sql_query, lookup_order]
"""


def refund(amount: float, **kw: object) -> ActionRequest:
    return ActionRequest(
        tool="issue_refund", amount_usd=amount, citations=(CITE,), retrieved_evidence=frozenset({CITE}), **kw
    )


def load_error(text: str, **kw: object) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(text, source="p.yaml", **kw)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------- compatibility


@pytest.mark.parametrize("path", [SUPPORT, ARTICLE])
def test_existing_files_keep_their_version_and_dict(path: Path) -> None:
    p = Policy.from_yaml(path)
    assert set(p.to_dict()) == {"agent", "tools"}
    for rule in p.to_dict()["tools"].values():  # type: ignore[union-attr]
        assert "risk" not in rule and "args" not in rule
    assert not p.has_shadow
    assert p.evaluate(refund(40)).kind == "require_approval"


def test_role_kwargs_are_ignored_without_a_roles_section() -> None:
    p = Policy.from_yaml(SUPPORT)
    a = ActionRequest(tool="lookup_order")
    assert p.evaluate(a, role="nobody") == p.evaluate(a) == p.evaluate(a, principal="x")


# ---------------------------------------------------------------- RBAC


def test_granted_tool_is_decided_by_the_tool_rule_and_lists_the_grant() -> None:
    p = Policy.from_text(RBAC)
    d = p.evaluate(refund(40), principal="tether-agent")
    assert d.kind == "require_approval"
    assert d.rule_id == "tools.issue_refund.require_approval_over_usd"
    assert [m.rule_id for m in d.matched][-1] == "roles.support_agent.tools"
    ok = p.evaluate(ActionRequest(tool="lookup_order", principal="support_bot"))
    assert ok.kind == "allow" and ok.rule_id == "tools.lookup_order.allowed"


def test_tool_not_granted_is_denied_by_the_role_rule() -> None:
    p = Policy.from_text(RBAC)
    d = p.evaluate(ActionRequest(tool="run_sql_query", subject_id="C-1"), principal="tether-agent")
    assert d.kind == "deny" and d.rule_id == "roles.support_agent.tools"
    d = p.evaluate(refund(10), role="analyst")
    assert d.kind == "deny" and d.rule_id == "roles.analyst.tools"


def test_no_role_or_unknown_role_is_denied_by_default() -> None:
    p = Policy.from_text(RBAC)
    for d in (
        p.evaluate(refund(10)),
        p.evaluate(refund(10), principal="stranger"),
        p.evaluate(refund(10), role="admin"),
    ):
        assert d.kind == "deny" and d.rule_id == "default.role_not_granted"


def test_roles_on_the_request_and_kwarg_precedence() -> None:
    p = Policy.from_text(RBAC)
    assert p.evaluate(refund(10, roles=("support_agent",))).kind == "allow"
    # the explicit role from run configuration wins over the request's
    assert p.evaluate(refund(10, roles=("support_agent",)), role="analyst").kind == "deny"
    # several roles: any grant suffices
    assert p.evaluate(ActionRequest(tool="lookup_order", roles=("analyst", "support_agent"))).kind == "allow"


def test_unlisted_tool_is_still_denied_first() -> None:
    d = Policy.from_text(RBAC).evaluate(ActionRequest(tool="drop_db", roles=("support_agent",)))
    assert d.rule_id == "default.unlisted_tool"


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        ("tools: [run_sql_query, lookup_order]", "tools: [run_sql_querry]", "roles.analyst.tools.0", "run_sql_query"),
        ("roles: [analyst]", "roles: [analyts]", "principals.reporting_bot.roles.0", "analyst"),
        ("reporting_bot: {roles", "reporting_bot: {rolez", "principals.reporting_bot.rolez", "roles"),
    ],
)
def test_rbac_mistakes_are_policy_file_errors(old: str, new: str, key: str, hint: str) -> None:
    err = load_error(RBAC.replace(old, new))
    assert err.key == key and err.path == "p.yaml"
    assert f"Did you mean '{hint}'?" in err.reason
    assert err.problems[0].line is not None


# ---------------------------------------------------------------- risk tiers

TIERS = SUPPORT_TEXT.replace(
    "    require_citation: true\n", "    risk: financial\n"
).replace("  handoff_to_human:\n    allowed: true\n", "  handoff_to_human:\n    allowed: true\n    risk: irreversible\n") + """
tiers:
  financial: {require_citation: true, max_amount_usd: 100}
  irreversible: {require_approval: true}
"""


def test_tier_defaults_apply_with_tier_rule_ids() -> None:
    p = Policy.from_text(TIERS)
    d = p.evaluate(ActionRequest(tool="issue_refund", amount_usd=10))
    assert d.kind == "deny" and d.rule_id == "tiers.financial.require_citation"
    # the tool's own, tighter max wins over the tier's
    assert p.evaluate(refund(60)).rule_id == "tools.issue_refund.max_amount_usd"
    h = p.evaluate(ActionRequest(tool="handoff_to_human"))
    assert h.kind == "require_approval" and h.rule_id == "tiers.irreversible.require_approval"


def test_tool_can_tighten_a_tier() -> None:
    p = Policy.from_text(TIERS.replace("    risk: irreversible\n", "    risk: write\n    require_approval: true\n"))
    assert p.evaluate(ActionRequest(tool="handoff_to_human")).rule_id == "tools.handoff_to_human.require_approval"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("    risk: financial\n", "    risk: financial\n    require_citation: false\n", "tools.issue_refund.require_citation"),
        ("max_amount_usd: 50\n", "max_amount_usd: 150\n", "tools.issue_refund.max_amount_usd"),
        ("    risk: irreversible\n", "    risk: irreversible\n    require_approval: false\n",
         "tools.handoff_to_human.require_approval"),
    ],
)
def test_loosening_a_tier_is_a_policy_file_error(old: str, new: str, key: str) -> None:
    text = TIERS.replace(old, new)
    assert text != TIERS
    err = load_error(text)
    assert err.key == key and "loosens risk tier" in err.reason and err.problems[0].line


def test_unknown_risk_tier_is_refused() -> None:
    err = load_error(TIERS.replace("risk: financial", "risk: finance"))
    assert err.key == "tools.issue_refund.risk"


# ---------------------------------------------------------------- args and predicates

ARGS = SUPPORT_TEXT.replace(
    "    require_citation: true\n",
    """    require_citation: true
    args:
      amount_usd: {min: 0.5, max: 45}
      order_id: {pattern: "O-[0-9]{5}", required: true}
      reason: {enum: [damaged, late, wrong_item]}
""",
)


def test_arg_rules_deny_with_field_rule_ids() -> None:
    p = Policy.from_text(ARGS)
    good = {"amount_usd": 10.0, "order_id": "O-20417", "reason": "late"}
    assert p.evaluate(refund(10, args=good)).kind == "allow"
    cases = {
        "amount_usd": {**good, "amount_usd": 0.1},
        "order_id": {**good, "order_id": "O-1; DROP"},
        "reason": {**good, "reason": "because"},
    }
    for field, args in cases.items():
        d = p.evaluate(refund(10, args=args))
        assert d.kind == "deny" and d.rule_id == f"tools.issue_refund.args.{field}", field
    missing = p.evaluate(refund(10, args={"amount_usd": 10.0, "reason": "late"}))
    assert missing.rule_id == "tools.issue_refund.args.order_id" and "does not give" in missing.reason
    # an optional argument (no required: true) may be left out
    assert p.evaluate(refund(10, args={"amount_usd": 10.0, "order_id": "O-20417"})).kind == "allow"
    # the pattern's value is not echoed (arguments may be sensitive)
    assert "DROP" not in p.evaluate(refund(10, args=cases["order_id"])).reason


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ("{min: 5, max: 1}", "tools.issue_refund.args.amount_usd"),
        ("{enum: []}", "tools.issue_refund.args.amount_usd"),
        ('{pattern: "(["}', "tools.issue_refund.args.amount_usd.pattern"),
        ("{maxx: 3}", "tools.issue_refund.args.amount_usd.maxx"),
    ],
)
def test_bad_arg_rules_are_policy_file_errors(rule: str, key: str) -> None:
    err = load_error(ARGS.replace("{min: 0.5, max: 45}", rule))
    assert err.key == key


def test_predicates_resolve_from_an_explicit_registry() -> None:
    reg = PredicateRegistry()

    @policy_predicate("same_customer_order", registry=reg)
    def same(a: ActionRequest) -> str | None:
        return None if str(a.args.get("order_id", "")).startswith("O-2") else "order is not this customer's"

    @reg.register("explodes")
    def boom(a: ActionRequest) -> str | None:
        raise RuntimeError("bug")

    text = SUPPORT_TEXT.replace("    require_citation: true\n", "    require_citation: true\n    predicates: [same_customer_order]\n")
    p = Policy.from_text(text, predicates=reg)
    assert p.evaluate(refund(10, args={"order_id": "O-20417"})).kind == "allow"
    d = p.evaluate(refund(10, args={"order_id": "O-99999"}))
    assert d.rule_id == "tools.issue_refund.predicates.same_customer_order"
    broken = Policy.from_text(text.replace("[same_customer_order]", "[explodes]"), predicates=reg)
    d = broken.evaluate(refund(10))
    assert d.kind == "deny" and "RuntimeError" in d.reason  # fail closed


def test_unknown_predicate_is_a_load_error_with_did_you_mean() -> None:
    reg = PredicateRegistry()
    reg.register("same_customer_order")(lambda a: None)
    text = SUPPORT_TEXT.replace("    require_citation: true\n", "    require_citation: true\n    predicates: [same_customer_ordr]\n")
    err = load_error(text, predicates=reg)
    assert err.key == "tools.issue_refund.predicates.0"
    assert "Did you mean 'same_customer_order'?" in err.reason
    with pytest.raises(ValueError):
        reg.register("same_customer_order")(lambda a: "x")


def test_nan_amount_fails_closed() -> None:
    d = Policy.from_yaml(SUPPORT).evaluate(refund(float("nan")))
    assert d.kind == "deny" and d.rule_id == "tools.issue_refund.max_amount_usd"
