"""Canary gates: compare two results files of ``tether eval run`` and decide whether the
candidate may ship.

    tether eval compare baseline.json candidate.json --gates gates.yaml --md report.md --html report.html

``--gates`` is a gates file (``tether.evals.gates``: one criterion per gate, e.g.
``{metric: task_success, max_drop: 0.02}``); without one the deltas are reported, nothing gated.
``profile`` defaults to ``clean``; ``"*"`` means every profile present in both runs. A gate
that cannot be checked (its profile is missing from a run, or the candidate has no value where
the baseline has one) fails: a gate never passes silently. The comparison also lists the
tasks that flipped (with the candidate's problems) and every version that changed between the
runs (policy, prompt, tool schemas, models, suite, libraries), so the reader sees why.

Both runs must be of the same suite. Runs of differently named suites are compared only when
their task ids overlap; runs whose task sets differ (``--task`` subsets) are compared with a
note: metric values are each run's own (over its own tasks), per-task flips cover the common
tasks only.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tether.errors import TetherError
from tether.evals.gates import PER_TASK, Gate, GatesFile, GatesFileError, format_number, load_gates
from tether.evals.metrics import METRICS
from tether.evals.results_file import SCHEMA_VERSION, Results, ResultsFileError, load_results
from tether.evals.versions import flatten_versions

__all__ = [
    "SCHEMA_VERSION",
    "CompareError",
    "Comparison",
    "Flip",
    "Gate",
    "GatesFile",
    "GatesFileError",
    "MetricRow",
    "Results",
    "ResultsFileError",
    "Value",
    "Verdict",
    "VersionChange",
    "cmd_eval_compare",
    "compare",
    "load_gates",
    "load_results",
    "render_html",
    "render_markdown",
]

_EPS = 1e-9


class CompareError(TetherError):
    """The two runs cannot be compared."""

    def __init__(self, *, baseline: str, candidate: str, reason: str) -> None:
        self.baseline = baseline
        self.candidate = candidate
        self.reason = reason
        super().__init__(f"cannot compare {baseline} with {candidate}: {reason}")


# ---------------------------------------------------------------- the comparison


@dataclass(frozen=True, kw_only=True, slots=True)
class Value:
    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricRow:
    """One metric of one profile in both runs."""

    profile: str
    metric: str
    better: str
    method: str
    baseline: Value
    candidate: Value
    delta: float | None
    overlap: bool | None
    """Whether the two 95 % intervals overlap (None when either is missing)."""

    @property
    def worse(self) -> bool:
        return self.delta is not None and (self.delta < -_EPS if self.better == "higher" else self.delta > _EPS)


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    gate: Gate
    profile: str
    status: Literal["pass", "breach", "unverified"]
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True, kw_only=True, slots=True)
class Flip:
    """A task whose success changed between the runs."""

    id: str
    profile: str
    category: str
    direction: Literal["regressed", "fixed"]
    problems: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionChange:
    key: str
    baseline: str | None
    candidate: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    baseline: Results
    candidate: Results
    rows: tuple[MetricRow, ...]
    verdicts: tuple[Verdict, ...]
    flips: tuple[Flip, ...]
    changes: tuple[VersionChange, ...]
    notes: tuple[str, ...]
    categories: Mapping[str, Mapping[str, tuple[tuple[int, int], tuple[int, int]]]]
    """Per common profile, per task category: (successes, tasks) in the baseline and the candidate."""

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def breached(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if not v.passed)

    def to_json(self) -> dict[str, Any]:
        side = {k: {"path": r.path, "suite": r.suite, "suite_version": r.suite_version, "run_id": r.run_id,
                    "profiles": list(r.profiles)} for k, r in (("baseline", self.baseline),
                                                               ("candidate", self.candidate))}
        return {**side, "passed": self.passed,
                "verdicts": [{"gate": v.gate.model_dump(exclude_defaults=True), "profile": v.profile,
                              "status": v.status, "reason": v.reason} for v in self.verdicts],
                "metrics": [asdict(r) for r in self.rows], "flips": [asdict(f) for f in self.flips],
                "changes": [asdict(c) for c in self.changes], "notes": list(self.notes),
                "categories": {p: {c: {"baseline": list(b), "candidate": list(k)} for c, (b, k) in cats.items()}
                               for p, cats in self.categories.items()}}


_num = format_number


def _value(m: Mapping[str, Any] | None) -> Value:
    def f(k: str) -> float | None:
        x = (m or {}).get(k)
        return float(x) if isinstance(x, int | float) and not math.isnan(float(x)) else None
    return Value(value=f("value"), low=f("low"), high=f("high"), n=int((m or {}).get("n") or 0))


def _row(profile: str, metric: str, b: Results, c: Results) -> MetricRow:
    bm, cm = b.metrics[profile][metric], c.metrics[profile][metric]
    bv, cv = _value(bm), _value(cm)
    delta = cv.value - bv.value if bv.value is not None and cv.value is not None else None
    overlap = None
    if None not in (bv.low, bv.high, cv.low, cv.high):
        overlap = bool(bv.low <= cv.high + _EPS and cv.low <= bv.high + _EPS)  # type: ignore[operator]
    return MetricRow(profile=profile, metric=metric, better=METRICS[metric], method=str(bm.get("method", "")),
                     baseline=bv, candidate=cv, delta=delta, overlap=overlap)


def _interval(v: Value) -> str:
    return f"[{_num(v.low)}, {_num(v.high)}]"


def _relative(gate: Gate, row: MetricRow) -> tuple[str, str]:
    """(status, reason) of a max_drop/max_increase gate with both values present."""
    kind, limit = gate.criterion, float(getattr(gate, gate.criterion))
    b, c = float(row.baseline.value), float(row.candidate.value)  # type: ignore[arg-type]
    change = (b - c) if kind.startswith("max_drop") else (c - b)
    word = "dropped" if kind.startswith("max_drop") else "rose"
    where = f"{gate.metric} ({row.profile})"
    if kind.endswith("_pct"):
        amount = math.inf if b == 0 and change > _EPS else (0.0 if b == 0 else change / abs(b) * 100)
        said, allowed = f"{_num(amount)} %", f"{_num(limit)} %"
    else:
        amount, said, allowed = change, _num(change), _num(limit)
    if amount <= limit + _EPS:
        verb = word if change > _EPS else ("did not change" if abs(change) <= _EPS else "improved")
        return "pass", (f"{where} {verb}" + (f" {said}" if change > _EPS else "")
                        + f" ({_num(b)} -> {_num(c)}), within the allowed {allowed}.")
    text = f"{where} {word} {said} ({_num(b)} -> {_num(c)}); at most {allowed} is allowed"
    if gate.significant:
        if row.overlap is None:
            return "pass", text + ", but an interval is missing, so significance cannot be shown."
        if row.overlap:
            return "pass", (text + f", but the 95 % intervals overlap ({_interval(row.baseline)} and "
                            f"{_interval(row.candidate)}): not significant.")
        return "breach", (text + f" and the 95 % intervals are disjoint ({_interval(row.baseline)} and "
                          f"{_interval(row.candidate)}).")
    return "breach", text + "."


def _judge(gate: Gate, row: MetricRow) -> Verdict:
    where = f"{gate.metric} ({row.profile})"
    kind, b, c = gate.criterion, row.baseline.value, row.candidate.value

    def verdict(status: Literal["pass", "breach", "unverified"], reason: str) -> Verdict:
        return Verdict(gate=gate, profile=row.profile, status=status, reason=reason)

    if c is None:
        if b is None:
            return verdict("pass", f"{where} has no data in either run (n = 0), nothing to gate.")
        return verdict("unverified", f"{where} has no value in the candidate (n = 0) but {_num(b)} in the "
                                     "baseline; the gate cannot be checked.")
    if kind in ("min", "max"):
        limit = float(getattr(gate, kind))
        ok = c >= limit - _EPS if kind == "min" else c <= limit + _EPS
        rel = "at least" if kind == "min" else "at most"
        return verdict("pass" if ok else "breach", f"{where} is {_num(c)} in the candidate; it must be "
                                                   f"{rel} {_num(limit)}.")
    if b is None:
        return verdict("pass", f"{where} has no baseline value (n = 0); candidate {_num(c)}, nothing to "
                               "compare against.")
    status, reason = _relative(gate, row)
    return verdict(status, reason)  # type: ignore[arg-type]


def _per_task(gate: Gate, profile: str, b: Results, c: Results) -> Verdict:
    field = PER_TASK[gate.metric]
    cand = {str(t["id"]): t for t in c.tasks if t["profile"] == profile}
    held = [str(t["id"]) for t in b.tasks if t["profile"] == profile and t.get(field)]
    common = [i for i in held if i in cand]
    lost = [i for i in common if not cand[i].get(field)]
    what = "succeeded" if field == "success" else "kept process integrity"
    if lost:
        return Verdict(gate=gate, profile=profile, status="breach", reason=(
            f"{len(lost)} of {len(common)} task(s) that {what} in the baseline fail in the candidate "
            f"({profile}): {', '.join(lost)}."))
    gone = len(held) - len(common)
    return Verdict(gate=gate, profile=profile, status="pass", reason=(
        f"every one of the {len(common)} task(s) that {what} in the baseline still does ({profile})"
        + (f"; {gone} of them are not in the candidate." if gone else ".")))


def _changes(b: Results, c: Results) -> tuple[VersionChange, ...]:
    def flat(r: Results) -> dict[str, str]:
        out = flatten_versions(r.versions)
        out.update({f"run.{k}": str(r.run[k]) for k in ("model", "seed") if k in r.run})
        return out
    fb, fc = flat(b), flat(c)
    return tuple(VersionChange(key=k, baseline=fb.get(k), candidate=fc.get(k))
                 for k in sorted(fb.keys() | fc.keys()) if fb.get(k) != fc.get(k))


def _flips(b: Results, c: Results) -> tuple[Flip, ...]:
    cand = {(str(t["id"]), str(t["profile"])): t for t in c.tasks}
    out = []
    for t in b.tasks:
        other = cand.get((str(t["id"]), str(t["profile"])))
        if other is None or bool(t["success"]) == bool(other["success"]):
            continue
        out.append(Flip(id=str(t["id"]), profile=str(t["profile"]), category=str(other.get("category", "")),
                        direction="fixed" if other["success"] else "regressed",
                        problems=tuple(str(p) for p in other.get("problems") or ())))
    return tuple(sorted(out, key=lambda f: (f.direction != "regressed", f.profile, f.id)))


def _categories(profiles: Sequence[str], b: Results,
                c: Results) -> dict[str, dict[str, tuple[tuple[int, int], tuple[int, int]]]]:
    out: dict[str, dict[str, tuple[tuple[int, int], tuple[int, int]]]] = {}
    for prof in profiles:
        counts: dict[str, list[int]] = {}
        for i, r in enumerate((b, c)):
            for t in r.tasks:
                if t["profile"] == prof and t.get("category"):
                    slot = counts.setdefault(str(t["category"]), [0, 0, 0, 0])
                    slot[2 * i] += bool(t["success"])
                    slot[2 * i + 1] += 1
        if counts:
            out[prof] = {k: ((v[0], v[1]), (v[2], v[3])) for k, v in sorted(counts.items())}
    return out


def _notes(b: Results, c: Results) -> list[str]:
    kb, kc = b.task_keys(), c.task_keys()
    ids_b, ids_c = {i for i, _ in kb}, {i for i, _ in kc}
    if b.suite != c.suite and not ids_b & ids_c:
        raise CompareError(baseline=b.path, candidate=c.path, reason=(
            f"they ran different suites ({b.suite!r} and {c.suite!r}) with no task in common; "
            "compare two runs of the same suite"))
    notes = []
    if b.suite != c.suite:
        notes.append(f"the runs are of different suites ({b.suite} and {c.suite}); "
                     f"{len(ids_b & ids_c)} task id(s) are in both")
    elif b.suite_version != c.suite_version:
        notes.append(f"suite version changed: {b.suite_version} -> {c.suite_version}")
    if kb != kc:
        notes.append(f"the runs cover different tasks: {len(kb - kc)} only in the baseline, {len(kc - kb)} only "
                     f"in the candidate, {len(kb & kc)} in both; metric values are each run's own, per-task "
                     "flips cover the common tasks")
    only = sorted(set(b.profiles) ^ set(c.profiles))
    if only:
        notes.append(f"profiles in one run only: {', '.join(only)}")
    return notes


def compare(baseline: Results, candidate: Results, gates: GatesFile | Sequence[Gate] | None = None) -> Comparison:
    """Every metric of every profile common to both runs, the gates' verdicts, the flipped
    tasks and the version changes. Raises ``CompareError`` for runs of unrelated suites."""
    notes = _notes(baseline, candidate)
    common = [p for p in baseline.profiles if p in candidate.profiles]
    rows = {(p, m): _row(p, m, baseline, candidate) for p in common for m in METRICS}
    verdicts: list[Verdict] = []
    for gate in (gates.gates if isinstance(gates, GatesFile) else gates or ()):
        profiles = common if gate.profile == "*" else [gate.profile]
        for prof in profiles:
            if prof not in common:
                lacking = " and ".join(n for n, r in (("baseline", baseline), ("candidate", candidate))
                                       if prof not in r.profiles)
                verdicts.append(Verdict(gate=gate, profile=prof, status="unverified", reason=(
                    f"profile {prof!r} is not in the {lacking} (baseline: {', '.join(baseline.profiles)}; "
                    f"candidate: {', '.join(candidate.profiles)}); run it with --faults {prof}.")))
            elif gate.per_task:
                verdicts.append(_per_task(gate, prof, baseline, candidate))
            else:
                verdicts.append(_judge(gate, rows[(prof, gate.metric)]))
    return Comparison(baseline=baseline, candidate=candidate, rows=tuple(rows.values()), verdicts=tuple(verdicts),
                      flips=_flips(baseline, candidate), changes=_changes(baseline, candidate), notes=tuple(notes),
                      categories=_categories(common, baseline, candidate))


def render_markdown(comparison: Comparison) -> str:
    """The comparison as a Markdown report (verdict, changes, gates, metrics, flipped tasks)."""
    from tether.evals.compare_report import markdown

    return markdown(comparison)


def render_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page with the delta plots inlined."""
    from tether.evals.compare_report import html_page

    return html_page(comparison)


def cmd_eval_compare(args: argparse.Namespace) -> int:
    """``tether eval compare``: 1 when a gate is breached or cannot be checked, else 0."""
    from tether.evals.compare_report import terminal

    gates = load_gates(args.gates) if getattr(args, "gates", None) else None
    result = compare(load_results(args.baseline), load_results(args.candidate), gates)
    for attr, render in (("md", render_markdown), ("html", render_html)):
        target = getattr(args, attr, None)
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(render(result), encoding="utf-8")
    if getattr(args, "json", False):
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(terminal(result))
    return 0 if result.passed else 1
