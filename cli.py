"""The ``tether`` command line.

    tether demo [WORKFLOW ...]                    play the shipped workflows' scenarios offline
    tether workflows                              list the workflows this install can run
    tether run WORKFLOW 'TEXT' [--subject S] [--thread T] [--policy FILE] [--designate ID ...]
    tether approvals list | tether approve ID [--edit JSON] | tether reject ID --reason R
    tether resume THREAD [--workflow W]
    tether policy check FILE
    tether policy explain FILE --tool T --args JSON [--workflow W] [--as ROLE] [--subject S]
    tether policy diff OLD NEW [--replay LEDGER_SQLITE_PATH]
    tether ledger show THREAD | verify [--anchor FILE] | anchor FILE | explain THREAD
    tether ledger export [--thread T] [-o FILE]
    tether kb ingest DIR | search 'QUERY' [--top N] | list   [--kb NAME]
    tether eval run SUITE [--jobs N] [--faults P,...] | eval compare BASE CAND [--gates FILE]
    tether report [--since 7d] [--slo FILE] [--html FILE]
    tether versions [WORKFLOW] [--diff OTHER]    prompt, tools, policy, routes, models, prices

Human-readable tables by default, ``--json`` for scripts (errors too: a JSON object on
stderr). Exit codes: 0 success, 1 a tether error (the message says what to do) or a broken
ledger chain, 2 bad usage. Every command goes through ``tether.Session``.
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


def _session(workflow: str, policy: str | None = None, principal: str | None = None,
             roles: tuple[str, ...] = ()) -> Any:
    from tether.graphs.session import Session

    return Session.open(workflow, policy=policy, principal=principal, roles=roles)


def _thread_workflow(thread: str) -> str | None:
    """The workflow a thread was started with (recorded in its checkpoints)."""
    import tether.graphs.state  # noqa: F401  (registers the state types the checkpoint holds)
    from tether.checkpoints.checkpointer import open_checkpointer
    from tether.config import Home

    with open_checkpointer(Home.from_env().ensure().checkpoint_url) as saver:
        found = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    return str(found.metadata.get("tether_workflow")) if found and found.metadata.get("tether_workflow") else None


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
        lines.append(
            f"  decide with: tether approve {w.approval_id}  |  tether reject {w.approval_id} --reason ..."
        )
    return "\n".join(lines)


def ledger_rows(events: Sequence[Any]) -> list[list[Any]]:
    return [
        [
            e.seq,
            e.ts[11:19],
            e.event,
            e.tool or "",
            e.decision or "",
            e.rule_id or "",
            e.approver or "",
            _ledger_detail(e),
        ]
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


def cmd_workflows(args: argparse.Namespace) -> int:
    from tether.graphs.registry import list_workflows

    rows, data = [], []
    for spec in list_workflows():
        with _session(spec.name) as s:
            wf = s.workflow
            routes = {r.name: list(r.tools) for r in wf.routes}
        data.append({"name": spec.name, "description": spec.description, "policy": str(spec.policy_path),
                     "routes": routes, "tools": wf.tools.names()})
        rows.append([spec.name, spec.description, spec.policy_path or "", ", ".join(routes),
                     ", ".join(wf.tools.names())])
    _emit(args, data, table(rows, ("name", "description", "policy", "routes", "tools")))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import uuid

    thread = args.thread or f"T-{uuid.uuid4().hex[:8]}"
    with _session(args.workflow, args.policy, args.principal, tuple(args.role or ())) as s:
        r = s.run(args.text, subject=args.subject, thread_id=thread, designated=tuple(args.designate or ()))
        _emit(args, _result_data(r), _result_text(r))
    return 0


def _approval_states() -> list[tuple[Any, str]]:
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home

    with Ledger.open(Home.from_env().ensure().ledger_url) as ledger:
        rows = ledger.approvals(status=None)
    return [(a, "expired" if a.status == "pending" and a.expired() else a.status) for a in rows]


def cmd_approvals_list(args: argparse.Namespace) -> int:
    shown = [(a, st) for a, st in _approval_states() if args.all or st in ("pending", "expired")]
    rows = [[a.approval_id, a.workflow or "", a.thread_id, a.tool, json.dumps(a.args), a.rule_id, st,
             a.expires_at or ""] for a, st in shown]
    _emit(
        args,
        [{**a.model_dump(mode="json"), "state": st} for a, st in shown],
        table(rows, ("id", "workflow", "thread", "tool", "args", "rule", "state", "expires"))
        if rows else "no pending approvals",
    )
    return 0


def _decide(args: argparse.Namespace, decision: Any) -> int:
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home

    with Ledger.open(Home.from_env().ensure().ledger_url) as ledger:
        appr = ledger.approval(args.approval_id)
    workflow = args.workflow or appr.workflow or _thread_workflow(appr.thread_id)
    if workflow is None:
        raise TetherError(f"cannot tell which workflow {appr.approval_id} belongs to; pass --workflow NAME")
    with _session(workflow, args.policy) as s:
        r = s.decide(args.approval_id, decision, resume=not args.no_resume)
        done = s.ledger.approval(args.approval_id)
        head = f"{done.approval_id}: {done.status} by {done.decided_by}"
        _emit(args, {"approval": done.model_dump(mode="json"), **_result_data(r)}, head + "\n" + _result_text(r))
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
        return _decide(args, Edit(approver=args.approver, args=patch, tool=args.tool))
    if args.tool:
        raise TetherError("--tool needs --edit with the new tool's complete arguments")
    return _decide(args, Approve(approver=args.approver, comment=args.comment or ""))


def cmd_reject(args: argparse.Namespace) -> int:
    from tether.graphs.state import Reject

    return _decide(args, Reject(approver=args.approver, reason=args.reason))


def cmd_resume(args: argparse.Namespace) -> int:
    workflow = args.workflow or _thread_workflow(args.thread)
    if workflow is None:
        raise TetherError(f"no thread {args.thread!r} here (or its workflow is unknown); "
                          "check the id (tether ledger show) or pass --workflow NAME")
    with _session(workflow, args.policy) as s:
        r = s.resume(args.thread)
        _emit(args, _result_data(r), _result_text(r))
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from tether.guards.policy import Policy

    p = Policy.from_yaml(args.file)
    rows = [
        [
            name,
            "yes" if r.allowed else "no",
            r.max_amount_usd or "",
            r.require_approval_over_usd or "",
            "yes" if r.require_citation else "",
            ",".join(r.allowed_fields or ()),
            r.mode or "",
            "yes" if r.row_level_security else "",
        ]
        for name, r in p.tools.items()
    ]
    b = p.budgets
    human = (
        f"{args.file}: OK  version {p.version}\n"
        f"budgets: {b.max_wall_clock_seconds:g}s wall clock, {b.max_tool_calls} tool calls, "
        f"${b.max_model_spend_usd:g} model spend; on budget exceeded: "
        f"{p.escalation.on_budget_exceeded.value}\n"
        + table(rows, ("tool", "allowed", "max $", "approval over $", "cite", "fields", "mode", "rls"))
    )
    _emit(args, {"file": args.file, "version": p.version, "policy": p.to_dict()}, human)
    return 0


def _decision_data(d: Any) -> dict[str, Any]:
    return d.model_dump(mode="json")  # type: ignore[no-any-return]


def _decision_text(d: Any) -> str:
    rows = [[m.effect, m.rule_id, m.reason] for m in d.matched]
    return f"decision: {d.kind} by {d.rule_id}\n{d.reason}\n" + table(rows, ("effect", "rule", "reason"))


def _traits(workflow: str | None) -> Any:
    """Tool name -> traits of a workflow's tools (``None``: guessed per call)."""
    if workflow is None:
        return {}
    with _session(workflow) as s:
        return {t.name: t.traits for t in s.workflow.tools.tools}


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from tether.guards.policy import Policy
    from tether.guards.shadow import shadow_evaluate
    from tether.tools.base import describe_args

    p = Policy.from_yaml(args.file)
    try:
        raw = json.loads(args.args)
    except ValueError as exc:
        raise TetherError(f"--args must be a JSON object, e.g. '{{\"amount_usd\": 40}}': {exc}") from None
    if not isinstance(raw, dict):
        raise TetherError("--args must be a JSON object of the tool's arguments")
    evidence = frozenset(args.evidence.split(",")) if args.evidence is not None else None
    action = describe_args(args.tool, raw, traits=_traits(args.workflow).get(args.tool), subject=args.subject,
                           principal=args.principal, evidence=evidence)
    d = p.evaluate(action, role=args.role)
    shadow = shadow_evaluate(p, action, role=args.role)
    data: dict[str, Any] = {"file": args.file, "version": p.version, "tool": args.tool,
                            "decision": _decision_data(d)}  # fmt: skip
    human = f"{args.file} ({p.version}): {args.tool} {json.dumps(raw)}\n" + _decision_text(d)
    if p.citation_gate(args.tool) is not None:  # no passages here: only retrieval is checked
        data["citations"] = {"checked": ["missing", "foreign"], "not_computed": ["irrelevant", "stale", "untrusted"]}
        human += ("\ncitations: checked 'missing' and 'foreign' only; 'irrelevant', 'stale' and 'untrusted' "
                  "were not computed (they need the retrieved passages; a run checks them)")
    if shadow is not None:
        data["shadow"] = shadow.model_dump(mode="json")
        human += f"\nshadow ({shadow.candidate_version}): " + _decision_text(shadow.candidate)
    _emit(args, data, human)
    return 0


def cmd_policy_diff(args: argparse.Namespace) -> int:
    from tether.guards.explain import diff_policies, replay_ledger
    from tether.guards.policy import Policy
    from tether.tools.base import describe_args

    old, new = Policy.from_yaml(args.old), Policy.from_yaml(args.new)
    changes = diff_policies(old, new)
    data: dict[str, Any] = {"old": {"file": args.old, "version": old.version},
                            "new": {"file": args.new, "version": new.version},
                            "changes": [{"key": c.key, "change": c.change, "old": c.old, "new": c.new}
                                        for c in changes]}  # fmt: skip
    lines = [f"{args.old} ({old.version}) -> {args.new} ({new.version}): {len(changes)} change(s)"]
    if changes:
        lines.append(table([[c.key, json.dumps(c.old), "→", json.dumps(c.new)] for c in changes],
                           ("key", "old", "", "new")))  # fmt: skip
    if args.replay:
        traits = _traits(args.workflow)

        def describe(tool: str, args: Any, *, subject: str | None, principal: str | None,
                     evidence: frozenset[str]) -> Any:
            return describe_args(tool, args, traits=traits.get(tool), subject=subject, principal=principal,
                                 evidence=evidence)

        count, flips = replay_ledger(args.replay, old, new, describe=describe)
        data["replay"] = {"ledger": args.replay, "replayed": count, "flips": [
            {"seq": f.seq, "thread_id": f.thread_id, "tool": f.tool, "args": f.args, "recorded": f.recorded,
             "old": _decision_data(f.old), "new": _decision_data(f.new)} for f in flips]}  # fmt: skip
        lines.append(f"replayed {count} proposed action(s) from {args.replay}: {len(flips)} would flip")
        if flips:
            lines.append(table([[f.seq, f.thread_id, f.tool, json.dumps(f.args), f.old.kind, f.new.kind,
                                 f.new.rule_id] for f in flips],
                               ("seq", "thread", "tool", "args", "old", "new", "new rule")))  # fmt: skip
    _emit(args, data, "\n".join(lines))
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


def _open_ledger() -> Any:
    from tether.checkpoints.ledger import Ledger
    from tether.config import Home

    return Ledger.open(Home.from_env().ensure().ledger_url)


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from tether.checkpoints.chain import Anchor

    try:
        anchor = Anchor.read(args.anchor) if args.anchor else None
    except (OSError, ValueError, KeyError) as exc:
        raise TetherError(f"cannot read anchor {args.anchor}: {exc}") from None
    with _open_ledger() as ledger:
        report = ledger.verify(anchor=anchor)
    data = {
        "ok": report.ok,
        "rows": report.rows,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "anchor": args.anchor,
        "problem": None
        if report.problem is None
        else {"kind": report.problem.kind, "seq": report.problem.seq, "reason": report.problem.reason},
    }
    _emit(args, data, report.describe())
    return 0 if report.ok else 1


def cmd_ledger_anchor(args: argparse.Namespace) -> int:
    with _open_ledger() as ledger:
        head = ledger.head()
    if args.file != "-":
        head.write(args.file)
    _emit(
        args,
        {"seq": head.seq, "row_hash": head.row_hash, "written_at": head.written_at},
        f"head seq {head.seq} {head.row_hash}" + (f" -> {args.file}" if args.file != "-" else ""),
    )
    return 0


def cmd_ledger_explain(args: argparse.Namespace) -> int:
    from tether.checkpoints.narrative import explain, render

    with _open_ledger() as ledger:
        events = ledger.events(args.thread)
    if not events:
        raise TetherError(f"no ledger rows for thread {args.thread!r}")
    story = explain(args.thread, events)
    _emit(args, story.to_dict(), render(story))
    return 0


def cmd_ledger_export(args: argparse.Namespace) -> int:
    out = open(args.output, "w") if args.output != "-" else sys.stdout  # noqa: SIM115
    n = 0
    try:
        with _open_ledger() as ledger:
            rows = ledger.events(args.thread) if args.thread else ledger.iter_events()
            for e in rows:
                out.write(json.dumps(e.model_dump(mode="json"), sort_keys=True) + "\n")
                n += 1
    except BrokenPipeError:  # `tether ledger export | head`
        sys.stderr.close()
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output != "-":
        print(f"{n} rows -> {args.output}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tether.config import Home
    from tether.evals.demo import run_demo
    from tether.graphs.registry import find_workflow, list_workflows

    specs = [find_workflow(n) for n in args.workflows] if args.workflows else list_workflows()
    return run_demo(specs, home=Home.from_env(), json_out=args.json,
                    table=lambda rows: table(ledger_rows(rows), LEDGER_HEADERS))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether", description="Governed, write-capable agents.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, helptext: str, parent: Any = sub) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    dm = add("demo", cmd_demo, "play the shipped workflows' scenarios offline")
    dm.add_argument("workflows", nargs="*", help="only these workflows (default: all)")
    add("workflows", cmd_workflows, "list the workflows this install can run")
    r = add("run", cmd_run, "start a request on a thread")
    r.add_argument("workflow", help="a name from `tether workflows`, or module:factory")
    r.add_argument("text")
    r.add_argument("--subject", "--customer", dest="subject", help="who the run acts for, e.g. C-1042")
    r.add_argument("--thread", help="thread id (default: a new one)")
    r.add_argument("--policy", help="policy file to enforce instead of the workflow's own")
    r.add_argument("--principal", help="agent principal the run acts as (policies with principals:)")
    r.add_argument("--role", action="append", help="a role the run holds (repeatable)")
    r.add_argument("--designate", action="append", metavar="ID",
                   help="a document the user points the run at, e.g. a ticket id (repeatable)")
    ap = sub.add_parser("approvals", help="approval queue").add_subparsers(dest="sub", required=True)
    al = add("list", cmd_approvals_list, "list pending approvals", ap)
    al.add_argument("--all", action="store_true", help="include decided approvals")
    for name, fn in (("approve", cmd_approve), ("reject", cmd_reject)):
        d = add(name, fn, f"{name} a pending action, then resume its thread")
        d.add_argument("approval_id")
        d.add_argument(
            "--as",
            dest="approver",
            default=os.environ.get("TETHER_APPROVER") or os.environ.get("USER") or "operator",
        )
        d.add_argument("--no-resume", action="store_true", help="record the decision only")
        d.add_argument("--workflow", help="the workflow of the approval's thread (default: as recorded)")
        d.add_argument("--policy", help="the policy file the thread runs under (default: the workflow's)")
        if name == "approve":
            d.add_argument("--edit", help="JSON object of argument changes, re-checked by the policy")
            d.add_argument("--tool", help="with --edit: run this tool instead (args are then complete)")
            d.add_argument("--comment")
        else:
            d.add_argument("--reason", required=True)
    rs = add("resume", cmd_resume, "continue a paused thread")
    rs.add_argument("thread")
    rs.add_argument("--workflow", help="the thread's workflow (default: as recorded)")
    rs.add_argument("--policy", help="the policy file the thread runs under (default: the workflow's)")
    pol = sub.add_parser("policy", help="policy files").add_subparsers(dest="sub", required=True)
    pc = add("check", cmd_policy_check, "validate a policy file", pol)
    pc.add_argument("file")
    pe = add("explain", cmd_policy_explain, "show the decision for one tool call, running nothing", pol)
    pe.add_argument("file")
    pe.add_argument("--tool", required=True)
    pe.add_argument("--args", default="{}", help="JSON object of the tool's arguments")
    pe.add_argument("--as", dest="role", help="role the run holds (policies with roles:)")
    pe.add_argument("--principal", help="agent principal id (its roles come from principals:)")
    pe.add_argument("--subject", "--customer", dest="subject", help="who the run acts for, e.g. C-1042")
    pe.add_argument("--workflow", help="read argument meanings from this workflow's tools")
    pe.add_argument("--evidence", help="comma-separated evidence ids retrieved (default: all cited ones)")
    pd = add("diff", cmd_policy_diff, "changed rules between two policy files", pol)
    pd.add_argument("old")
    pd.add_argument("new")
    pd.add_argument("--replay", metavar="LEDGER_SQLITE_PATH", help="re-decide a ledger's proposed actions")
    pd.add_argument("--workflow", help="read argument meanings from this workflow's tools")
    led = sub.add_parser("ledger", help="the action ledger").add_subparsers(dest="sub", required=True)
    ls = add("show", cmd_ledger_show, "rows of one thread", led)
    ls.add_argument("thread")
    lv = add("verify", cmd_ledger_verify, "check the hash chain; exit 1 on any break", led)
    lv.add_argument("--anchor", help="anchor file from `tether ledger anchor` (detects a cut tail)")
    la = add("anchor", cmd_ledger_anchor, "write the current head to FILE ('-': print only)", led)
    la.add_argument("file")
    le = add("explain", cmd_ledger_explain, "narrate one thread end to end", led)
    le.add_argument("thread")
    lx = add("export", cmd_ledger_export, "write rows as JSON lines", led)
    lx.add_argument("--thread", help="only this thread")
    lx.add_argument("-o", "--output", default="-", help="file (default: stdout)")
    from tether.retrieval.cli import add_kb_commands

    add_kb_commands(sub)
    from tether.evals.versions_cli import add_versions_command

    add_versions_command(sub)
    from tether.evals.routing_eval import add_routing_command

    add_routing_command(sub)
    from tether.evals.cli import add_eval_commands

    add_eval_commands(sub)
    sub.add_parser("worker", help="drain the shared run queue on PostgreSQL (tether worker --help)")
    return p


def _error(args: argparse.Namespace, exc: TetherError) -> None:
    if getattr(args, "json", False):
        fields = {k: v for k, v in vars(exc).items() if isinstance(v, str | int | float | bool | None)}
        print(json.dumps({"error": type(exc).__name__, "message": str(exc), **fields}), file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:  # its own parser: `tether worker --help`
        from tether.graphs.worker import main as worker_main

        return worker_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        code = int(args.fn(args))
        sys.stdout.flush()
        return code
    except TetherError as exc:
        _error(args, exc)
        return 1
    except BrokenPipeError:  # `tether ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
