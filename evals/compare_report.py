"""Renderings of a ``Comparison``: the terminal table, Markdown, and a self-contained HTML page.

The HTML page plots, per profile, each metric's change from the baseline to the candidate with
a 95 % interval of the difference (MOVER: the two runs' interval half-widths combined in
quadrature, per side). Rates are shown in percentage points; means (seconds, dollars, counts per
task) in % of the baseline value. A per-category success chart follows when the tasks carry
categories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tether.cli import table as text_table
from tether.evals.compare import Comparison, MetricRow, Verdict, _num
from tether.evals.html import Figure, escape, page, table
from tether.evals.metrics import wilson_interval

__all__ = ["delta_interval", "html_page", "markdown", "short", "terminal"]

_GOOD, _BAD, _FLAT = "#1a7f37", "#cf222e", "#8c959f"


def delta_interval(row: MetricRow) -> tuple[float, float] | None:
    """A 95 % interval of ``candidate - baseline`` from the two runs' intervals (MOVER)."""
    b, c = row.baseline, row.candidate
    if None in (b.value, b.low, b.high, c.value, c.low, c.high) or row.delta is None:
        return None
    lo = row.delta - math.hypot(c.value - c.low, b.high - b.value)  # type: ignore[operator]
    hi = row.delta + math.hypot(c.high - c.value, b.value - b.low)  # type: ignore[operator]
    return lo, hi


def short(value: str | None) -> str:
    """A version value for display: hex digests cut to 12 characters, long paths to their ends."""
    if value is None:
        return "-"
    if len(value) >= 40 and all(ch in "0123456789abcdef" for ch in value.removeprefix("sha256:")):
        return value[: 12 + (7 if value.startswith("sha256:") else 0)] + "…"
    if len(value) > 60 and "/" in value:
        return value[:18] + "…" + value[-40:]
    return value


def _fmt(v: MetricRow, side: str) -> str:
    x = v.baseline if side == "b" else v.candidate
    return "-" if x.value is None else f"{_num(x.value)} [{_num(x.low)}, {_num(x.high)}] n={x.n}"


def _delta(row: MetricRow) -> str:
    if row.delta is None:
        return "-"
    mark = " (worse)" if row.worse else ""
    return f"{row.delta:+.4g}{mark}"


def _verdict_line(c: Comparison) -> str:
    if not c.verdicts:
        return "NO GATES: deltas reported, nothing gated"
    if c.passed:
        return f"PASS: all {len(c.verdicts)} gate check(s) passed"
    return f"FAIL: {len(c.breached)} of {len(c.verdicts)} gate check(s) breached"


def _gate_rows(vs: Sequence[Verdict]) -> list[list[str]]:
    return [[v.status.upper(), v.gate.describe(), v.profile, v.reason] for v in vs]


def terminal(c: Comparison) -> str:
    """The comparison as plain-text tables."""
    out = [f"baseline  {c.baseline.suite} v{c.baseline.suite_version} run {c.baseline.run_id} ({c.baseline.path})",
           f"candidate {c.candidate.suite} v{c.candidate.suite_version} run {c.candidate.run_id} ({c.candidate.path})",
           "", _verdict_line(c)]
    out += [f"note: {n}" for n in c.notes]
    if c.changes:
        out += ["", "what changed:", text_table([[ch.key, short(ch.baseline), short(ch.candidate)]
                                                 for ch in c.changes], ["version", "baseline", "candidate"])]
    else:
        out += ["", "what changed: nothing (same policy, prompt, models, tools and suite)"]
    if c.verdicts:
        out += ["", text_table(_gate_rows(c.verdicts), ["verdict", "gate", "profile", "reason"])]
        for v in c.breached:
            out.append(f"{v.status}: {v.gate.describe()} [{v.profile}]: {v.reason}")
    out += ["", text_table([[r.metric, r.profile, _fmt(r, "b"), _fmt(r, "c"), _delta(r),
                             {True: "yes", False: "no", None: "-"}[r.overlap]] for r in c.rows],
                           ["metric", "profile", "baseline", "candidate", "delta", "overlap"])]
    if c.flips:
        out += ["", text_table([[f.direction, f.id, f.profile, "; ".join(f.problems) or "-"] for f in c.flips],
                               ["flip", "task", "profile", "candidate's problems"])]
    return "\n".join(out)


def _md_cell(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(c: Comparison) -> str:
    """The comparison as a Markdown document."""
    out = [f"# Eval comparison: {c.candidate.suite}", "",
           f"- baseline: `{c.baseline.path}` (run {c.baseline.run_id})",
           f"- candidate: `{c.candidate.path}` (run {c.candidate.run_id})", "", f"**{_verdict_line(c)}**", ""]
    out += [f"> note: {n}" for n in c.notes]
    out += ["", "## What changed", ""]
    out.append(_md_table(["version", "baseline", "candidate"], [[f"`{ch.key}`", short(ch.baseline),
                                                                short(ch.candidate)] for ch in c.changes])
               if c.changes else "Nothing: same policy, prompt, models, tools and suite.")
    if c.verdicts:
        out += ["", "## Gates", "", _md_table(["verdict", "gate", "profile", "reason"], _gate_rows(c.verdicts))]
    out += ["", "## Metrics", "", _md_table(
        ["metric", "profile", "baseline", "candidate", "delta", "intervals overlap"],
        [[r.metric, r.profile, _fmt(r, "b"), _fmt(r, "c"), _delta(r), {True: "yes", False: "no", None: "-"}[r.overlap]]
         for r in c.rows])]
    if c.flips:
        out += ["", "## Tasks that flipped", "", _md_table(
            ["flip", "task", "profile", "category", "candidate's problems"],
            [[f.direction, f.id, f.profile, f.category, "; ".join(f.problems) or "-"] for f in c.flips])]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML


def _bar_colour(row: MetricRow) -> str:
    if row.delta is None or abs(row.delta) < 1e-12:
        return _FLAT
    return _BAD if row.worse else _GOOD


def _delta_plot(rows: Sequence[MetricRow], profile: str) -> str:
    fig = Figure.new(width=10.5, height=3.9, cols=2)
    if fig is None:
        return ""
    panels = ((fig.axes[0], [r for r in rows if r.method == "wilson"], "rates: change in percentage points"),
              (fig.axes[1], [r for r in rows if r.method != "wilson"], "means: change in % of the baseline"))
    for ax, group, title in panels:
        names: list[str] = []
        vals: list[float] = []
        errs: list[list[float]] = [[], []]
        colours: list[str] = []
        skipped: list[str] = []
        for r in group:
            iv = delta_interval(r)
            if r.delta is None or iv is None:
                skipped.append(r.metric)
                continue
            scale = 100.0 if r.method == "wilson" else (100.0 / abs(r.baseline.value) if r.baseline.value else 0.0)
            if scale == 0.0:
                skipped.append(r.metric)
                continue
            names.append(r.metric)
            vals.append(r.delta * scale)
            errs[0].append(max(0.0, (r.delta - iv[0]) * scale))
            errs[1].append(max(0.0, (iv[1] - r.delta) * scale))
            colours.append(_bar_colour(r))
        ys = list(range(len(names)))
        ax.barh(ys, vals, xerr=errs, color=colours, capsize=3, ecolor="#57606a")
        ax.set_yticks(ys, names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="#1d232a", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        if skipped:
            ax.set_xlabel("no data: " + ", ".join(skipped), fontsize=7, color="#57606a")
    fig.figure.suptitle(f"{profile}: candidate minus baseline (green better, red worse; bars: 95 % interval)",
                        fontsize=10)
    return fig.img(f"metric deltas, profile {profile}")


def _category_plot(c: Comparison, profile: str) -> str:
    cats = c.categories.get(profile) or {}
    fig = Figure.new(width=7.5, height=3.2)
    if fig is None or not cats:
        return ""
    ax, names = fig.axes, list(cats)
    for i, (label, colour) in enumerate((("baseline", "#8c959f"), ("candidate", "#0969da"))):
        rates, lo, hi = [], [], []
        for name in names:
            k, n = cats[name][i]
            rate = k / n if n else 0.0
            low, high = wilson_interval(k, n) if n else (0.0, 0.0)
            rates.append(rate * 100)
            lo.append(max(0.0, (rate - low) * 100))
            hi.append(max(0.0, (high - rate) * 100))
        xs = [x + (i - 0.5) * 0.38 for x in range(len(names))]
        ax.bar(xs, rates, width=0.38, yerr=[lo, hi], capsize=3, color=colour, label=label, ecolor="#57606a")
    ax.set_xticks(range(len(names)), [f"{n}\n(n={cats[n][1][1]})" for n in names], fontsize=8)
    ax.set_ylim(0, 122)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_ylabel("task success %", fontsize=8)
    ax.legend(fontsize=8, loc="upper right", ncol=2, frameon=False)
    ax.set_title(f"{profile}: task success by category (95 % Wilson intervals)", fontsize=9)
    return fig.img(f"task success by category, profile {profile}")


def _banner(c: Comparison) -> str:
    colour, bg = ((_GOOD, "#dafbe1") if c.passed else (_BAD, "#ffebe9")) if c.verdicts else ("#9a6700", "#fff8c5")
    items = "".join(f"<li>{escape(v.gate.describe())} [{escape(v.profile)}]: {escape(v.reason)}</li>"
                    for v in c.breached)
    return (f'<div style="border:2px solid {colour};background:{bg};padding:.6rem 1rem;border-radius:6px">'
            f'<strong style="color:{colour};font-size:1.3rem">{escape(_verdict_line(c))}</strong>'
            + (f"<ul>{items}</ul>" if items else "") + "</div>")


def html_page(c: Comparison) -> str:
    """One self-contained HTML document: banner, what changed, gates, plots, metrics, flips."""
    parts = [_banner(c)]
    parts += [f'<p class="notice">{escape(n)}</p>' for n in c.notes]
    parts.append("<h2>What changed</h2>")
    parts.append(table(["version", "baseline", "candidate"], [[ch.key, short(ch.baseline), short(ch.candidate)]
                                                              for ch in c.changes])
                 if c.changes else "<p>Nothing: same policy, prompt, models, tools and suite.</p>")
    if c.verdicts:
        cls = [["ok" if v.passed else "bad", "", "", ""] for v in c.verdicts]
        parts += ["<h2>Gates</h2>", table(["verdict", "gate", "profile", "reason"], _gate_rows(c.verdicts),
                                          classes=cls)]
    profiles = list(dict.fromkeys(r.profile for r in c.rows))
    for prof in profiles:
        rows = [r for r in c.rows if r.profile == prof]
        parts.append(f"<h2>Profile {escape(prof)}</h2>")
        parts.append(_delta_plot(rows, prof))
        parts.append(_category_plot(c, prof))
        cls = [["", "", "", "bad" if r.worse else "", ""] for r in rows]
        parts.append(table(["metric", "baseline", "candidate", "delta", "intervals overlap"],
                           [[r.metric, _fmt(r, "b"), _fmt(r, "c"), _delta(r),
                             {True: "yes", False: "no", None: "-"}[r.overlap]] for r in rows],
                           numeric=(3,), classes=cls))
    if c.flips:
        parts.append("<h2>Tasks that flipped</h2>")
        parts.append(table(["flip", "task", "profile", "category", "candidate's problems"],
                           [[f.direction, f.id, f.profile, f.category, "; ".join(f.problems) or "-"]
                            for f in c.flips],
                           classes=[["bad" if f.direction == "regressed" else "ok"] for f in c.flips]))
    sub = (f"baseline {c.baseline.path} (run {c.baseline.run_id}) vs candidate {c.candidate.path} "
           f"(run {c.candidate.run_id})")
    return page(f"Eval comparison: {c.candidate.suite}", parts, subtitle=sub)
