"""The operations report as terminal tables and as a self-contained HTML dashboard.

    from tether.evals.ops_html import render_html, render_text
    print(render_text(report))                       # outcomes, denials, tool errors, SLO burn
    Path("ops.html").write_text(render_html(report)) # the same, with plots over time

Plots (matplotlib, inlined as PNG): outcomes per bucket as stacked bars, latency p50/p95,
spend per resolved run, and each SLO's error budget spent against the 100 % line. Without
matplotlib the page keeps its tables and says how to add the plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tether.cli import table as text_table
from tether.evals.html import Figure, escape, page, table
from tether.evals.ops import Bucket, OpsReport, RunSummary, SloStatus

__all__ = ["attention", "headline", "render_html", "render_text"]

_OUTCOMES = ("resolved", "escalated", "waiting", "unfinished")
_COLORS = {"resolved": "#2da44e", "escalated": "#bf8700", "waiting": "#0969da", "unfinished": "#cf222e"}
_BURN_CAP = 200.0
_STATUS_CLASS = {"ok": "ok", "at risk": "warn", "exhausted": "bad", "no data": ""}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:.4f}"


def _sec(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _span(seconds: float) -> str:
    for unit, n in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


def attention(report: OpsReport, limit: int = 10) -> list[RunSummary]:
    """The latest runs an on-call engineer should look at: waiting, unfinished, or with a tool
    error or an unsafe attempt, newest first."""
    hot = [r for r in report.runs if r.outcome in ("waiting", "unfinished") or r.tool_errors or r.unsafe]
    return sorted(hot, key=lambda r: r.started_at, reverse=True)[:limit]


def _why(r: RunSummary) -> str:
    parts = [r.outcome] if r.outcome in ("waiting", "unfinished") else []
    parts += [f"{r.tool_errors} tool error(s)"] if r.tool_errors else []
    parts += [f"{r.unsafe} unsafe"] if r.unsafe else []
    return ", ".join(parts)


# ---------------------------------------------------------------- rows shared by both renderings


def _outcome_rows(report: OpsReport) -> list[list[Any]]:
    t, n = report.totals, report.totals["runs"]
    return [[o, int(t[o]), _pct(t[o] / n if n else None)] for o in _OUTCOMES]


def _number_rows(report: OpsReport) -> list[list[Any]]:
    t = report.totals
    return [
        ["spend", _usd(t["spend_usd"])], ["cost per resolved run", _usd(report.cost_per_resolved_usd)],
        ["latency p50 / p95", f"{_sec(report.latency_p50_s)} / {_sec(report.latency_p95_s)}"],
        ["policy denials", int(t["denials"])],
        ["approvals asked / approved / edited / rejected",
         f"{int(t['approvals_asked'])} / {int(t['approved'])} / {int(t['edited'])} / {int(t['rejected'])}"],
        ["tool errors", int(t["tool_errors"])], ["unsafe attempts (flagged outputs)",
                                                 f"{int(t['unsafe'])} ({int(t['flagged'])})"],
        ["writes executed", int(t["writes"])],
    ]


def _denial_rows(report: OpsReport) -> list[list[Any]]:
    return [[d.rule_id, d.count, ", ".join(d.tools)] for d in report.top_denials]


def _error_rows(report: OpsReport) -> list[list[Any]]:
    return [[e.tool, e.count, ", ".join(f"{c} ({n})" for c, n in e.codes), e.last_error]
            for e in report.top_tool_errors]


def _slo_rows(report: OpsReport) -> list[list[Any]]:
    return [[s.name, s.indicator, f"{s.good}/{s.total}", _pct(s.attainment), _pct(s.objective), s.window,
             _pct(s.budget_spent), "-" if s.burn_rate is None else f"{s.burn_rate:.2f}x", s.status]
            for s in report.slos]


def _attention_rows(report: OpsReport) -> list[list[Any]]:
    return [[r.started_at[:19].replace("T", " "), r.thread_id, r.workflow or "?", _why(r), _detail(r)]
            for r in attention(report)]


def _detail(r: RunSummary) -> str:
    if r.errors:
        return f"{r.errors[-1][0]}: {r.errors[-1][2]}"
    if r.denial_rules:
        return "denied by " + ", ".join(dict.fromkeys(r.denial_rules))
    return r.request or ""


_SLO_HEADERS = ("SLO", "indicator", "good/total", "attained", "objective", "window", "budget spent",
                "burn", "status")
_ATTENTION_HEADERS = ("started (UTC)", "thread", "workflow", "why", "detail")


def _scope(report: OpsReport) -> str:
    since = report.since[:19].replace("T", " ") if report.since else "the first run"
    until = report.until[:19].replace("T", " ")
    wf = f", workflow {report.workflow}" if report.workflow else ""
    return f"{int(report.totals['runs'])} run(s) from {since} to {until} UTC{wf}; ledger {report.ledger}"


def headline(report: OpsReport) -> str:
    """One line: the outcomes, and how many SLOs are exhausted or at risk."""
    t = report.totals
    line = ", ".join(f"{int(t[o])} {o}" for o in _OUTCOMES if t[o]) or "no runs"
    if report.slos:
        bad = {k: sum(s.status == k for s in report.slos) for k in ("exhausted", "at risk")}
        line += f"; SLOs: {bad['exhausted']} exhausted, {bad['at risk']} at risk of {len(report.slos)}"
    return line


def render_text(report: OpsReport) -> str:
    """Compact terminal tables."""
    out = [f"Operations report: {_scope(report)}", headline(report), *(f"note: {n}" for n in report.notes)]
    if not report.runs:
        out.append("No runs yet in this window: nothing to report. Runs appear here once a workflow "
                   "has handled a request (`tether run WORKFLOW 'TEXT'` or `tether demo`).")
    else:
        out += ["", text_table(_outcome_rows(report), ("outcome", "runs", "share")),
                "", text_table(_number_rows(report), ("measure", "value"))]
        if report.top_denials:
            out += ["", "Denials by rule", text_table(_denial_rows(report), ("rule", "denials", "tool"))]
        if report.top_tool_errors:
            out += ["", "Tool errors", text_table(_error_rows(report), ("tool", "errors", "codes", "last error"))]
        if attention(report):
            out += ["", "Needs attention", text_table(_attention_rows(report), _ATTENTION_HEADERS)]
    if report.slos:
        out += ["", "SLOs (budget spent over each window; burn over the last "
                f"{_span(report.slos[0].burn_window_s)})", text_table(_slo_rows(report), _SLO_HEADERS)]
        if report.breached:
            out.append("An error budget is exhausted: exit code 1.")
    return "\n".join(out)


# ---------------------------------------------------------------- plots


def _labels(series: Sequence[Bucket], bucket_seconds: float) -> list[str]:
    fmt = "%m-%d %H:%M" if bucket_seconds < 86400 else "%Y-%m-%d"
    return [datetime.fromisoformat(b.start).strftime(fmt) for b in series]


def _xaxis(ax: Any, labels: Sequence[str]) -> None:
    step = max(1, len(labels) // 12)
    ticks = list(range(0, len(labels), step))
    pad = max(0.0, (8 - len(labels)) / 2)  # a few buckets stay bar-sized, centred
    ax.set_xlim(-0.5 - pad, len(labels) - 0.5 + pad)
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=30, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _outcomes_plot(report: OpsReport, labels: Sequence[str]) -> str:
    fig = Figure.new(width=9, height=3.2)
    if fig is None:
        return ""
    ax, xs, bottom = fig.axes, range(len(labels)), [0] * len(labels)
    for o in _OUTCOMES:
        ys = [getattr(b, o) for b in report.series]
        ax.bar(xs, ys, bottom=bottom, color=_COLORS[o], label=o, width=0.8)
        bottom = [a + b for a, b in zip(bottom, ys, strict=True)]
    ax.set_ylabel("runs")
    ax.set_title("Outcomes per bucket", fontsize=10)
    ax.legend(fontsize=8, ncols=4, loc="upper left")
    ax.set_ylim(0, max([*bottom, 1]) * 1.25)
    _xaxis(ax, labels)
    return fig.img("outcomes over time")


def _line_plot(labels: Sequence[str], lines: dict[str, list[float | None]], *, title: str, ylabel: str,
               alt: str) -> str:
    fig = Figure.new(width=9, height=2.8)
    if fig is None:
        return ""
    ax = fig.axes
    for name, ys in lines.items():
        pts = [(i, y) for i, y in enumerate(ys) if y is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, label=name)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    _xaxis(ax, labels)
    return fig.img(alt)


def _burn_plot(slos: Sequence[SloStatus]) -> str:
    fig = Figure.new(width=9, height=0.5 + 0.45 * max(len(slos), 2))
    if fig is None:
        return ""
    ax = fig.axes
    names = [s.name for s in slos][::-1]
    spent = [100 * s.budget_spent for s in slos][::-1]
    colors = [{"exhausted": "#cf222e", "at risk": "#bf8700"}.get(s.status, "#2da44e") for s in slos][::-1]
    ax.barh(names, [min(x, _BURN_CAP) for x in spent], color=colors)  # past the cap: the label says
    for y, x in enumerate(spent):
        ax.text(min(x, _BURN_CAP) + 2, y, f"{x:.0f} %" if x < 1000 else f"{x:,.0f} %", va="center", fontsize=8)
    ax.axvline(100, color="#1d232a", linestyle="--", linewidth=1)
    ax.axvline(75, color="#bf8700", linestyle=":", linewidth=1)
    ax.set_xlim(0, _BURN_CAP * 1.2)
    ax.set_xlabel(f"error budget spent (%), bars cut at {_BURN_CAP:.0f} %; dashed: 100 % (exhausted), "
                  "dotted: 75 % (at risk)", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig.img("error budget spent per SLO")


def _plots(report: OpsReport) -> list[str]:
    if not report.series:
        return []
    labels = _labels(report.series, report.bucket_seconds)
    s = report.series
    return [
        "<h2>Over time</h2>", f'<p class="sub">bucket: {escape(_span(report.bucket_seconds))}</p>',
        _outcomes_plot(report, labels),
        _line_plot(labels, {"p50": [b.latency_p50_s for b in s], "p95": [b.latency_p95_s for b in s]},
                   title="Latency of finished runs (start to end)", ylabel="seconds", alt="latency p50 and p95"),
        _line_plot(labels, {"spend per resolved run": [b.spend_per_resolved_usd for b in s]},
                   title="Spend per resolved run", ylabel="USD", alt="spend per resolved run"),
    ]


def render_html(report: OpsReport) -> str:
    """One self-contained HTML page (tables, and plots when matplotlib is installed)."""
    cls = "bad" if report.breached else "warn" if any(s.status == "at risk" for s in report.slos) else "ok"
    sections = [f'<p class="{cls}">{escape(headline(report))}</p>',
                *(f'<p class="notice">{escape(n)}</p>' for n in report.notes)]
    if report.slos:
        classes = [[""] * 8 + [_STATUS_CLASS[s.status]] for s in report.slos]
        sections += ["<h2>SLOs and error budgets</h2>", _burn_plot(report.slos),
                     table(_SLO_HEADERS, _slo_rows(report), numeric=(2, 3, 4, 6, 7), classes=classes)]
    if not report.runs:
        sections.append('<p class="notice">No runs yet in this window: nothing to report. Runs appear '
                        "here once a workflow has handled a request.</p>")
        return page("Operations report", sections, subtitle=_scope(report))
    sections += ["<h2>Outcomes</h2>", table(("outcome", "runs", "share"), _outcome_rows(report), numeric=(1, 2)),
                 table(("measure", "value"), _number_rows(report), numeric=(1,)), *_plots(report),
                 "<h2>Denials by rule</h2>",
                 table(("rule", "denials", "tool"), _denial_rows(report), numeric=(1,))
                 if report.top_denials else "<p>No denials.</p>",
                 "<h2>Tool errors</h2>",
                 table(("tool", "errors", "codes", "last error"), _error_rows(report), numeric=(1,))
                 if report.top_tool_errors else "<p>No tool errors.</p>"]
    if attention(report):
        sections += ["<h2>Needs attention</h2>", table(_ATTENTION_HEADERS, _attention_rows(report))]
    return page("Operations report", sections, subtitle=_scope(report))
