"""Rate limits and circuit breakers (SQLite, survive restart), read_only_sql, shadow mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import PolicyFileError
from tether.guards.decisions import Allow, Deny
from tether.guards.policy import ActionRequest, Policy
from tether.guards.ratelimit import RuntimeLimits
from tether.guards.shadow import ShadowResult, shadow_evaluate

ROOT = Path(__file__).resolve().parents[2]
SUPPORT_TEXT = (ROOT / "agents" / "support" / "agent-policy.yaml").read_text()
CITE = "KB-REFUND@v3#p1"

LIMITED = SUPPORT_TEXT.replace(
    "    require_citation: true\n",
    "    require_citation: true\n    rate_limit: {max_calls: 2, per_seconds: 60}\n"
    "    circuit_breaker: {failures: 3, cooldown_seconds: 30}\n",
).replace(
    "  lookup_order:\n    allowed: true\n",
    "  lookup_order:\n    allowed: true\n    rate_limit: {max_calls: 1, per_seconds: 10, per: customer}\n",
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def refund(principal: str = "tether-agent") -> ActionRequest:
    return ActionRequest(tool="issue_refund", amount_usd=5, principal=principal)


def test_rate_limit_reserves_denies_and_survives_a_restart(tmp_path: Path) -> None:
    policy, clock, db = Policy.from_text(LIMITED), Clock(), tmp_path / "limits.sqlite"
    with RuntimeLimits.open(policy, db, clock=clock) as limits:
        first = limits.before_act(refund())
        assert isinstance(first, Allow) and first.rule_id == "tools.issue_refund.rate_limit"
        assert isinstance(limits.before_act(refund()), Allow)
    with RuntimeLimits.open(policy, db, clock=clock) as limits:  # reopened: counts persisted
        d = limits.before_act(refund())
        assert isinstance(d, Deny) and d.rule_id == "tools.issue_refund.rate_limit"
        assert "limit 2" in d.reason and "retry in 60s" in d.reason
        assert isinstance(limits.before_act(refund("other-agent")), Allow)  # per principal
        clock.t += 61
        assert isinstance(limits.before_act(refund()), Allow)  # window slid


def test_rate_limit_per_customer_and_tools_without_limits(tmp_path: Path) -> None:
    with RuntimeLimits.open(Policy.from_text(LIMITED), tmp_path / "l.sqlite", clock=Clock()) as limits:
        def look(c: str) -> ActionRequest:
            return ActionRequest(tool="lookup_order", subject_id=c)

        assert isinstance(limits.before_act(look("C-1")), Allow)
        assert isinstance(limits.before_act(look("C-1")), Deny)
        assert isinstance(limits.before_act(look("C-2")), Allow)
        free = limits.before_act(ActionRequest(tool="search_policy"))
        assert isinstance(free, Allow) and free.rule_id == "tools.search_policy.runtime"


def test_circuit_breaker_opens_after_k_failures_and_half_opens(tmp_path: Path) -> None:
    policy, clock, db = Policy.from_text(LIMITED.replace("max_calls: 2,", "max_calls: 100,")), Clock(), tmp_path / "c.sqlite"
    with RuntimeLimits.open(policy, db, clock=clock) as limits:
        limits.after_act("issue_refund", ok=False)
        limits.after_act("issue_refund", ok=False)
        limits.after_act("issue_refund", ok=True)  # success resets the streak
        for _ in range(3):
            limits.after_act("issue_refund", ok=False)
    with RuntimeLimits.open(policy, db, clock=clock) as limits:
        d = limits.before_act(refund())
        assert isinstance(d, Deny) and d.rule_id == "tools.issue_refund.circuit_breaker"
        clock.t += 31
        assert isinstance(limits.before_act(refund()), Allow)  # half-open trial
        limits.after_act("issue_refund", ok=False)  # trial fails: open again at once
        assert isinstance(limits.before_act(refund()), Deny)
        clock.t += 31
        limits.after_act("issue_refund", ok=True)
        assert isinstance(limits.before_act(refund()), Allow)


def test_limit_sections_are_validated() -> None:
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(LIMITED.replace("max_calls: 2", "max_calls: 0"))
    assert info.value.key == "tools.issue_refund.rate_limit.max_calls"
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(LIMITED.replace("failures: 3", "failure: 3"))
    assert any("Did you mean 'failures'?" in p.reason for p in info.value.problems)


# ---------------------------------------------------------------- read_only_sql

SQL = SUPPORT_TEXT.replace(
    '    mode: "parameterized_only"\n',
    """    mode: "read_only_sql"
    sql:
      tables: {orders: [id, customer_id, status, total_usd]}
      row_filters: {orders: customer_id}
""",
)


def sql(text: str, customer: str | None = "C-1042") -> ActionRequest:
    return ActionRequest(tool="run_sql_query", free_sql=True, sql=text, subject_id=customer)


def test_read_only_sql_allows_a_checked_select() -> None:
    d = Policy.from_text(SQL).evaluate(sql("SELECT id, status FROM orders WHERE total_usd > 10"))
    assert d.kind == "allow" and d.rule_id == "tools.run_sql_query.sql"
    assert "orders" in d.reason


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("DELETE FROM orders", "sql.select_only"),
        ("SELECT * FROM orders", "sql.no_star"),
        ("SELECT name FROM sqlite_master", "sql.system_table"),
        ("SELECT id FROM customers", "sql.table_allowlist"),
        ("SELECT id FROM orders; DROP TABLE orders", "sql.single_statement"),
    ],
)
def test_read_only_sql_denies_unsafe_sql_with_the_sql_rule(text: str, rule: str) -> None:
    d = Policy.from_text(SQL).evaluate(sql(text))
    assert d.kind == "deny" and d.rule_id == f"tools.run_sql_query.{rule}"


def test_read_only_sql_needs_text_and_a_principal_and_a_scope() -> None:
    p = Policy.from_text(SQL)
    assert p.evaluate(sql("SELECT id FROM orders", customer=None)).kind == "deny"
    d = p.evaluate(ActionRequest(tool="run_sql_query", free_sql=True, subject_id="C-1"))
    assert d.rule_id == "tools.run_sql_query.mode"
    assert p.evaluate(ActionRequest(tool="run_sql_query", subject_id="C-1")).kind == "allow"
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(SUPPORT_TEXT.replace('"parameterized_only"', '"read_only_sql"'))
    assert info.value.key == "tools.run_sql_query.mode"


def test_parameterized_only_still_refuses_free_sql() -> None:
    d = Policy.from_text(SUPPORT_TEXT).evaluate(sql("SELECT id FROM orders"))
    assert d.rule_id == "tools.run_sql_query.mode"


# ---------------------------------------------------------------- shadow


def test_shadow_arg_rule_is_reported_not_enforced() -> None:
    text = SUPPORT_TEXT.replace(
        "    require_citation: true\n",
        "    require_citation: true\n    args:\n      amount_usd: {max: 20, shadow: true}\n",
    )
    p = Policy.from_text(text)
    a = ActionRequest(tool="issue_refund", amount_usd=22, citations=(CITE,), retrieved_evidence=frozenset({CITE}),
                      args={"amount_usd": 22})
    enforced, candidate = p.evaluate_with_shadow(a)
    assert enforced.kind == "allow" and p.evaluate(a) == enforced
    assert candidate is not None and candidate.kind == "deny"
    assert candidate.rule_id == "tools.issue_refund.args.amount_usd"
    r = shadow_evaluate(p, a)
    assert isinstance(r, ShadowResult) and r.flipped and r.candidate_version == p.version + "+shadow"
    assert "tools.issue_refund.args.amount_usd" in r.changed_rules
    ShadowResult.model_validate_json(r.model_dump_json())  # storable in the ledger


def test_candidate_policy_in_shadow() -> None:
    current = Policy.from_text(SUPPORT_TEXT)
    stricter = Policy.from_text(SUPPORT_TEXT.replace("max_amount_usd: 50", "max_amount_usd: 30"))
    p = current.with_candidate(stricter)
    assert p.version == current.version and p.candidate is stricter
    a = ActionRequest(tool="issue_refund", amount_usd=40, citations=(CITE,), retrieved_evidence=frozenset({CITE}))
    enforced, candidate = p.evaluate_with_shadow(a)
    assert enforced.kind == "require_approval"
    assert candidate is not None and candidate.kind == "deny"
    assert current.evaluate_with_shadow(a) == (enforced, None)
    assert shadow_evaluate(current, a) is None
    r = shadow_evaluate(p, a)
    assert r is not None and r.candidate_version == stricter.version
