"""The ``tether`` command line.

    tether demo                                   play the support-desk scenarios offline
    tether run support "TEXT" --customer C --thread T
    tether approvals list | tether approve ID [--edit JSON] | tether reject ID --reason R
    tether resume THREAD
    tether policy check FILE
    tether ledger show THREAD

Human-readable tables by default, ``--json`` for scripts. Exit codes: 0 success, 1 a tether
error (message on stderr says what to do), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from tether.errors import TetherError

__all__ = ["main", "table"]


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table; cells are cut at 60 characters."""
    cells = [[_cut(str(c)) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _cut(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _emit(args: argparse.Namespace, data: Any, human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(human)


def _desk() -> Any:
    from tether.agents.support.desk import SupportDesk

    return SupportDesk()


def _result_data(r: Any) -> dict[str, Any]:
    return {
        "thread_id": r.thread_id,
        "status": r.status,
        "route": r.route,
        "outcome": r.outcome.model_dump(mode="json") if r.outcome else None,
        "waiting_for": [w.model_dump(mode="json") for w in r.waiting_for],
    }


def _result_text(r: Any) -> str:
    lines = [f"thread {r.thread_id}: {r.status} (route: {r.route})"]
    if r.outcome is not None:
        if r.outcome.kind == "resolved":
            lines.append(f"answer: {r.outcome.answer}")
        else:
            lines.append(f"escalated ({r.outcome.action.value}) by {r.outcome.rule_id}: {r.outcome.reason}")
            if r.outcome.ticket_id:
                lines.append(f"ticket: {r.outcome.ticket_id}")
    for w in r.waiting_for:
        lines.append(f"waiting for approval {w.approval_id}: {w.tool} — {w.preview}")
        lines.append(f"  rule {w.rule_id}: {w.reason}")
        lines.append(f"  decide with: tether approve {w.approval_id}  |  tether reject {w.approval_id} --reason ...")
    return "\n".join(lines)


def ledger_rows(events: Sequence[Any]) -> list[list[Any]]:
    return [
        [e.seq, e.ts[11:19], e.event, e.tool or "", e.decision or "", e.rule_id or "",
         e.approver or "", _ledger_detail(e)]
        for e in events
    ]


LEDGER_HEADERS = ("seq", "time", "event", "tool", "decision", "rule", "approver", "detail")


def _ledger_detail(e: Any) -> str:
    if e.event in ("executed",) and e.result is not None:
        return json.dumps(e.result, default=str)
    if e.event in ("proposed", "edited") and e.args is not None:
        return json.dumps(e.args, default=str)
    return e.error or e.detail or ""


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    if args.workflow != "support":
        raise TetherError(f"unknown workflow {args.workflow!r}; available: support")
    with _desk() as desk:
        r = desk.run(args.text, customer_id=args.customer, thread_id=args.thread)
        _emit(args, _result_data(r), _result_text(r))
    return 0


def cmd_approvals_list(args: argparse.Namespace) -> int:
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home

    with Ledger.open(Home.from_env().ensure().ledger_url) as ledger:
        pending = ledger.approvals(status=None if args.all else "pending")
    rows = [[a.approval_id, a.thread_id, a.tool, json.dumps(a.args), a.rule_id, a.status] for a in pending]
    _emit(args, [a.model_dump(mode="json") for a in pending],
          table(rows, ("id", "thread", "tool", "args", "rule", "status")) if rows else "no pending approvals")
    return 0


def _decide(args: argparse.Namespace, decision: Any) -> int:
    with _desk() as desk:
        appr = desk.decide(args.approval_id, decision)
        if args.no_resume:
            _emit(args, appr.model_dump(mode="json"), f"{appr.approval_id}: {appr.status}")
            return 0
        r = desk.resume(appr.thread_id)
        _emit(args, _result_data(r), f"{appr.approval_id}: {appr.status} by {appr.decided_by}\n" + _result_text(r))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from tether.graphs.state import Approve, Edit

    if args.edit:
        try:
            patch = json.loads(args.edit)
        except ValueError as exc:
            raise TetherError(f"--edit must be a JSON object, e.g. '{{\"amount_usd\": 20}}': {exc}") from None
        if not isinstance(patch, dict) or not patch:
            raise TetherError("--edit must be a non-empty JSON object of argument changes")
        return _decide(args, Edit(approver=args.approver, args=patch))
    return _decide(args, Approve(approver=args.approver, comment=args.comment or ""))


def cmd_reject(args: argparse.Namespace) -> int:
    from tether.graphs.state import Reject

    return _decide(args, Reject(approver=args.approver, reason=args.reason))


def cmd_resume(args: argparse.Namespace) -> int:
    with _desk() as desk:
        r = desk.resume(args.thread)
        _emit(args, _result_data(r), _result_text(r))
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from tether.guards.policy import Policy

    p = Policy.from_yaml(args.file)
    rows = [[name, "yes" if r.allowed else "no", r.max_amount_usd or "", r.require_approval_over_usd or "",
             "yes" if r.require_citation else "", ",".join(r.allowed_fields or ()), r.mode or "",
             "yes" if r.row_level_security else ""] for name, r in p.tools.items()]
    b = p.budgets
    human = (f"{args.file}: OK  version {p.version}\n"
             f"budgets: {b.max_wall_clock_seconds:g}s wall clock, {b.max_tool_calls} tool calls, "
             f"${b.max_model_spend_usd:g} model spend; on budget exceeded: "
             f"{p.escalation.on_budget_exceeded.value}\n"
             + table(rows, ("tool", "allowed", "max $", "approval over $", "cite", "fields", "mode", "rls")))
    _emit(args, {"file": args.file, "version": p.version, "policy": p.to_dict()}, human)
    return 0


def cmd_ledger_show(args: argparse.Namespace) -> int:
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home

    with Ledger.open(Home.from_env().ensure().ledger_url) as ledger:
        events = ledger.events(args.thread)
    if not events:
        raise TetherError(f"no ledger rows for thread {args.thread!r}")
    _emit(args, [e.model_dump(mode="json") for e in events], table(ledger_rows(events), LEDGER_HEADERS))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tether.agents.support.demo import run_demo

    return run_demo(json_out=args.json)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether", description="Governed, write-capable agents.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, helptext: str, parent: Any = sub) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    add("demo", cmd_demo, "play the support-desk scenarios offline")
    r = add("run", cmd_run, "start a request on a thread")
    r.add_argument("workflow")
    r.add_argument("text")
    r.add_argument("--customer", required=True, help="the customer the agent acts for, e.g. C-1042")
    r.add_argument("--thread", required=True)
    ap = sub.add_parser("approvals", help="approval queue").add_subparsers(dest="sub", required=True)
    al = add("list", cmd_approvals_list, "list pending approvals", ap)
    al.add_argument("--all", action="store_true", help="include decided approvals")
    for name, fn in (("approve", cmd_approve), ("reject", cmd_reject)):
        d = add(name, fn, f"{name} a pending action, then resume its thread")
        d.add_argument("approval_id")
        d.add_argument("--as", dest="approver", default=os.environ.get("TETHER_APPROVER") or os.environ.get("USER") or "operator")
        d.add_argument("--no-resume", action="store_true", help="record the decision only")
        if name == "approve":
            d.add_argument("--edit", help="JSON object of argument changes, re-checked by the policy")
            d.add_argument("--comment")
        else:
            d.add_argument("--reason", required=True)
    rs = add("resume", cmd_resume, "continue a paused thread")
    rs.add_argument("thread")
    pol = sub.add_parser("policy", help="policy files").add_subparsers(dest="sub", required=True)
    pc = add("check", cmd_policy_check, "validate a policy file", pol)
    pc.add_argument("file")
    led = sub.add_parser("ledger", help="the action ledger").add_subparsers(dest="sub", required=True)
    ls = add("show", cmd_ledger_show, "rows of one thread", led)
    ls.add_argument("thread")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except TetherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
