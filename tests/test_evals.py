"""The eval runner reports every scenario with its documented outcome."""

from __future__ import annotations

import dataclasses

from tether.agents.support.demo import SCENARIOS
from tether.agents.support.desk import SupportDesk
from tether.evals import EVAL_SCHEMA_VERSION, EvalReport, run_eval


def test_all_scenarios_pass_and_report_is_versioned(desk: SupportDesk) -> None:
    report = run_eval(desk, SCENARIOS)
    assert report.schema_version == EVAL_SCHEMA_VERSION
    assert [c.key for c in report.cases] == [s.key for s in SCENARIOS]
    assert report.pass_rate == 1.0, [c for c in report.cases if not c.ok]
    by_key = {c.key: c for c in report.cases}
    assert by_key["c"].denied >= 1 and by_key["e"].executed <= 8
    assert all(c.spend_usd > 0 for c in report.cases)
    assert EvalReport.model_validate_json(report.model_dump_json()) == report


def test_a_wrong_expectation_is_reported_as_failure(desk: SupportDesk) -> None:
    wrong = dataclasses.replace(SCENARIOS[0], key="a-wrong", expect=lambda r, rows: "deliberately wrong")
    report = run_eval(desk, [wrong])
    assert report.pass_rate == 0.0
    assert report.cases[0].problem == "deliberately wrong"
