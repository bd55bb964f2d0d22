"""The compiled per-tool plans decide exactly as the straightforward evaluation does.

``reference_decide`` is the plain evaluation: every built-in rule through ``tool_rule_result``,
then the optional matchers, the fallback allow, the role grants, and ``combine``. Generated
policies (limits, tiers, citations, fields, SQL modes, approvals, argument rules, predicates,
context rules, provenance, roles) and generated actions must give the same decision type,
rule ids, reasons and matches, on the first evaluation and when the decision is remembered.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.guards.context import PriorAction, RunContext, Subject
from tether.guards.context_rules import context_matches
from tether.guards.decisions import EscalationAction, RuleMatch, combine
from tether.guards.matchers import arg_matches, predicate_matches, sql_matches
from tether.guards.policy import ActionRequest, AnyDecision, Policy
from tether.guards.predicates import PredicateRegistry
from tether.guards.provenance import provenance_matches
from tether.guards.rbac import role_matches, run_roles
from tether.guards.tool_rules import tool_rule_result

REGISTRY = PredicateRegistry()


@REGISTRY.register("small_amounts")
def _small_amounts(a: ActionRequest) -> str | None:
    return f"amount {a.amount_usd} is over 20" if a.amount_usd is not None and a.amount_usd > 20 else None


@REGISTRY.register("broken")
def _broken(a: ActionRequest) -> str | None:
    raise RuntimeError("always")


@REGISTRY.register("quiet")
def _quiet(a: ActionRequest) -> str | None:
    return None


def reference_decide(
    policy: Policy, action: ActionRequest, *, role: str | None, principal: str | None, include_shadow: bool
) -> AnyDecision:
    """The evaluation written out plainly, rule family by rule family."""
    rule = policy.tools.get(action.tool)
    if rule is None:
        reason = f"tool '{action.tool}' is not listed in the policy; unlisted tools are denied"
        return combine([RuleMatch(rule_id="default.unlisted_tool", effect="deny", reason=reason)])
    spec = policy._spec
    t = action.tool
    built_in = tool_rule_result(action, rule, spec)
    preds = tuple(
        (ref.name, ref.effect, fn)
        for ref, (_, fn) in zip(rule.predicates, policy._predicates.get(t, ()), strict=True)
    )
    extra = arg_matches(t, rule.args, action, include_shadow=include_shadow)
    extra += predicate_matches(t, preds, action)
    extra += context_matches(t, rule.context, action)
    extra += provenance_matches(t, rule, action, spec)
    if rule.mode == "read_only_sql" and t in policy._sql:
        extra += sql_matches(t, policy._sql[t], action)
    # the fallback "allowed, no limit applies" holds only when no other rule fired
    matches = [*built_in.matches, *extra]
    if not matches and built_in.fallback is not None:
        matches.append(built_in.fallback)
    if spec.roles is not None:
        who = principal if principal is not None else action.principal
        roles = run_roles(spec.principals, roles=action.roles, principal=who, role=role)
        matches += role_matches(t, spec.roles, roles, principal=who)
    return combine(matches, escalation=EscalationAction.HANDOFF_TO_HUMAN)


TOOLS = ("pay", "edit", "query", "look")
AMOUNTS = st.one_of(
    st.none(), st.just(math.nan), st.floats(0, 200, allow_nan=False).map(lambda x: round(x, 2))
)
LIMIT = st.one_of(st.none(), st.sampled_from([5.0, 25.0, 50.0, 120.0]))


@st.composite
def tool_rules(draw: st.DrawFn, name: str, tiers: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"allowed": draw(st.booleans() | st.just(True))}
    for key in ("max_amount_usd", "require_approval_over_usd", "max_total_usd_per_run",
                "require_approval_over_total_usd"):  # fmt: skip
        if (v := draw(LIMIT)) is not None:
            r[key] = v
    for cap, over in (("max_amount_usd", "require_approval_over_usd"),
                      ("max_total_usd_per_run", "require_approval_over_total_usd")):  # fmt: skip
        if cap in r and over in r and r[over] > r[cap]:  # an approval above the cap is refused
            r[cap], r[over] = r[over], r[cap]
    for key in ("require_citation", "row_level_security", "require_approval"):
        if draw(st.integers(0, 4)) == 0:
            r[key] = True
    if draw(st.booleans()):
        r["allowed_fields"] = draw(st.lists(st.sampled_from(["email", "phone", "note"]), unique=True))
    mode = draw(st.sampled_from([None, "parameterized_only", "read_only_sql"]))
    if mode is not None:
        r["mode"] = mode
    if mode == "read_only_sql":
        r["sql"] = {"tables": {"orders": ["id", "customer_id", "total"]}}
    if tiers and draw(st.booleans()):
        r["risk"] = draw(st.sampled_from(["write", "financial"]))
    if draw(st.booleans()):
        r["args"] = {
            "amount_usd": {"min": 1, "max": draw(st.sampled_from([10, 60])), "shadow": draw(st.booleans())},
            "order_id": {"pattern": "O-[0-9]{3}", "effect": draw(st.sampled_from(["deny", "escalate"]))},
            "channel": {"enum": ["mail", "phone"], "required": draw(st.booleans())},
        }
    if draw(st.booleans()):
        r["predicates"] = draw(st.lists(st.sampled_from(["small_amounts", "broken", "quiet"]), unique=True))
    if draw(st.booleans()):
        r["context"] = [
            {"id": "looked", "after": "look", "same": {"order_id": "order_id"}},
            {"id": "once", "max_per_record": 1, "effect": "require_approval"},
        ]
    if draw(st.integers(0, 3)) == 0:
        r["provenance"] = {"account": {"kind": "iban", "from": ["request"]}}
    return r


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    tiers = draw(st.booleans())
    doc: dict[str, Any] = {
        "agent": {"max_wall_clock_seconds": 60, "max_tool_calls": 10, "max_model_spend_usd": 1},
        "tools": {t: draw(tool_rules(t, tiers)) for t in TOOLS},
    }
    doc["tools"]["look"] = {"allowed": True}
    if tiers:
        doc["tiers"] = {"write": {"require_approval": draw(st.booleans())},
                        "financial": {"max_amount_usd": 500, "require_approval_over_usd": 300,
                                      "require_citation": draw(st.booleans())}}  # fmt: skip
        for rule in doc["tools"].values():  # a tool may tighten its tier, never loosen it
            if rule.get("risk") == "financial":
                for key in ("max_amount_usd", "require_approval_over_usd"):
                    rule.pop(key, None) if draw(st.booleans()) else None
    if draw(st.booleans()):
        doc["roles"] = {"agent": {"tools": draw(st.lists(st.sampled_from(TOOLS), unique=True))},
                        "viewer": {"tools": ["look"]}}  # fmt: skip
        doc["principals"] = {
            "bot": {"id": "tether-agent", "roles": ["agent"]},
            "viewer": {"roles": ["viewer"]},
        }
    return Policy.from_text(yaml.safe_dump(doc, sort_keys=False), predicates=REGISTRY)


@st.composite
def actions(draw: st.DrawFn) -> ActionRequest:
    prior = draw(st.lists(st.builds(
        PriorAction, tool=st.sampled_from(TOOLS), status=st.sampled_from(["executed", "denied", "admitted"]),
        args=st.fixed_dictionaries({"order_id": st.sampled_from(["O-123", "O-999"])}),
        records=st.sampled_from([(), ("R-1",)]),
    ), max_size=3))  # fmt: skip
    cite = draw(st.sampled_from([(), ("KB-1@v1#p1",), ("nope",)]))
    return ActionRequest(
        tool=draw(st.sampled_from([*TOOLS, "unlisted"])),
        amount_usd=draw(AMOUNTS),
        run_total_usd=draw(st.sampled_from([0.0, 30.0, 100.0])),
        fields=draw(st.sampled_from([None, (), ("email",), ("email", "secret")])),
        free_sql=draw(st.booleans()),
        sql=draw(st.sampled_from([None, "SELECT id FROM orders", "DELETE FROM orders"])),
        target_subject_ids=draw(st.sampled_from([(), ("C-1",), ("C-2", "C-1")])),
        subject_id=draw(st.sampled_from([None, "C-1"])),
        records=draw(st.sampled_from([(), ("R-1",)])),
        citations=cite,
        retrieved_evidence=frozenset(draw(st.sampled_from([(), ("KB-1@v1#p1",)]))),
        principal=draw(st.sampled_from([None, "tether-agent", "bot", "viewer", "stranger"])),
        roles=draw(st.sampled_from([(), ("viewer",), ("ghost",), ("agent", "viewer")])),
        args=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "amount_usd": st.sampled_from([0.5, 5, 80, "x"]),
                    "order_id": st.sampled_from(["O-123", "O-12"]),
                    "channel": st.sampled_from(["mail", "fax"]),
                    "account": st.sampled_from(["DE89370400440532013000"]),
                },
            )
        ),
        context=RunContext(
            request=draw(st.sampled_from(["", "refund to DE89 3704 0044 0532 0130 00"])),
            subject=Subject(id="C-1"),
            actions=tuple(prior),
        ),
    )


def _same(got: AnyDecision, want: AnyDecision) -> None:
    assert type(got) is type(want)
    assert (got.rule_id, got.reason) == (want.rule_id, want.reason)
    assert [(m.rule_id, m.effect, m.reason) for m in got.matched] == [
        (m.rule_id, m.effect, m.reason) for m in want.matched
    ]
    assert got == want
    assert got.model_dump_json() == want.model_dump_json()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    batch=st.lists(actions(), min_size=1, max_size=4),
    role=st.sampled_from([None, "agent", "viewer", "ghost"]),
    principal=st.sampled_from([None, "bot", "stranger"]),
)
def test_compiled_plans_decide_as_the_reference(
    policy: Policy, batch: list[ActionRequest], role: str | None, principal: str | None
) -> None:
    for _ in range(2):  # the second round is answered from the remembered decisions
        for a in batch:
            for shadow in (False, True):
                want = reference_decide(policy, a, role=role, principal=principal, include_shadow=shadow)
                got = policy._decide(a, role=role, principal=principal, include_shadow=shadow)
                _same(got, want)
        for a in batch:
            _same(
                policy.evaluate(a),
                reference_decide(policy, a, role=None, principal=None, include_shadow=False),
            )


def test_unlisted_tools_stay_denied_by_name() -> None:
    policy = Policy.from_text(
        "agent: {max_wall_clock_seconds: 60, max_tool_calls: 10, max_model_spend_usd: 1}\n"
        "tools:\n  look: {allowed: true}\n"
    )
    for name in ("drop_db", "drop_db", "wipe"):
        d = policy.evaluate(ActionRequest(tool=name))
        assert d.kind == "deny" and d.rule_id == "default.unlisted_tool"
        assert f"'{name}'" in d.reason


def test_remembered_decisions_stay_bounded() -> None:
    from tether.guards import policy_plan

    policy = Policy.from_text(
        "agent: {max_wall_clock_seconds: 60, max_tool_calls: 10, max_model_spend_usd: 1}\n"
        "tools:\n  pay: {allowed: true, max_amount_usd: 50000}\n"
    )
    plan = policy._plan.tools["pay"]
    for cents in range(policy_plan.TABLE_SIZE + 50):
        d = policy.evaluate(ActionRequest(tool="pay", amount_usd=cents / 100))
        assert d.kind == "allow" and f"${cents / 100:,.2f}" in d.reason
    assert 0 < len(plan._decisions) <= policy_plan.TABLE_SIZE


def test_latency_bench_runs_at_tiny_scale() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "policy_latency.py"
    spec = importlib.util.spec_from_file_location("policy_latency_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.generated_policy(context=False)
    policy = Policy.from_text(text)
    rules = sum(1 + 1 + len(r.args) + len(r.context) for t, r in policy.tools.items() if t != "lookup")
    assert rules == 1000
    out = bench.run("tiny")
    assert set(out) == {
        "support policy",
        "support + context rules",
        "1000 rules",
        "1000 rules + context rules",
    }
    for r in out.values():
        assert r["decisions"] == 200 and 0 < r["median_us"] <= r["p99_us"]
