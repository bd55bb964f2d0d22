"""``tether eval`` and ``tether report``: regression suites, canary gates, the operations report.

    tether eval run SUITE [--model offline|replay:CASSETTE|openai:NAME] [--policy FILE] [--jobs N]
                          [--faults PROFILE[,PROFILE...]] [--record CASSETTE] [--out FILE]
    tether eval compare BASELINE.json CANDIDATE.json [--gates FILE] [--md FILE] [--html FILE]
    tether report [--since WHEN] [--slo FILE] [--html FILE]

``SUITE`` is a suite file (YAML or JSONL) or the name of a workflow that ships one. Every
command takes ``--json``. Exit codes: 0 when everything passed, 1 when a task of the clean run
failed (runs under ``--faults`` profiles are measured, not gated), a gate
or SLO was breached, and 1 with a message on stderr for bad input (as every ``tether`` command).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_eval_commands"]


def _run(args: argparse.Namespace) -> int:
    from tether.evals.run import cmd_eval_run

    return cmd_eval_run(args)


def _compare(args: argparse.Namespace) -> int:
    from tether.evals.compare import cmd_eval_compare

    return cmd_eval_compare(args)


def _report(args: argparse.Namespace) -> int:
    from tether.evals.ops import cmd_report

    return cmd_report(args)


def add_eval_commands(sub: Any) -> None:
    """Add ``eval run``, ``eval compare`` and ``report`` to the ``tether`` parser's subcommands."""

    def add(parent: Any, name: str, fn: Any, helptext: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    ev = sub.add_parser("eval", help="regression suites and canary gates").add_subparsers(dest="sub", required=True)
    r = add(ev, "run", _run, "run a suite's tasks and write a versioned results file")
    r.add_argument("suite", help="a suite file (.yaml/.yml/.jsonl) or a workflow that ships one")
    r.add_argument("--model", default="offline",
                   help="offline (the workflows' own offline models), replay:CASSETTE, or a model id "
                        "such as openai:gpt-4o-mini for the reasoning model")
    r.add_argument("--router-model", help="model id for the router (default: the workflow's, or the cassette)")
    r.add_argument("--policy", help="policy file to enforce instead of each workflow's own")
    r.add_argument("--prompt", help="system prompt file to use instead of the workflow's own")
    r.add_argument("--jobs", type=int, default=1, help="tasks run in parallel (processes; default 1)")
    r.add_argument("--faults", help="comma-separated fault profiles of the suite to run next to the clean run")
    r.add_argument("--seed", type=int, default=0, help="seed for the fault profiles (default 0)")
    r.add_argument("--record", metavar="CASSETTE", help="record every model request and response here")
    r.add_argument("--task", action="append", metavar="ID", help="only this task (repeatable)")
    r.add_argument("--out", help="results file (default: $TETHER_HOME/evals/<suite>-<time>.json)")
    r.add_argument("--keep", action="store_true", help="keep each task's data directory")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (shown only when stderr is a terminal)")
    c = add(ev, "compare", _compare, "compare two results files; exit 1 when a gate is breached")
    c.add_argument("baseline")
    c.add_argument("candidate")
    c.add_argument("--gates", help="gates file (YAML); default: report the deltas, gate nothing")
    c.add_argument("--md", metavar="FILE", help="write the Markdown report here")
    c.add_argument("--html", metavar="FILE", help="write the self-contained HTML report here")
    rp = add(sub, "report", _report, "operations report over the ledger")
    rp.add_argument("--since", help="ISO time, or a span back from now such as 24h, 7d (default: all)")
    rp.add_argument("--until", help="ISO time (default: now)")
    rp.add_argument("--workflow", help="only this workflow's runs")
    rp.add_argument("--slo", metavar="FILE", help="SLO file (YAML): targets and error budgets")
    rp.add_argument("--bucket", default="auto", help="time bucket for the series: 1h, 1d, ... (default: auto)")
    rp.add_argument("--html", metavar="FILE", help="write the self-contained HTML dashboard here")
