"""The IT access desk example (``tether.agents.itdesk``): one scenario test per policy rule.

Every scenario is played through ``Session.open(WORKFLOW, ...)`` and ``evals.scenarios.play``
on a fresh data directory; the tests assert on the ledger rows (the rule that refused, what
executed) and on the directory database (what changed, exactly once). The example may only use
tether's public names: a test walks its sources.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

import tether
from tether import (
    ActionRequest,
    Home,
    Ledger,
    Policy,
    RunContext,
    ScriptedChatModel,
    Session,
    Subject,
    ToolContext,
    executed,
    open_checkpointer,
)
from tether.agents.itdesk.demo import RULES, SCENARIOS
from tether.agents.itdesk.desk import POLICY_PATH, WORKFLOW, itdesk_workflow, world_path
from tether.agents.itdesk.tools import ItDeskResources, build_itdesk_tools
from tether.agents.itdesk.world import connect_world, ensure_world
from tether.evals.scenarios import Played, play

PACKAGE = Path(__file__).resolve().parents[1] / "agents" / "itdesk"
TETHER = Path(sys.executable).parent / "tether"
BY_KEY = {s.key: s for s in SCENARIOS}
Snapshot = dict[str, set[tuple[Any, ...]]]
_TABLES = {
    "memberships": "SELECT person_id, group_name FROM memberships",
    "requests": "SELECT id, status FROM access_requests",
    "devices": "SELECT id, status FROM mfa_devices",
    "changes": "SELECT tool, person_id, target, idempotency_key FROM changes",
    "tickets": "SELECT person_id FROM tickets",
    "outbox": "SELECT kind, to_addr FROM outbox",
    "recovery": "SELECT id, recovery_email FROM people",
}


def snapshot(home: Home) -> Snapshot:
    ensure_world(world_path(home))
    with sqlite3.connect(world_path(home)) as db:
        return {name: set(db.execute(sql).fetchall()) for name, sql in _TABLES.items()}


def changed(before: Snapshot, after: Snapshot) -> dict[str, tuple[set[Any], set[Any]]]:
    """Per table: (rows added, rows removed); tables that did not change are left out."""
    out = {t: (after[t] - before[t], before[t] - after[t]) for t in before}
    return {t: d for t, d in out.items() if d != (set(), set())}


def run_scenario(tmp_path: Path, key: str) -> tuple[Played, dict[str, tuple[set[Any], set[Any]]], Home]:
    s = BY_KEY[key]
    home = Home(root=tmp_path)
    before = snapshot(home)
    with Session.open(WORKFLOW, home=home, principal=s.principal, roles=s.roles) as session:
        played = play(session, s, thread_id=f"t-{key}")
    assert played.problem is None, played.problem
    return played, changed(before, snapshot(home)), home


def rules(p: Played, tool: str) -> list[str]:
    return [r.rule_id or "" for r in p.rows if r.tool == tool and r.event in ("proposed", "failed")]


def only_tickets(diff: dict[str, tuple[set[Any], set[Any]]]) -> None:
    """Nothing changed in the directory but (at most) a hand-off ticket."""
    assert set(diff) <= {"tickets"}, diff


# ---------------------------------------------------------------- the scenarios, rule by rule


def policy_rule_ids(policy: Policy) -> set[str]:
    """The ids of the rules the desk's policy adds beyond ``allowed``."""
    ids = {f"roles.{r}.tools" for r in policy.spec.roles or {}}
    for t, rule in policy.tools.items():
        ids |= {f"tools.{t}.args.{a}" for a in rule.args} | {f"tools.{t}.context.{c.id}" for c in rule.context}
        ids |= {f"tools.{t}.rate_limit"} if rule.rate_limit is not None else set()
    return ids


def test_every_scenario_has_a_test_and_every_rule_a_scenario() -> None:
    tested = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert {s.key for s in SCENARIOS} <= tested
    assert set(RULES) <= set(BY_KEY)
    ids = policy_rule_ids(Policy.from_yaml(POLICY_PATH))
    assert set(RULES.values()) <= ids
    # every context rule, the group allowlist, the reset limit and the roles have a scenario;
    # the provenance rules (args ... from:) are checked directly below
    played = {i for i in ids if ".context." in i or i.endswith((".args.group", ".rate_limit", "helpdesk.tools"))}
    assert played - {"tools.verify_identity.rate_limit"} <= set(RULES.values())


@pytest.mark.parametrize(("tool", "args", "rule"), [
    ("verify_identity", {"person_id": "P-1002", "one_time_code": "731904"}, "tools.verify_identity.args.person_id"),
    ("verify_identity", {"person_id": "P-1001", "one_time_code": "111111"},
     "tools.verify_identity.args.one_time_code"),
    ("grant_group", {"person_id": "P-1002", "group": "vpn", "request_id": "AR-2001"},
     "tools.grant_group.args.person_id"),
    ("revoke_group", {"person_id": "P-1002", "group": "vpn", "reason": "left"}, "tools.revoke_group.args.person_id"),
])
def test_provenance_rules(tool: str, args: dict[str, Any], rule: str) -> None:
    """The requester acts for themselves, with what they typed: the model cannot pick another."""
    policy = Policy.from_yaml(POLICY_PATH)
    context = RunContext(request="my code is 731904", principal="security", subject=Subject(id="P-1001"))
    decision = policy.evaluate(ActionRequest(tool=tool, args=args, principal="security", context=context))
    assert decision.kind == "deny" and rule in {m.rule_id for m in decision.matched}


def test_grant_vpn(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "grant_vpn")
    assert p.result.status == "resolved"
    assert diff["memberships"] == ({("P-1001", "vpn")}, set())
    assert diff["requests"] == ({("AR-2001", "fulfilled")}, {("AR-2001", "manager_approved")})
    (added, _), grants = diff["changes"], executed(p.rows, "grant_group")
    assert len(added) == 1 and len(grants) == 1
    assert next(iter(added))[3] == grants[0].idempotency_key  # the tool honoured the ledger's key
    assert set(diff) == {"memberships", "requests", "changes"}


def test_grant_unverified(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "grant_unverified")
    assert rules(p, "grant_group") == ["tools.grant_group.context.identity_verified"]
    assert not executed(p.rows, "grant_group") and not executed(p.rows, "verify_identity")
    assert diff == {}


def test_grant_open_request(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "grant_open_request")
    assert rules(p, "grant_group") == ["tools.grant_group.context.request_approved"]
    assert executed(p.rows, "verify_identity") and executed(p.rows, "get_access_request")
    assert not executed(p.rows, "grant_group")
    only_tickets(diff)


def test_grant_admins(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "grant_admins")
    assert rules(p, "grant_group") == ["tools.grant_group.args.group"]
    assert not executed(p.rows, "grant_group")
    only_tickets(diff)


def test_grant_prod_db(tmp_path: Path) -> None:
    """Approved with ``tether approve`` in a new process: asked once, executed once."""
    p, diff, home = run_scenario(tmp_path, "grant_prod_db")
    asked = [r for r in p.rows if r.event == "approval_requested"]
    assert len(asked) == 1 and asked[0].rule_id == "tools.grant_group.context.privileged_group"
    assert [r.approver for r in p.rows if r.event == "approved"] == ["sec-lead@example.com"]
    assert len(executed(p.rows, "grant_group")) == 1
    assert any("deciding in a new process" in line for line in p.log)
    assert diff["memberships"] == ({("P-1004", "prod-db")}, set())
    assert len(diff["changes"][0]) == 1
    settled = snapshot(home)
    with Session.open(WORKFLOW, home=home) as session:  # resuming again changes nothing
        assert session.resume("t-grant_prod_db").status == "resolved"
        assert session.ledger.approval(asked[0].approval_id or "").status == "approved"
        rows = session.events("t-grant_prod_db")
    assert len([r for r in rows if r.event == "approval_requested"]) == 1
    assert len(executed(rows, "grant_group")) == 1
    assert snapshot(home) == settled


def test_grant_payroll_rejected(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "grant_payroll_rejected")
    assert rules(p, "grant_group") == ["tools.grant_group.context.privileged_group"]
    assert [r.approver for r in p.rows if r.event == "rejected"] == ["sec-lead@example.com"]
    assert not executed(p.rows, "grant_group")
    assert diff == {}


def test_mfa_reset(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "mfa_reset")
    assert diff["devices"] == ({("D-3002", "reset")}, {("D-3002", "active")})
    assert len(diff["changes"][0]) == 1 and len(executed(p.rows, "reset_mfa")) == 1
    # one enrolment link, to the directory email (no deliver_to was given)
    assert diff["outbox"] == ({("enrolment_link", "gus.ortega@corp.example")}, set())


def test_mfa_twice(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "mfa_twice")
    assert rules(p, "reset_mfa") == ["tools.reset_mfa.allowed", "tools.reset_mfa.context.once_per_person"]
    assert diff["devices"] == ({("D-3003", "reset")}, {("D-3003", "active")})  # the tablet is untouched
    assert len(diff["changes"][0]) == 1


def test_mfa_rate_limit(tmp_path: Path) -> None:
    """Three runs on one thread: two resets, the third refused at execution by the rate limit."""
    p, diff, _ = run_scenario(tmp_path, "mfa_rate_limit")
    assert len({r.run_id for r in p.rows}) == 3
    failed = [r for r in p.rows if r.event == "failed" and r.tool == "reset_mfa"]
    assert [r.rule_id for r in failed] == ["tools.reset_mfa.rate_limit"]
    assert len(executed(p.rows, "reset_mfa")) == 2 and len(diff["changes"][0]) == 2


def test_mfa_unverified(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "mfa_unverified")
    assert rules(p, "reset_mfa") == ["tools.reset_mfa.context.identity_verified"]
    assert p.result.status == "resolved" and diff == {}


def test_mfa_wrong_code(tmp_path: Path) -> None:
    """A failed verification is a failure: nothing may build on it."""
    p, diff, _ = run_scenario(tmp_path, "mfa_wrong_code")
    assert [r.event for r in p.rows if r.tool == "verify_identity"] == ["proposed", "executing", "failed"]
    assert not any(r.tool == "reset_mfa" for r in p.rows)
    only_tickets(diff)
    # what the requester typed is masked in the ledger
    assert all("000000" not in json.dumps(r.args) for r in p.rows if r.tool == "verify_identity")


def test_revoke_as_helpdesk(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "revoke_as_helpdesk")
    assert rules(p, "revoke_group") == ["roles.helpdesk.tools"]
    assert not executed(p.rows, "revoke_group")
    only_tickets(diff)


def test_revoke_as_security(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "revoke_as_security")
    assert {r.principal for r in p.rows} == {"security"}
    assert diff["memberships"] == (set(), {("P-1005", "payroll")})
    assert len(diff["changes"][0]) == 1


def test_recovery_unverified(tmp_path: Path) -> None:
    p, diff, home = run_scenario(tmp_path, "recovery_unverified")
    assert rules(p, "update_recovery_email") == ["tools.update_recovery_email.context.identity_verified"]
    assert "verify your identity" in str(p.result.outcome) and diff == {}
    with sqlite3.connect(world_path(home)) as db:
        assert db.execute("SELECT recovery_email FROM people WHERE id='P-1002'").fetchone() == ("bea.home@mail.example",)


def test_lookup(tmp_path: Path) -> None:
    p, diff, _ = run_scenario(tmp_path, "lookup")
    assert p.result.outcome is not None and "Jo Park" in getattr(p.result.outcome, "answer", "")
    assert diff == {}


# ---------------------------------------------------------------- the desk's other guarantees


def test_a_run_needs_a_subject(tmp_path: Path) -> None:
    from tether import WorkflowError

    with Session.open(WORKFLOW, home=Home(root=tmp_path), principal="helpdesk") as session:
        with pytest.raises(WorkflowError, match="needs a subject"):
            session.run("Please reset my MFA", thread_id="t")
        # a graph driven directly (as in Studio) stops at once, before any model call
        out = session.app.invoke({"messages": [("user", "Please reset my MFA")]}, session.config("t2"))
    assert out["outcome"].kind == "escalated" and out["outcome"].rule_id == "input.required"


def test_parallel_resets_cannot_pass_the_per_person_limit(tmp_path: Path) -> None:
    """Two resets in one model message: ``max_per_record`` counts the first, admitted in the
    same message, so the policy refuses the second before anything runs."""
    def call(name: str, args: dict[str, Any], n: int) -> dict[str, Any]:
        return {"name": name, "args": args, "id": f"c{n}", "type": "tool_call"}

    reset = {"person_id": "P-1009", "reason": "lost"}
    script = [
        AIMessage(content="", tool_calls=[call("verify_identity", {"person_id": "P-1009", "employee_number": "480191",
                                                                   "phone_last4": "0119"}, 1)]),
        AIMessage(content="", tool_calls=[call("reset_mfa", {**reset, "device_id": "D-3003"}, 2),
                                          call("reset_mfa", {**reset, "device_id": "D-3004"}, 3)]),
        AIMessage(content="done"),
    ]
    home = Home(root=tmp_path).ensure()
    before = snapshot(home)
    with Ledger.open(home.ledger_url) as ledger, open_checkpointer(home.checkpoint_url) as saver:
        wf = dataclasses.replace(itdesk_workflow(home=home, ledger=ledger), model=ScriptedChatModel(script=script))
        try:
            s = Session(workflow=wf, checkpointer=saver, principal="helpdesk")
            s.run("Reset MFA on my phone and tablet. Employee number 480191, last 4 of my phone 0119.",
                  thread_id="t", subject="P-1009")
            rows = s.events("t")
        finally:
            wf.close()
    assert len(executed(rows, "reset_mfa")) == 1
    decided = [(r.tool_call_id, r.decision, r.rule_id) for r in rows if r.event == "proposed" and r.tool == "reset_mfa"]
    assert decided[1] == ("c3", "deny", "tools.reset_mfa.context.once_per_person")
    assert len(changed(before, snapshot(home))["changes"][0]) == 1


def test_write_tools_are_idempotent_and_previews_are_dry_runs(tmp_path: Path) -> None:
    tools = build_itdesk_tools()
    grant = tools.get("grant_group")
    assert grant is not None and grant.preview is not None
    home = Home(root=tmp_path)
    db = connect_world(world_path(home))
    try:
        ctx = ToolContext(subject=Subject(id="P-1001"), thread_id="t", run_id="r", tool_call_id="c",
                          idempotency_key="t:k1", resources=ItDeskResources(db=db))
        args = grant.args_model.model_validate({"person_id": "P-1001", "group": "vpn", "request_id": "AR-2001"})
        before = snapshot(home)
        assert "privileged" not in grant.preview(args, ctx) and snapshot(home) == before
        first, again = grant.run(args, ctx), grant.run(args, ctx)
        assert (first.replayed, again.replayed) == (False, True) and first.change_id == again.change_id
        assert len(changed(before, snapshot(home))["memberships"][0]) == 1
    finally:
        db.close()


def test_the_directory_is_deterministic(tmp_path: Path) -> None:
    a, b = Home(root=tmp_path / "a"), Home(root=tmp_path / "b")
    assert snapshot(a) == snapshot(b)
    with sqlite3.connect(world_path(a)) as db:
        people = db.execute("SELECT COUNT(*) FROM people").fetchone()[0]
        groups = dict(db.execute("SELECT name, privileged FROM groups").fetchall())
    assert 12 <= people <= 30
    assert groups == {"admins": 1, "prod-db": 1, "payroll": 1, "vpn": 0, "wiki": 0}


def test_the_policy_loads_and_names_the_tools_it_checks() -> None:
    policy = Policy.from_yaml(POLICY_PATH)
    assert set(policy.tools) == set(build_itdesk_tools().names())
    assert policy.tools["reset_mfa"].rate_limit is not None


# ---------------------------------------------------------------- the command line


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_HOME": str(tmp_path)}
    return subprocess.run([str(TETHER), *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def test_workflows_json_lists_itdesk(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "workflows", "--json")
    assert proc.returncode == 0, proc.stderr
    found = {w["name"]: w for w in json.loads(proc.stdout)}
    assert "itdesk" in found
    assert set(found["itdesk"]["routes"]) == {"access", "mfa", "account", "ticket", "policy", "lookup", "other"}
    assert "grant_group" in found["itdesk"]["tools"]


def test_demo_itdesk_json(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "demo", "itdesk", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["failures"] == []
    assert [s["scenario"] for s in report["scenarios"]] == [s.key for s in SCENARIOS]
    assert all(s["ok"] and s["workflow"] == "itdesk" for s in report["scenarios"])


def test_langgraph_json_serves_the_itdesk_graph() -> None:
    spec = json.loads((PACKAGE.parents[1] / "langgraph.json").read_text(encoding="utf-8"))
    path, _, name = spec["graphs"]["itdesk"].partition(":")
    assert (PACKAGE.parents[1] / path).resolve() == PACKAGE / "studio.py" and name == "make_graph"
    from tether.agents.itdesk.studio import make_graph

    assert callable(make_graph)


def test_policy_check_accepts_the_file(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "policy", "check", str(POLICY_PATH))
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- public names only


def _bad_imports(path: Path) -> list[str]:
    exported = set(tether._EXPORTS)
    bad: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            bad += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] == "tether"]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                bad.append(f"{where} relative import (write tether.agents.itdesk.{module})")
            elif module == "tether":
                bad += [f"{where} tether.{a.name} is not exported" for a in node.names if a.name not in exported]
            elif module.split(".")[0] == "tether" and not (
                module == "tether.agents.itdesk" or module.startswith("tether.agents.itdesk.")
            ):
                bad.append(f"{where} from {module} (use `from tether import ...`)")
    return bad


def test_itdesk_uses_only_public_names() -> None:
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) >= 6
    assert [b for p in sources for b in _bad_imports(p)] == []


@pytest.mark.parametrize("line", ["from tether.guards.policy import Policy", "import tether.models",
                                  "from tether import Nope", "from .tools import x"])
def test_the_import_check_catches(tmp_path: Path, line: str) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(line + "\n", encoding="utf-8")
    assert _bad_imports(bad)
