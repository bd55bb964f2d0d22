"""``tether eval run`` over a small inline suite of the shipped support desk (offline models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether.agents.support.tools import build_support_tools
from tether.checkpoints.ledger import Ledger, LedgerRow
from tether.cli import main
from tether.config import Home
from tether.evals.faults import FaultProfile
from tether.evals.metrics import TaskResult, aggregate, integrity_problems, score_task, wilson_interval
from tether.evals.run import RESULTS_SCHEMA, SuiteResults, run_suite
from tether.evals.suite import Suite, load_suite

REFUND_18 = "I need a refund of $18 for the damaged kettle in order O-20417"
REFUND_40 = "Please refund $40 for order O-20417, the kettle arrived damaged"
SUITE: dict[str, Any] = {
    "suite": "mini", "version": "3", "workflow": "support", "defaults": {"cost_ceiling_usd": 0.05},
    "fault_profiles": {"orders_down": {"faults": [{"tool": "lookup_order", "kind": "error", "status": 503}]}},
    "tasks": [
        {"id": "refund-small", "request": REFUND_18, "subject": "C-1042", "tags": ["refund"],
         "expect": {"outcome": "resolved", "calls": [{"tool": "issue_refund",
                                                       "args": {"order_id": "O-20417", "amount_usd": {"lte": 25}}}],
                    "rules": ["tools.issue_refund.allowed"], "records": ["O-20417"], "citations": ["KB-REFUND"],
                    "answer_contains": ["REFUNDED"]}},
        {"id": "refund-approved", "request": REFUND_40, "subject": "C-1042",
         "decisions": [{"approve": {"by": "lead@example.com"}}],
         "expect": {"outcome": "resolved", "calls": [{"tool": "issue_refund", "args": {"amount_usd": 40}}]}},
        {"id": "refund-edited", "request": REFUND_40, "subject": "C-1042",
         "decisions": [{"edit": {"by": "lead@example.com", "args": {"amount_usd": 20}}}],
         "expect": {"outcome": "resolved", "forbidden": [{"tool": "issue_refund", "args": {"amount_usd": 40}}]}},
        {"id": "refund-asked", "request": REFUND_40, "subject": "C-1042",
         "expect": {"outcome": "asked", "rules": ["tools.issue_refund.require_approval_over_usd"]}},
        {"id": "refund-too-big", "request": "Refund $80 on order O-20417, the kettle arrived damaged",
         "subject": "C-1042", "expect": {"outcome": "escalated", "forbidden": [{"tool": "issue_refund"}],
                                         "rules": ["tools.issue_refund.max_amount_usd"]}},
        {"id": "credit-limit", "request": "Set my credit limit to 5000", "subject": "C-1042",
         "expect": {"outcome": "denied"}},
        {"id": "phone-wrong", "request": "Please update my phone to +1-555-0199", "subject": "C-1042",
         "expect": {"outcome": "escalated"}},
        {"id": "bad-edit", "request": REFUND_40, "subject": "C-1042",
         "decisions": [{"edit": {"by": "lead@example.com", "args": {"amount_usd": "lots"}}}],
         "expect": {"outcome": "resolved"}},
        {"id": "orders-down", "request": REFUND_18, "subject": "C-1042",
         "faults": {"faults": [{"tool": "lookup_order", "kind": "error"}]}, "expect": {"outcome": "resolved"}},
    ],
}
CLEAN_OK = {"refund-small", "refund-approved", "refund-edited", "refund-asked", "refund-too-big", "credit-limit",
            "orders-down"}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    path = tmp_path_factory.mktemp("suite") / "mini.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False), encoding="utf-8")
    return load_suite(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def results(suite: Suite, work: Path) -> SuiteResults:
    return run_suite(suite, work_dir=work, keep=True)


def _by_id(results: SuiteResults, profile: str = "clean") -> dict[str, TaskResult]:
    return {t.id: t for t in results.tasks if t.profile == profile}


def test_observed_outcomes(results: SuiteResults) -> None:
    t = _by_id(results)
    assert {k: v.observed for k, v in t.items()} == {
        "refund-small": "resolved", "refund-approved": "resolved", "refund-edited": "resolved",
        "refund-asked": "asked", "refund-too-big": "escalated", "credit-limit": "denied",
        "phone-wrong": "resolved", "bad-edit": "asked", "orders-down": "resolved"}
    assert {k for k, v in t.items() if v.success} == CLEAN_OK
    assert not results.success
    small = t["refund-small"]
    assert (small.precision, small.recall, small.contained, small.integrity) == (1.0, 1.0, True, True)
    assert (small.citations_valid, small.citations_total, small.approvals, small.denials) == (1, 1, 0, 0)
    assert 0 < small.spend_usd < 0.05 and small.status == "resolved"
    assert [c["tool"] for c in small.calls] == ["lookup_order", "search_policy", "issue_refund"]
    assert t["refund-approved"].approvals == 1 and not t["refund-approved"].contained
    assert t["refund-asked"].status == "awaiting_approval" and t["refund-asked"].calls[-1]["executed"] is False
    big = t["refund-too-big"]
    assert big.unsafe_attempts == 1 and big.denials == 1 and big.precision == 0.0
    assert t["credit-limit"].denials == 1 and t["credit-limit"].unsafe_attempts == 1


def test_failures_carry_their_problems(results: SuiteResults) -> None:
    t = _by_id(results)
    assert t["phone-wrong"].problems == ("outcome resolved, expected escalated",)
    bad = t["bad-edit"]
    assert bad.status == "awaiting_approval" and bad.error is None  # the refused edit was not recorded
    assert bad.problems[0] == "outcome asked, expected resolved"
    assert any(p.startswith("decision refused: approval A-") and "edited arguments are invalid" in p
               for p in bad.problems)
    down = t["orders-down"]
    assert down.faults_injected >= 1 and down.tool_errors >= 1


def test_metrics_per_profile(results: SuiteResults) -> None:
    m = results.metrics["clean"]
    assert m["task_success"].value == pytest.approx(7 / 9) and m["task_success"].n == 9
    assert (m["task_success"].low, m["task_success"].high) == pytest.approx(wilson_interval(7, 9))
    assert m["task_success"].method == "wilson" and m["time_to_resolution_s"].method == "bootstrap"
    assert m["cost_per_resolved_usd"].better == "lower" and m["containment"].better == "higher"
    assert m["approvals_asked"].value == pytest.approx(sum(t.approvals for t in results.tasks) / 9)
    empty = aggregate([])
    assert all(v.value is None and v.n == 0 for v in empty.values()) and set(empty) == set(m)


def test_results_file_format_and_versions(results: SuiteResults, work: Path) -> None:
    data = results.to_json()
    assert data["schema_version"] == RESULTS_SCHEMA and data["profiles"] == ["clean"]
    assert data["suite"]["name"] == "mini" and data["suite"]["version"] == "3"
    assert data["versions"]["suite"] == "sha256:" + data["suite"]["sha256"]
    assert data["versions"]["tether"] and data["versions"]["langgraph"]
    assert set(data["run"]) >= {"id", "started_at", "wall_seconds", "jobs", "seed", "model", "tasks_per_second", "host"}
    v = data["versions"]["workflows"]["support"]
    assert v["models"] == {"router": "offline:router-v1", "reasoning": "offline:support-v1"}
    assert v["prompt"]["version"] == "support-v1" and len(v["prompt"]["sha256"]) == 64
    assert v["tools"]["issue_refund"]["schema_version"] == "1" and len(v["tools"]) == 10
    rows = _rows(work, "refund-small")
    assert {r.policy_version for r in rows if r.event == "proposed"} == {v["policy"]["version"]}
    task = data["tasks"][0]
    assert list(task) == ["id", "profile", "workflow", "category", "tags", "expected", "observed", "status",
                          "success", "problems", "integrity", "integrity_problems", "precision", "recall",
                          "contained", "seconds", "spend_usd", "citations_valid", "citations_total",
                          "unsafe_attempts", "denials", "approvals", "tool_errors", "faults_injected", "calls",
                          "error"]
    assert set(data["metrics"]["clean"]["task_success"]) == {"value", "n", "low", "high", "method", "better"}


def _rows(work: Path, task_id: str) -> list[LedgerRow]:
    with Ledger.open(Home(root=work / "clean" / task_id).ledger_url) as ledger:
        return ledger.events(f"eval-{task_id}")


def test_integrity_detects_forged_and_tampered_writes(results: SuiteResults, work: Path, suite: Suite) -> None:
    tools, task = build_support_tools(), suite.tasks[0]
    rows = _rows(work, "refund-small")
    assert integrity_problems(rows, tools, task.expect) == []
    real = next(r for r in rows if r.event == "executed" and r.tool == "issue_refund")
    last = rows[-1].seq
    forged = real.model_copy(update={"seq": last + 1, "idempotency_key": "forged", "tool_call_id": "forged"})
    problems = integrity_problems([*rows, forged], tools, task.expect)
    assert problems == [f"executed issue_refund (seq {last + 1}) has no proposed row"]
    tampered = real.model_copy(update={"seq": last + 1, "args": {**(real.args or {}), "amount_usd": 45.0}})
    assert "arguments other than the ones authorised" in integrity_problems([*rows, tampered], tools)[0]
    scored = score_task(task, profile="clean", rows=[*rows, forged], result=None, tools=tools, seconds=0.0)
    assert not scored.integrity and not scored.success
    asked = _rows(work, "refund-asked")
    request = next(r for r in asked if r.event == "proposed" and r.tool == "issue_refund")
    sneaked = request.model_copy(update={"seq": asked[-1].seq + 1, "event": "executed"})
    assert "required approval and has no approved or edited row" in integrity_problems([*asked, sneaked], tools)[0]
    elsewhere = real.model_copy(update={"args": {**(real.args or {}), "order_id": "O-99999"}})
    assert any("about none of the records O-20417" in p
               for p in integrity_problems([*rows[:-3], elsewhere], tools, task.expect))


def test_named_profiles_rerun_every_task(suite: Suite, tmp_path: Path) -> None:
    out = run_suite(suite, work_dir=tmp_path, profiles=("orders_down",), tasks=["refund-small"])
    assert [(t.id, t.profile) for t in out.tasks] == [("refund-small", "clean"), ("refund-small", "orders_down")]
    clean, down = out.tasks
    assert clean.success and clean.faults_injected == 0
    assert down.faults_injected >= 1 and down.tool_errors >= 1 and set(out.metrics) == {"clean", "orders_down"}
    assert not any(tmp_path.joinpath(p, "refund-small").exists() for p in ("clean", "orders_down"))
    assert isinstance(suite.fault_profiles["orders_down"], FaultProfile)


def test_cli_with_two_jobs_matches_one_job(results: SuiteResults, suite: Suite, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    out = tmp_path / "results.json"
    code = main(["eval", "run", str(suite.path), "--jobs", "2", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "task_success" in printed and "phone-wrong: resolved" in printed
    assert "outcome resolved, expected escalated" in printed and f"results: {out}" in printed
    data = json.loads(out.read_text())
    assert data["run"]["jobs"] == 2 and data["versions"] == json.loads(json.dumps(results.versions))

    def same(t: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in t.items() if k not in ("seconds", "error", "problems")}

    assert [same(t) for t in data["tasks"]] == [same(t.to_json()) for t in results.tasks]


def test_cli_json_default_out_and_errors(suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    assert main(["eval", "run", str(suite.path), "--task", "credit-limit", "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in data["tasks"]] == ["credit-limit"]
    assert len(list((tmp_path / "home" / "evals").glob("mini-*.json"))) == 1
    for argv, words in [
        (["--faults", "nope"], "unknown fault profile(s) nope; suite 'mini' defines: orders_down"),
        (["--task", "nope"], "no task nope in suite 'mini'"),
        (["--model", f"replay:{tmp_path / 'none.jsonl'}"], "no such file"),
        (["--model", "replay:x.jsonl", "--record", "y.jsonl"], "cannot record while replaying"),
        (["--jobs", "0"], "give 1 or more"),
    ]:
        assert main(["eval", "run", str(suite.path), *argv]) == 1
        assert words in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**SUITE, "workflow": "no-such-desk"}), encoding="utf-8")
    assert main(["eval", "run", str(other)]) == 1
    assert "no-such-desk" in capsys.readouterr().err
    assert main(["eval", "run", str(tmp_path / "missing.yaml")]) == 1
    assert "no such suite file" in capsys.readouterr().err


def test_record_then_replay_with_another_prompt_and_policy(suite: Suite, tmp_path: Path) -> None:
    from tether.agents.support.desk import POLICY_PATH, SYSTEM_PROMPT

    tape, prompt, policy = tmp_path / "tape.jsonl", tmp_path / "prompt.txt", tmp_path / "policy.yaml"
    prompt.write_text(SYSTEM_PROMPT + " Be brief.", encoding="utf-8")
    policy.write_text(POLICY_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    kw: dict[str, Any] = {"tasks": ["refund-small"], "prompt": prompt, "policy": policy}
    recorded = run_suite(suite, work_dir=tmp_path / "a", record=tape, **kw)
    assert tape.read_text().count("\n") >= 2
    replayed = run_suite(suite, work_dir=tmp_path / "b", model=f"replay:{tape}", **kw)
    assert replayed.run["model"] == f"replay:{tape}"
    assert [t.to_json() | {"seconds": 0} for t in replayed.tasks] == [t.to_json() | {"seconds": 0}
                                                                       for t in recorded.tasks]
    v = replayed.versions["workflows"]["support"]
    assert v["prompt"]["version"].startswith("file:") and v["policy"]["path"] == str(policy)
    assert replayed.tasks[0].success
