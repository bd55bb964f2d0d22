"""The run's identity, roles, rate limits and redaction, through the real support desk."""

from __future__ import annotations

import json
import sqlite3

from tether.agents.support.desk import POLICY_PATH, SupportDesk, world_path
from tether.config import Home
from tether.guards.policy import Policy
from tether.models import ModelConfig

REFUND_18 = "I need a refund of $18 for the damaged kettle in order O-20417"
BASE = POLICY_PATH.read_text()
RBAC = (
    BASE
    + """
principals:
  support_bot: {id: tether-agent, roles: [support_agent]}
  reporting_bot: {id: reporting-bot, roles: [analyst]}
roles:
  support_agent:
    tools: [lookup_customer, lookup_order, search_policy, issue_refund, update_crm_record, run_sql_query, handoff_to_human]
  analyst:
    tools: [run_sql_query, lookup_order]
"""
)


def refund_rows(home: Home) -> int:
    with sqlite3.connect(world_path(home)) as db:
        return int(db.execute("SELECT COUNT(*) FROM refunds WHERE idempotency_key IS NOT NULL").fetchone()[0])


def test_roles_come_from_the_run_configuration(home: Home) -> None:
    policy = Policy.from_text(RBAC, source="rbac.yaml")
    with SupportDesk(home=home, policy=policy, models=ModelConfig(), principal="reporting-bot") as desk:
        desk.run(REFUND_18, customer_id="C-1042", thread_id="analyst")
        denied = {e.tool: e.matched_rules for e in desk.ledger.events("analyst") if e.decision == "deny"}
        principals = {e.principal for e in desk.ledger.events("analyst")}
    assert refund_rows(home) == 0
    assert any(r.startswith(("roles.", "default.role_not_granted")) for r in denied["issue_refund"])
    assert principals == {"reporting-bot"}
    with SupportDesk(home=home, policy=policy, models=ModelConfig()) as desk:  # default identity
        r = desk.run(REFUND_18, customer_id="C-1042", thread_id="agent")
    assert r.status == "resolved" and refund_rows(home) == 1


def test_a_rate_limit_holds_across_desks(home: Home) -> None:
    limited = BASE.replace(
        "    require_citation: true\n",
        "    require_citation: true\n    rate_limit: {max_calls: 1, per_seconds: 3600}\n",
        1,
    )
    policy = Policy.from_text(limited, source="limited.yaml")
    with SupportDesk(home=home, policy=policy, models=ModelConfig()) as desk:
        assert desk.run(REFUND_18, customer_id="C-1042", thread_id="r1").status == "resolved"
    with SupportDesk(home=home, policy=policy, models=ModelConfig()) as desk:  # a restart
        desk.run(REFUND_18, customer_id="C-1042", thread_id="r2")
        refused = [e for e in desk.ledger.events("r2") if e.tool == "issue_refund" and e.event == "failed"]
    assert refund_rows(home) == 1
    assert refused and refused[0].rule_id == "tools.issue_refund.rate_limit"


def test_sensitive_fields_never_reach_the_ledger(home: Home) -> None:
    text = BASE.replace(
        '    allowed_fields: ["email", "phone", "shipping_address"]\n',
        '    allowed_fields: ["email", "phone", "shipping_address"]\n    sensitive_fields: [phone]\n',
    )
    policy = Policy.from_text(text, source="sensitive.yaml")
    with SupportDesk(home=home, policy=policy, models=ModelConfig()) as desk:
        r = desk.run("Please update my phone to +1-555-0199", customer_id="C-1042", thread_id="pii")
        rows = desk.ledger.events("pii")
    assert r.status == "resolved"
    dumped = json.dumps([e.model_dump(mode="json") for e in rows if e.tool == "update_crm_record"])
    assert "555-0199" not in dumped and "***" in dumped
    with sqlite3.connect(world_path(home)) as db:  # the business write itself is not redacted
        assert (
            db.execute("SELECT phone FROM crm_contacts WHERE customer_id='C-1042'").fetchone()[0]
            == "+1-555-0199"
        )
