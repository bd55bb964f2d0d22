"""``tether eval compare``: gates over two results files, per-task flips, version changes, reports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.cli import main
from tether.evals.compare import (
    CompareError,
    Gate,
    GatesFile,
    GatesFileError,
    Results,
    ResultsFileError,
    compare,
    load_gates,
    load_results,
    render_html,
    render_markdown,
)
from tether.evals.compare_report import delta_interval
from tether.evals.html import plots_available
from tether.evals.metrics import METRICS

ROOT = Path(__file__).resolve().parents[1]
CANARY = ROOT / "agents" / "support" / "canary"
_WILSON = {"task_success", "process_integrity", "tool_precision", "tool_recall", "containment", "citation_validity"}


def _metric(name: str, value: float | None = 0.5, low: float | None = None, high: float | None = None,
            n: int = 20) -> dict[str, Any]:
    if value is None:
        return {"value": None, "n": 0, "low": None, "high": None,
                "method": "wilson" if name in _WILSON else "bootstrap", "better": METRICS[name]}
    return {"value": value, "n": n, "low": value - 0.05 if low is None else low,
            "high": value + 0.05 if high is None else high,
            "method": "wilson" if name in _WILSON else "bootstrap", "better": METRICS[name]}


def _task(tid: str, success: bool = True, profile: str = "clean", category: str = "ordinary") -> dict[str, Any]:
    return {"id": tid, "profile": profile, "workflow": "support", "category": category, "tags": [],
            "expected": ["resolved"], "observed": "resolved" if success else "escalated", "status": "resolved",
            "success": success, "problems": [] if success else [f"{tid}: outcome escalated, expected resolved"],
            "integrity": True, "integrity_problems": [], "precision": 1.0, "recall": 1.0, "contained": True,
            "seconds": 0.1, "spend_usd": 0.003, "citations_valid": 1, "citations_total": 1, "unsafe_attempts": 0,
            "denials": 0, "approvals": 0, "tool_errors": 0, "faults_injected": 0, "calls": [], "error": None}


def _data(*, suite: str = "s", profiles: tuple[str, ...] = ("clean",), tasks: list[dict[str, Any]] | None = None,
          prompt: str = "p1", **values: Any) -> dict[str, Any]:
    """A results file in the ``tether.eval-results/1`` format; ``values``: metric -> value or (v, low, high)."""
    metrics = {}
    for prof in profiles:
        ms = {}
        for name in METRICS:
            v = values.get(name, 0.5)
            ms[name] = _metric(name, *v) if isinstance(v, tuple) else _metric(name, v)
        metrics[prof] = ms
    return {
        "schema_version": "tether.eval-results/1",
        "suite": {"name": suite, "version": "1", "path": "suite.yaml", "sha256": "ab" * 32},
        "run": {"id": "r1", "started_at": "2026-01-01T00:00:00+00:00", "wall_seconds": 1.0, "jobs": 1,
                "seed": 0, "model": "offline", "tasks_per_second": 3.0, "host": {"cpus": 2, "python": "3.11"}},
        "versions": {"tether": "0.1.0", "langgraph": "1.0", "suite": "sha256:" + "ab" * 32, "workflows": {
            "support": {"policy": {"version": "sha256:1111", "sha256": "11" * 32, "path": "agent-policy.yaml"},
                        "prompt": {"version": prompt, "sha256": prompt * 16},
                        "models": {"router": "offline:router-v1", "reasoning": "offline:support-v1"},
                        "tools": {"issue_refund": {"schema_version": "1", "sha256": "33" * 32}}}}},
        "profiles": list(profiles),
        "tasks": tasks if tasks is not None else [_task(f"t{i}") for i in range(3)],
        "metrics": metrics,
    }


def _res(tmp: Path, name: str, data: dict[str, Any]) -> Results:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(data))
    return load_results(path)


def _gate(**kw: Any) -> GatesFile:
    return GatesFile.model_validate({"gates": [kw]})


# ---------------------------------------------------------------- results files


def test_a_results_file_of_another_schema_is_refused(tmp_path: Path) -> None:
    data = _data()
    data["schema_version"] = "tether.eval-results/0"
    with pytest.raises(ResultsFileError, match=r"schema_version is 'tether.eval-results/0', expected"):
        _res(tmp_path, "old", data)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultsFileError, match="not JSON"):
        load_results(tmp_path / "bad.json")
    data = _data()
    del data["metrics"]["clean"]["tool_errors"]
    with pytest.raises(ResultsFileError, match=r"metrics.clean lacks tool_errors"):
        _res(tmp_path, "short", data)
    with pytest.raises(ResultsFileError, match="cannot read"):
        load_results(tmp_path / "missing.json")


# ---------------------------------------------------------------- each gate at its edge

EDGES = [
    ({"metric": "task_success", "max_drop": 0.02}, 0.9, 0.88, "pass"),
    ({"metric": "task_success", "max_drop": 0.02}, 0.9, 0.87, "breach"),
    ({"metric": "task_success", "max_drop": 0.02}, 0.9, 0.95, "pass"),
    ({"metric": "containment", "max_drop_pct": 10}, 0.8, 0.72, "pass"),
    ({"metric": "containment", "max_drop_pct": 10}, 0.8, 0.71, "breach"),
    ({"metric": "unsafe_attempts", "max_increase": 0}, 0.1, 0.1, "pass"),
    ({"metric": "unsafe_attempts", "max_increase": 0}, 0.1, 0.11, "breach"),
    ({"metric": "cost_per_resolved_usd", "max_increase_pct": 10}, 0.01, 0.011, "pass"),
    ({"metric": "cost_per_resolved_usd", "max_increase_pct": 10}, 0.01, 0.0111, "breach"),
    ({"metric": "tool_errors", "max_increase_pct": 10}, 0.0, 0.01, "breach"),
    ({"metric": "tool_errors", "max_increase_pct": 10}, 0.0, 0.0, "pass"),
    ({"metric": "process_integrity", "min": 1.0}, 0.5, 1.0, "pass"),
    ({"metric": "process_integrity", "min": 1.0}, 1.0, 0.99, "breach"),
    ({"metric": "time_to_resolution_s", "max": 2.0}, 9.0, 2.0, "pass"),
    ({"metric": "time_to_resolution_s", "max": 2.0}, 1.0, 2.01, "breach"),
]


@pytest.mark.parametrize(("gate", "base", "cand", "status"), EDGES)
def test_each_gate_passes_at_its_edge_and_breaches_past_it(tmp_path: Path, gate: dict[str, Any], base: float,
                                                           cand: float, status: str) -> None:
    b = _res(tmp_path, "b", _data(**{gate["metric"]: base}))
    c = _res(tmp_path, "c", _data(**{gate["metric"]: cand}))
    (v,) = compare(b, c, _gate(**gate)).verdicts
    assert v.status == status, v.reason
    assert gate["metric"] in v.reason and v.profile == "clean"


@settings(max_examples=80, deadline=None)
@given(base=st.floats(0, 1), cand=st.floats(0, 1), limit=st.floats(0, 0.5))
def test_max_drop_breaches_exactly_when_the_drop_exceeds_the_limit(base: float, cand: float, limit: float) -> None:
    b = Results(path="b", suite="s", suite_version="1", run_id="b", profiles=("clean",), tasks=(),
                metrics={"clean": {m: _metric(m, base) for m in METRICS}}, versions={}, run={})
    c = Results(path="c", suite="s", suite_version="1", run_id="c", profiles=("clean",), tasks=(),
                metrics={"clean": {m: _metric(m, cand) for m in METRICS}}, versions={}, run={})
    (v,) = compare(b, c, _gate(metric="task_success", max_drop=limit)).verdicts
    if base - cand > limit + 1e-6:
        assert v.status == "breach"
    elif base - cand < limit - 1e-6:
        assert v.status == "pass"


def test_significant_breaches_only_when_the_intervals_are_disjoint(tmp_path: Path) -> None:
    gates = _gate(metric="approvals_asked", max_increase=0.05, significant=True)
    b = _res(tmp_path, "b", _data(approvals_asked=(0.1, 0.05, 0.15)))
    overlapping = _res(tmp_path, "c1", _data(approvals_asked=(0.3, 0.14, 0.4)))
    disjoint = _res(tmp_path, "c2", _data(approvals_asked=(0.3, 0.2, 0.4)))
    small = _res(tmp_path, "c3", _data(approvals_asked=(0.12, 0.08, 0.2)))
    (v,) = compare(b, overlapping, gates).verdicts
    assert v.status == "pass" and "overlap" in v.reason and "not significant" in v.reason
    (v,) = compare(b, disjoint, gates).verdicts
    assert v.status == "breach" and "disjoint" in v.reason
    (v,) = compare(b, small, gates).verdicts
    assert v.status == "pass" and "within the allowed 0.05" in v.reason
    # without significant the overlapping rise breaches
    (v,) = compare(b, overlapping, _gate(metric="approvals_asked", max_increase=0.05)).verdicts
    assert v.status == "breach"
    row = next(r for r in compare(b, disjoint).rows if r.metric == "approvals_asked")
    assert row.overlap is False and row.delta == pytest.approx(0.2)
    lo, hi = delta_interval(row) or (0, 0)
    assert lo < 0.2 < hi and lo > 0  # MOVER interval of the difference excludes 0 here


def test_per_task_lists_the_tasks_that_stopped_succeeding(tmp_path: Path) -> None:
    b = _res(tmp_path, "b", _data(tasks=[_task("a"), _task("b"), _task("c", success=False)]))
    c = _res(tmp_path, "c", _data(tasks=[_task("a"), _task("b", success=False), _task("c")]))
    cmp = compare(b, c, _gate(metric="task_success", per_task=True))
    (v,) = cmp.verdicts
    assert v.status == "breach" and v.reason.endswith(": b.") and "1 of 2" in v.reason
    assert [(f.id, f.direction) for f in cmp.flips] == [("b", "regressed"), ("c", "fixed")]
    assert cmp.flips[0].problems == ("b: outcome escalated, expected resolved",)
    (v,) = compare(c, c, _gate(metric="task_success", per_task=True)).verdicts
    assert v.status == "pass" and not compare(c, c).flips


def test_version_changes_say_what_differs(tmp_path: Path) -> None:
    b = _res(tmp_path, "b", _data())
    data = _data(prompt="p2")
    data["versions"]["workflows"]["support"]["tools"]["issue_refund"]["schema_version"] = "2"
    data["run"]["model"] = "replay:tape.jsonl"
    cmp = compare(b, _res(tmp_path, "c", data))
    keys = {ch.key: (ch.baseline, ch.candidate) for ch in cmp.changes}
    assert set(keys) == {"workflows.support.prompt.version", "workflows.support.prompt.sha256",
                         "workflows.support.tools.issue_refund.schema_version", "run.model"}
    assert keys["workflows.support.prompt.version"] == ("p1", "p2")
    assert compare(b, b).changes == ()


def test_profiles_star_missing_profiles_and_missing_values(tmp_path: Path) -> None:
    b = _res(tmp_path, "b", _data(profiles=("clean", "flaky"), citation_validity=1.0))
    c = _res(tmp_path, "c", _data(profiles=("clean",), citation_validity=None))
    cmp = compare(b, c, GatesFile.model_validate({"gates": [
        {"metric": "task_success", "max_drop": 0, "profile": "*"},
        {"metric": "task_success", "max_drop": 0, "profile": "flaky"},
        {"metric": "citation_validity", "min": 1.0}]}))
    assert [(v.profile, v.status) for v in cmp.verdicts] == [("clean", "pass"), ("flaky", "unverified"),
                                                             ("clean", "unverified")]
    assert "not in the candidate" in cmp.verdicts[1].reason and "--faults flaky" in cmp.verdicts[1].reason
    assert "no value in the candidate" in cmp.verdicts[2].reason
    assert not cmp.passed and any("profiles in one run only: flaky" in n for n in cmp.notes)
    both_null = _res(tmp_path, "d", _data(citation_validity=None))
    assert compare(both_null, both_null, _gate(metric="citation_validity", min=1.0)).passed


def test_unrelated_suites_are_refused_and_overlapping_ones_noted(tmp_path: Path) -> None:
    b = _res(tmp_path, "b", _data(suite="one"))
    with pytest.raises(CompareError, match=r"different suites .* no task in common"):
        compare(b, _res(tmp_path, "c", _data(suite="two", tasks=[_task("x")])))
    cmp = compare(b, _res(tmp_path, "d", _data(suite="two", tasks=[_task("t0"), _task("x")])))
    assert any("different suites" in n for n in cmp.notes)
    assert any("2 only in the baseline, 1 only in the candidate, 1 in both" in n for n in cmp.notes)


# ---------------------------------------------------------------- the gates file

BAD_GATES = [
    ({"gates": [{"metric": "task_success", "max_dorp": 0.1}]}, "gates[0].max_dorp", "unknown key"),
    ({"gates": [{"metric": "succes", "max_drop": 0.1}]}, "gates[0].metric", "task_success, process_integrity"),
    ({"gates": [{"metric": "task_success", "max_drop": "0.1"}]}, "gates[0].max_drop", "valid number"),
    ({"gates": [{"metric": "task_success", "max_drop": -1}]}, "gates[0].max_drop", "greater than or equal"),
    ({"gates": [{"metric": "task_success", "max_drop": 0.1, "min": 0.9}]}, "gates[0]", "exactly one"),
    ({"gates": [{"metric": "task_success"}]}, "gates[0]", "got none"),
    ({"gates": [{"metric": "unsafe_attempts", "max_drop": 0.1}]}, "gates[0]", "use max_increase"),
    ({"gates": [{"metric": "task_success", "max_increase": 0.1}]}, "gates[0]", "use max_drop"),
    ({"gates": [{"metric": "task_success", "min": 1, "significant": True}]}, "gates[0]", "significant applies"),
    ({"gates": [{"metric": "tool_errors", "per_task": True}]}, "gates[0]", "per_task works with"),
    ({"gates": []}, "gates", "at least 1"),
    ({"gate": []}, "gate", "unknown key"),
]


@pytest.mark.parametrize(("doc", "key", "says"), BAD_GATES)
def test_a_bad_gates_file_names_the_key(tmp_path: Path, doc: dict[str, Any], key: str, says: str) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(GatesFileError) as err:
        load_gates(path)
    assert any(k == key and says in r for k, r in err.value.problems), err.value.problems
    assert str(path) in str(err.value)


def test_the_shipped_gates_load_and_the_schema_file_is_in_sync() -> None:
    gates = load_gates(CANARY / "gates.yaml")
    assert {g.metric for g in gates.gates} >= {"task_success", "process_integrity", "citation_validity"}
    shipped = json.loads((ROOT / "evals" / "gates.schema.json").read_text())
    assert shipped == GatesFile.model_json_schema(), "regenerate evals/gates.schema.json from GatesFile"
    assert Gate.model_json_schema()["additionalProperties"] is False


# ---------------------------------------------------------------- reports and the command


@pytest.fixture(scope="module")
def breached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("cmp")
    tasks_b = [_task("a"), _task("b", category="edge"), _task("c", category="edge")]
    tasks_c = [_task("a"), _task("b", success=False, category="edge"), _task("c", category="edge")]
    (tmp / "b.json").write_text(json.dumps(_data(tasks=tasks_b, task_success=(1.0, 0.8, 1.0))))
    (tmp / "c.json").write_text(json.dumps(_data(tasks=tasks_c, prompt="p2", task_success=(0.66, 0.2, 0.94))))
    (tmp / "g.yaml").write_text(yaml.safe_dump({"gates": [{"metric": "task_success", "max_drop": 0.02},
                                                          {"metric": "unsafe_attempts", "max_increase": 0}]}))
    return tmp / "b.json", tmp / "c.json", tmp / "g.yaml"


def test_markdown_and_html_reports(breached: tuple[Path, Path, Path]) -> None:
    b, c, g = breached
    cmp = compare(load_results(b), load_results(c), load_gates(g))
    md = render_markdown(cmp)
    assert "FAIL: 1 of 2 gate check(s) breached" in md and "| regressed | b |" in md
    assert "workflows.support.prompt.version" in md
    page = render_html(cmp)
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page, re.I)
    assert "<script src" not in page.lower() and "<link" not in page.lower()
    assert "FAIL: 1 of 2 gate check(s) breached" in page and "task_success max_drop 0.02" in page
    if plots_available():
        assert page.count('src="data:image/png;base64,') == 2  # the deltas and the category chart
    else:
        assert "matplotlib" in page


def test_the_command_exits_1_on_a_breach_and_writes_the_reports(breached: tuple[Path, Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    b, c, g = breached
    md, page = tmp_path / "r" / "report.md", tmp_path / "report.html"
    assert main(["eval", "compare", str(b), str(c), "--gates", str(g), "--md", str(md), "--html", str(page)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "breach: task_success max_drop 0.02 [clean]" in out
    assert md.read_text().startswith("# Eval comparison") and page.read_text().startswith("<!doctype html>")
    assert main(["eval", "compare", str(b), str(b), "--gates", str(g), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True and [v["status"] for v in data["verdicts"]] == ["pass", "pass"]
    assert main(["eval", "compare", str(b), str(c)]) == 0  # no gates: deltas only
    assert "NO GATES" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates: [{metric: task_success, max_drop: 0.1, colour: red}]")
    assert main(["eval", "compare", str(b), str(c), "--gates", str(bad)]) == 1
    assert "gates[0].colour: unknown key" in capsys.readouterr().err


def test_the_report_data_round_trips(breached: tuple[Path, Path, Path]) -> None:
    b, c, _ = breached
    cmp = compare(load_results(b), load_results(c))
    data = json.loads(json.dumps(cmp.to_json()))
    assert data["categories"]["clean"]["edge"] == {"baseline": [2, 2], "candidate": [1, 2]}
    assert copy.deepcopy(data)["flips"][0]["id"] == "b"


# ---------------------------------------------------------------- the shipped canary, end to end (runs last)

CANARY_TASKS = ("refund-kettle-18", "refund-40-approved", "refund-80-handoff", "update-phone")


@pytest.mark.slow
def test_zz_the_shipped_canaries_are_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    picked = [a for t in CANARY_TASKS for a in ("--task", t)]

    def run(name: str, *extra: str) -> Path:
        out = tmp_path / f"{name}.json"
        assert main(["eval", "run", "support", *picked, "--no-progress", "--out", str(out), *extra]) in (0, 1)
        return out

    base = run("base")
    assert load_results(base).metrics["clean"]["task_success"]["value"] == 1.0
    gates = str(CANARY / "gates.yaml")
    capsys.readouterr()
    for name, extra, breach in (
        ("loose", ("--policy", str(CANARY / "loose-policy.yaml")), "refund-40-approved"),
        ("prompt", ("--prompt", str(CANARY / "prompt-efficient.txt")), "refund-kettle-18"),
    ):
        cand = run(name, *extra)
        capsys.readouterr()
        assert main(["eval", "compare", str(base), str(cand), "--gates", gates, "--json"]) == 1
        data = json.loads(capsys.readouterr().out)
        breached = [v for v in data["verdicts"] if v["status"] != "pass"]
        assert any(v["gate"]["metric"] == "task_success" and v["gate"].get("per_task") and breach in v["reason"]
                   for v in breached), breached
        assert any(ch["key"].startswith(f"workflows.support.{'policy' if name == 'loose' else 'prompt'}")
                   for ch in data["changes"])
    assert main(["eval", "compare", str(base), str(base), "--gates", gates]) == 0
