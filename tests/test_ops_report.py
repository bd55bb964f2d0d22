"""``tether report``: runs folded from real ledgers, time series, SLO budgets, the CLI and its page."""

from __future__ import annotations

import argparse
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.agents.support.demo import SCENARIOS
from tether.checkpoints.ledger import Ledger
from tether.checkpoints.records import LedgerEvent, LedgerRow
from tether.cli import main
from tether.config import Home
from tether.errors import ConfigError
from tether.evals.html import plots_available
from tether.evals.ops import (
    RunSummary,
    SloSpec,
    WorkflowFacts,
    build_report,
    catalog,
    evaluate_slos,
    load_report,
    load_slos,
    parse_bucket,
    parse_span,
    parse_when,
    quantile,
    summarize_runs,
)
from tether.evals.ops_html import render_html, render_text
from tether.graphs.session import Session
from tether.graphs.state import Approve

SHIPPED_SLO = Path(__file__).resolve().parents[1] / "agents" / "support" / "slo.yaml"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BY_KEY = {s.key: s for s in SCENARIOS}


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A support ledger: a small refund, a waiting $40 one, an approved $40 one, a denied $80 one,
    a denied credit-limit change, a denied cross-customer query; plus one hand-made run with a
    tool error, a refusal at execution and a flagged output."""
    home = Home(root=tmp_path_factory.mktemp("ops") / "home").ensure()
    with Session.open("support", home=home) as s:
        for key in ("a", "b", "c", "d2", "f2"):
            s.run(str(BY_KEY[key].request), thread_id=f"t-{key}", subject="C-1042")
        r = s.run(str(BY_KEY["b"].request), thread_id="t-b-ok", subject="C-1042")
        s.decide(r.waiting_for[0].approval_id, Approve(approver="lead@example.com"))
    with Ledger.open(home.ledger_url) as led:
        for ev in _handmade("t-x", "run-x"):
            led.append(ev)
    return home


def _handmade(thread: str, run: str) -> list[LedgerEvent]:
    base: dict[str, Any] = {"thread_id": thread, "run_id": run}
    return [
        LedgerEvent(**base, event="run_started", detail="look up my order", spend_usd=0.0),
        LedgerEvent(**base, event="proposed", tool="lookup_order", tool_call_id="c1", decision="allow",
                    rule_id="tools.lookup_order.allowed", spend_usd=0.001),
        LedgerEvent(**base, event="executing", tool="lookup_order", tool_call_id="c1",
                    rule_id="tools.lookup_order.allowed", spend_usd=0.001),
        LedgerEvent(**base, event="failed", tool="lookup_order", tool_call_id="c1",
                    rule_id="tools.lookup_order.allowed", error="[timeout] lookup_order took longer than 5 s",
                    spend_usd=0.001),
        LedgerEvent(**base, event="failed", tool="issue_refund", tool_call_id="c2",
                    rule_id="tools.issue_refund.max_total_usd_per_run",
                    error="tools.issue_refund.max_total_usd_per_run: at execution time: over the cap",
                    spend_usd=0.002),
        LedgerEvent(**base, event="flagged", tool="lookup_order", tool_call_id="c3", spend_usd=0.002,
                    flags=({"field": "notes", "why": "instruction-like"},)),
        LedgerEvent(**base, event="responded", detail="done", spend_usd=0.003),
    ]


@pytest.fixture(scope="module")
def runs(played: Home) -> dict[str, RunSummary]:
    facts, _ = catalog()
    with Ledger.open(played.ledger_url) as led:
        owners = {a.thread_id: a.workflow for a in led.approvals(status=None) if a.workflow}
        return {r.thread_id: r for r in summarize_runs(led.iter_events(), catalog=facts, approvals=owners)}


@pytest.fixture
def env_home(played: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    monkeypatch.setenv("TETHER_HOME", str(played.root))
    yield played


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- runs from real ledgers


def test_each_shipped_scenario_folds_into_one_run_with_its_outcome(runs: dict[str, RunSummary]) -> None:
    assert {k: r.outcome for k, r in runs.items()} == {
        "t-a": "resolved", "t-b": "waiting", "t-c": "escalated", "t-d2": "resolved", "t-f2": "resolved",
        "t-b-ok": "resolved", "t-x": "resolved"}
    assert all(r.workflow == "support" for r in runs.values())
    assert runs["t-c"].denial_rules == ("tools.issue_refund.max_amount_usd",)
    assert runs["t-d2"].denial_rules == ("tools.update_crm_record.allowed_fields",)
    assert runs["t-f2"].denial_rules == ("tools.run_sql_query.row_level_security",)
    assert [runs[k].unsafe for k in ("t-a", "t-c", "t-d2", "t-f2")] == [0, 1, 1, 1]
    # writes: the refund; the hand-off of the $80 case; nothing for the denied CRM change
    assert (runs["t-a"].writes, runs["t-c"].writes, runs["t-d2"].writes, runs["t-b-ok"].writes) == (1, 1, 0, 1)
    assert (runs["t-b"].approvals_asked, runs["t-b"].approved) == (1, 0)
    assert (runs["t-b-ok"].approvals_asked, runs["t-b-ok"].approved) == (1, 1)
    assert runs["t-b"].latency_s is None and runs["t-a"].latency_s is not None and runs["t-a"].latency_s > 0
    assert runs["t-c"].end_rule == "tools.handoff_to_human"
    assert all(r.spend_usd > 0 for r in runs.values())


def test_tool_errors_are_told_apart_from_refusals_at_execution(runs: dict[str, RunSummary]) -> None:
    x = runs["t-x"]
    assert x.tool_errors == 1 and x.errors[0][:2] == ("lookup_order", "timeout")
    assert x.denial_rules == ("tools.issue_refund.max_total_usd_per_run",)
    assert (x.unsafe, x.flagged, x.spend_usd) == (2, 1, 0.003)
    assert sum(r.tool_errors for k, r in runs.items() if k != "t-x") == 0


def test_report_totals_rates_and_tops(runs: dict[str, RunSummary]) -> None:
    rep = build_report(list(runs.values()), now=datetime.now(UTC))
    t = rep.totals
    assert (t["runs"], t["resolved"], t["escalated"], t["waiting"], t["unfinished"]) == (7, 5, 1, 1, 0)
    assert (t["denials"], t["tool_errors"], t["unsafe"], t["approvals_asked"], t["approved"]) == (4, 1, 5, 2, 1)
    assert rep.rates["resolution"] == pytest.approx(5 / 7)
    assert rep.cost_per_resolved_usd == pytest.approx(sum(r.spend_usd for r in runs.values()) / 5)
    assert {d.rule_id: (d.count, d.tools) for d in rep.top_denials}["tools.issue_refund.max_amount_usd"] == (
        1, ("issue_refund",))
    assert [(e.tool, e.count, e.codes) for e in rep.top_tool_errors] == [("lookup_order", 1, (("timeout", 1),))]
    assert sum(b.runs for b in rep.series) == 7
    assert json.loads(json.dumps(rep.to_dict()))["totals"]["runs"] == 7


# ---------------------------------------------------------------- pure functions on constructed rows


def row(seq: int, minute: float, thread: str, event: str, **kw: Any) -> LedgerRow:
    ts = (NOW + timedelta(minutes=minute)).isoformat()
    return LedgerRow(seq=seq, event_id=f"e{seq}", ts=ts, thread_id=thread, run_id="r", event=event, **kw)


def day_rows() -> list[LedgerRow]:
    """Four runs: two in the 12:00 hour (one resolved in 2 s, one escalated in 10 s), one
    resolved in 4 s at 13:05, one unfinished at 14:30."""
    return [
        row(1, 0, "a", "run_started", spend_usd=0.0), row(2, 2 / 60, "a", "responded", spend_usd=0.01),
        row(3, 30, "b", "run_started", policy_version="p2"),
        row(4, 30, "b", "proposed", tool="grant", decision="deny", rule_id="tools.grant.x"),
        row(5, 30 + 10 / 60, "b", "escalated", rule_id="tools.grant.x", spend_usd=0.02),
        row(6, 65, "c", "run_started"), row(7, 65 + 4 / 60, "c", "responded", spend_usd=0.03),
        row(8, 150, "d", "run_started", policy_version="p2"),
        row(9, 150, "d", "failed", tool="grant", error="[boom] no", spend_usd=0.005),
    ]


FACTS = (WorkflowFacts(name="one", policy_version="p1", tools=frozenset({"lookup"}), writes=frozenset()),
         WorkflowFacts(name="two", policy_version="p2", tools=frozenset({"grant"}), writes=frozenset({"grant"})))


def test_hourly_buckets_count_runs_by_start_time() -> None:
    rs = summarize_runs(day_rows(), catalog=FACTS)
    rep = build_report(rs, now=NOW + timedelta(hours=3), since=NOW - timedelta(minutes=1), bucket="1h")
    assert [b.start[11:16] for b in rep.series] == ["11:00", "12:00", "13:00", "14:00", "15:00"]
    assert [(b.runs, b.resolved, b.escalated, b.unfinished) for b in rep.series] == [
        (0, 0, 0, 0), (2, 1, 1, 0), (1, 1, 0, 0), (1, 0, 0, 1), (0, 0, 0, 0)]
    h12 = rep.series[1]
    assert (h12.latency_p50_s, h12.latency_p95_s) == (pytest.approx(6.0), pytest.approx(9.6))
    assert h12.spend_per_resolved_usd == pytest.approx(0.03)
    assert (h12.denials, rep.series[3].tool_errors) == (1, 1)
    assert (rep.latency_p50_s, rep.cost_per_resolved_usd) == (pytest.approx(4.0), pytest.approx(0.065 / 2))


def test_window_and_workflow_filters() -> None:
    rs = summarize_runs(day_rows(), catalog=FACTS)
    assert [r.workflow for r in rs] == [None, "two", None, "two"]
    only_two = build_report(rs, now=NOW + timedelta(hours=3), workflow="two")
    assert only_two.totals["runs"] == 2
    late = build_report(rs, now=NOW + timedelta(hours=3), since=NOW + timedelta(hours=1))
    assert [r.thread_id for r in late.runs] == ["c", "d"]
    early = build_report(rs, now=NOW + timedelta(hours=3), until=NOW + timedelta(hours=1))
    assert [r.thread_id for r in early.runs] == ["a", "b"]
    daily = build_report(rs, now=NOW + timedelta(hours=3), bucket="1d")
    assert [(b.start[:10], b.runs) for b in daily.series] == [("2026-12-02", 4)]
    with pytest.raises(ConfigError, match="after the end"):
        build_report(rs, now=NOW, since=NOW + timedelta(hours=1))


def test_slo_budget_and_burn_over_the_last_bucket() -> None:
    rs = summarize_runs(day_rows(), catalog=FACTS)
    slos = [SloSpec(name="fin", indicator="finished", objective=0.5, window="1d"),
            SloSpec(name="fast", indicator="latency", threshold_s=5, objective=0.9, window="1d"),
            SloSpec(name="old", indicator="resolved", objective=0.9, window="20m")]
    fin, fast, old = evaluate_slos(slos, rs, end=NOW + timedelta(hours=3), lookback=timedelta(hours=1))
    assert (fin.good, fin.total, fin.budget_spent, fin.status) == (3, 4, pytest.approx(0.5), "ok")
    assert fin.burn_rate == pytest.approx(2.0)  # the only run of the last hour is unfinished
    assert (fast.good, fast.total, fast.status) == (2, 3, "exhausted")
    assert fast.budget_spent == pytest.approx((1 / 3) / 0.1) and fast.burn_rate is None
    assert (old.total, old.status, old.attainment) == (0, "no data", None)


@settings(max_examples=60, deadline=None)
@given(good=st.integers(0, 60), bad=st.integers(0, 60),
       objective=st.floats(0.5, 0.9999, allow_nan=False))
def test_budget_spent_is_bad_fraction_over_error_budget(good: int, bad: int, objective: float) -> None:
    start = NOW.isoformat()
    rs = [RunSummary(thread_id=f"t{i}", run_id="r", workflow=None, started_at=start, ended_at=start,
                     latency_s=0.0, outcome="resolved", tool_errors=int(i >= good)) for i in range(good + bad)]
    (s,) = evaluate_slos([SloSpec(name="x", indicator="no_tool_error", objective=objective, window="1d")],
                         rs, end=NOW, lookback=timedelta(hours=1))
    assert (s.good, s.total) == (good, good + bad)
    if good + bad == 0:
        assert s.status == "no data"
        return
    spent = bad / (good + bad) / (1 - objective)
    assert s.budget_spent == pytest.approx(spent) and s.burn_rate == pytest.approx(spent)
    assert s.attainment == pytest.approx(good / (good + bad))
    assert (s.status == "exhausted") == (s.budget_spent > 1)
    assert (s.status == "at risk") == (0.75 <= s.budget_spent <= 1)


def test_quantile_interpolates() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0], 0.95) == 3.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "expected"), [
    ("24h", NOW - timedelta(hours=24)), ("30m", NOW - timedelta(minutes=30)), ("7d", NOW - timedelta(days=7)),
    ("2w", NOW - timedelta(weeks=2)), ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ("2026-12-01T11:30:00+02:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
])
def test_since_accepts_iso_times_and_spans(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "7x", "-3h", "", "0h", "2026-13-01"])
def test_since_rejects_other_values_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_when(text, now=NOW)
    assert err.value.setting == "--since"
    assert "24h" in err.value.reason or "unit" in err.value.reason


def test_bucket_widths() -> None:
    assert parse_bucket("auto", span=timedelta(hours=5)) == timedelta(hours=1)
    assert parse_bucket("auto", span=timedelta(days=30)) == timedelta(days=1)
    assert parse_bucket("auto", span=timedelta(days=365)) == timedelta(weeks=1)
    assert parse_bucket("15m", span=timedelta(0)) == timedelta(minutes=15)
    with pytest.raises(ConfigError, match="--bucket"):
        parse_bucket("hourly", span=timedelta(0))
    with pytest.raises(ConfigError, match="wider bucket"):
        build_report(summarize_runs(day_rows()), now=NOW + timedelta(days=30), bucket="1m")
    assert parse_span("90s") == timedelta(seconds=90)


# ---------------------------------------------------------------- SLO files


def test_the_shipped_slo_file_loads() -> None:
    slos = load_slos(str(SHIPPED_SLO))
    assert {s.indicator for s in slos} >= {"no_tool_error", "finished", "latency", "no_unsafe"}


@pytest.mark.parametrize(("text", "needle"), [
    ("slos:\n  - {name: a, indicator: finished, objectiv: 0.9}\n", "slos[0].objectiv: unknown key"),
    ("slos:\n  - {name: a, indicator: speedy, objective: 0.9}\n", "unknown indicator 'speedy'"),
    ("slos:\n  - {name: a, indicator: finished, objective: 1.5}\n", "slos[0].objective"),
    ("slos:\n  - {name: a, indicator: latency, objective: 0.9}\n", "needs threshold_s"),
    ("slos:\n  - {name: a, indicator: finished, objective: 0.9, threshold_s: 3}\n", "threshold_s applies only"),
    ("slos:\n  - {name: a, indicator: finished, objective: 0.9, window: weekly}\n", "slos[0].window"),
    ("slos:\n  - {name: a, indicator: finished, objective: 0.9}\n  - {name: a, indicator: resolved, "
     "objective: 0.9}\n", "repeated: a"),
    ("slo:\n  - {name: a}\n", "slo: unknown key"),
    ("slos: [\n", "not valid YAML"),
    ("slos: []\n", "slos"),
])
def test_bad_slo_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_slos(str(path))
    assert needle in str(err.value) and str(path) in str(err.value)


def test_a_missing_slo_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_slos(str(tmp_path / "nope.yaml"))


# ---------------------------------------------------------------- the command


def test_cli_json_and_exit_codes(env_home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "report", "--json", "--since", "1h")
    data = json.loads(out)
    assert code == 0 and data["totals"]["runs"] == 7 and data["breached"] is False
    assert {r["workflow"] for r in data["runs"]} == {"support"}
    code, out, _ = cli(capsys, "report", "--slo", str(SHIPPED_SLO))
    assert code == 1 and "exhausted" in out and "Denials by rule" in out  # 4 unsafe runs in 7 > 0.1 %
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("slos:\n  - {name: mostly finished, indicator: finished, objective: 0.5, window: 1d}\n")
    code, out, _ = cli(capsys, "report", "--slo", str(lenient), "--workflow", "support")
    assert code == 0 and "mostly finished" in out and "ok" in out


def test_each_slo_keeps_its_own_window_whatever_since_says(env_home: Home) -> None:
    args = argparse.Namespace(since="1h", until=None, slo=str(SHIPPED_SLO), workflow=None, bucket="auto")
    rep = load_report(args, now=datetime.now(UTC) + timedelta(hours=2))
    assert rep.totals["runs"] == 0 and rep.series == ()
    by_name = {s.name: s for s in rep.slos}
    assert (by_name["no unsafe attempts"].good, by_name["no unsafe attempts"].total) == (3, 7)
    assert by_name["resolved or escalated by rule"].total == 6  # the waiting run does not count
    assert by_name["no unsafe attempts"].burn_rate is None  # nothing in the last hour


def test_cli_bad_input_exits_1_with_the_accepted_forms(env_home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "report", "--since", "last tuesday")
    assert code == 1 and "24h" in err and "ISO 8601" in err
    code, _, err = cli(capsys, "report", "--workflow", "nosuch")
    assert code == 1 and "support" in err


def test_html_dashboard_is_self_contained(env_home: Home, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "ops.html"
    code, out, _ = cli(capsys, "report", "--slo", str(SHIPPED_SLO), "--html", str(out_file))
    page = out_file.read_text()
    assert code == 1 and str(out_file) in out
    assert not re.search(r"https?://", page)
    assert "Denials by rule" in page and "tools.issue_refund.max_amount_usd" in page
    assert ("data:image/png;base64," in page) == plots_available()
    if plots_available():
        assert page.count("<img") == 4  # outcomes, latency, spend per resolved run, budget burn


def test_an_empty_ledger_reports_no_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "empty"))
    out_file = tmp_path / "empty.html"
    code, out, _ = cli(capsys, "report", "--slo", str(SHIPPED_SLO), "--html", str(out_file))
    assert code == 0 and "No runs yet" in out and "no data" in out
    assert "No runs yet" in out_file.read_text()
    code, out, _ = cli(capsys, "report", "--json")
    assert code == 0 and json.loads(out)["totals"]["runs"] == 0 and json.loads(out)["series"] == []


def test_renderings_of_constructed_runs() -> None:
    rep = build_report(summarize_runs(day_rows(), catalog=FACTS), now=NOW + timedelta(hours=3),
                       slos=[SloSpec(name="fin", indicator="finished", objective=0.99, window="1d")])
    text = render_text(rep)
    assert "Needs attention" in text and "boom" in text and "exhausted" in text
    assert "fin" in render_html(rep)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server (skipped locally without one, failed under CI)."""
    base = os.environ.get("TETHER_TEST_PG_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail('TETHER_TEST_PG_URL is not set but CI is: eval "$(.ci/start-postgres.sh)" first')
        pytest.skip("PostgreSQL not available: set TETHER_TEST_PG_URL")
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgres
def test_a_postgresql_ledger_gives_the_same_report(played: Home, pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger.open(played.ledger_url) as src, Ledger.open(pg_url) as dst:
        for e in src.iter_events():
            dst.append(LedgerEvent(**e.model_dump(include=set(LedgerEvent.model_fields))))
    monkeypatch.setenv("TETHER_HOME", str(played.root))
    code, out, _ = cli(capsys, "report", "--json")
    on_sqlite = json.loads(out)
    monkeypatch.setenv("TETHER_LEDGER_URL", pg_url)
    code_pg, out_pg, _ = cli(capsys, "report", "--json")
    on_pg = json.loads(out_pg)
    assert (code, code_pg) == (0, 0) and on_pg["ledger"].startswith("postgresql")
    assert on_pg["totals"] == on_sqlite["totals"] and on_pg["top_denials"] == on_sqlite["top_denials"]
    assert [r["outcome"] for r in on_pg["runs"]] == [r["outcome"] for r in on_sqlite["runs"]]
