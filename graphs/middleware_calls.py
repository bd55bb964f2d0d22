"""One governed tool call of a ``TetherMiddleware`` agent: check, ask, run once, record.

The call may run again from the top when the agent resumes (in this process or another):
every step before the interrupt is either free of side effects or recorded once (the
``proposed`` row is written only the first time a call's idempotency key is seen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.messages import ToolMessage
from langgraph.config import get_config
from langgraph.types import interrupt

from tether.checkpoints.ledger import args_hash
from tether.errors import ApprovalError
from tether.graphs.messages import DECISION_STATUS, action_id, jsonable, parse_decision, tool_reply
from tether.graphs.state import ApprovalRequest, Approve, Edit, Reject
from tether.guards.decisions import Allow, Deny, Escalate, RequireApproval
from tether.tools.base import ArgumentProblem, ToolContext, ToolSpec

if TYPE_CHECKING:
    from langchain.agents.middleware.types import ToolCallRequest

    from tether.graphs.middleware import TetherMiddleware

__all__ = ["govern_call"]

AnyDecision = Allow | Deny | RequireApproval | Escalate


def govern_call(mw: TetherMiddleware, request: ToolCallRequest) -> ToolMessage:
    """Decide, (maybe) ask, and run one tool call; every step leaves a ledger row."""
    from tether.graphs.middleware import find_call

    config = get_config()
    state: dict[str, Any] = dict(request.state)
    run = state.get("tether_run") or {}
    call = request.tool_call
    call_id, name, raw = str(call.get("id") or "call"), call["name"], jsonable(call.get("args") or {})
    msg_id, index = find_call(state["messages"], call_id)
    key = f"{config.get('configurable', {}).get('thread_id', 'default')}:{action_id(msg_id, index, call_id)}"
    rows = [r for r in mw.ledger.events(config.get("configurable", {}).get("thread_id", "default"))
            if r.idempotency_key == key]
    first = not any(r.event == "proposed" for r in rows)
    facts = {"tool_call_id": call_id, "tool": name, "idempotency_key": key}
    spec = mw.toolset.get(name)
    if spec is None:
        if first:
            mw._event(run, event="proposed", args=raw, decision="invalid", rule_id="default.unlisted_tool", **facts)
        return tool_reply(call_id, name, {"status": "denied", "rule_id": "default.unlisted_tool",
                                          "reason": f"no tool named {name!r} is governed here"})
    facts["tool_schema_version"] = spec.schema_version
    parsed = spec.parse(raw)
    if isinstance(parsed, ArgumentProblem):
        if first:
            mw._event(run, event="proposed", args=raw, decision="invalid", rule_id=f"schema.{name}",
                      error="; ".join(parsed.errors)[:1000], **facts)
        return tool_reply(call_id, name, {"status": "invalid_arguments", **parsed.model_dump(mode="json")})
    args = parsed.model_dump(mode="json")
    usage = mw._usage(request.state)  # type: ignore[arg-type]
    over = mw.policy.budgets.check_before_tool_call(usage.model_copy(update={"tool_calls": usage.tool_calls - 1}))
    if over is not None:
        if first:
            mw._event(run, event="budget_exceeded", rule_id=over.rule_id, detail=over.describe(), **facts)
        return tool_reply(call_id, name, {"status": "denied", "rule_id": over.rule_id, "reason": over.describe()})
    decision = mw.policy.evaluate(spec.describe(parsed, mw.context(config, state)))
    if first:
        mw._event(run, event="proposed", args=args, decision=decision.kind, rule_id=decision.rule_id,
                  matched_rules=tuple(m.rule_id for m in decision.matched), detail=decision.reason, **facts)
    if isinstance(decision, Deny | Escalate):
        status = "denied" if isinstance(decision, Deny) else "escalated"
        return tool_reply(call_id, name, {"status": status, "rule_id": decision.rule_id, "reason": decision.reason})
    approver: str | None = None
    if isinstance(decision, RequireApproval):
        asked = _ask(mw, run, spec, args, decision, facts, first=first)
        if isinstance(asked, ToolMessage):
            return asked
        spec, args, approver, approval_id = asked
        facts = {**facts, "tool": spec.name, "approval_id": approval_id}
    return _run_once(mw, run, spec, args, facts, approver=approver)


def _ask(mw: TetherMiddleware, run: dict[str, Any], spec: ToolSpec[Any, Any], args: dict[str, Any],
         decision: RequireApproval, facts: dict[str, Any], *, first: bool,
         ) -> ToolMessage | tuple[ToolSpec[Any, Any], dict[str, Any], str, str]:
    """Register the approval, pause, and apply the validated decision."""
    config = get_config()
    thread = str(config.get("configurable", {}).get("thread_id", "default"))
    preview = f"{spec.name}({args})"
    appr = mw.ledger.request_approval(
        thread_id=thread, run_id=str(run.get("run_id", "?")), tool_call_id=facts["idempotency_key"],
        tool=spec.name, args=args, preview=preview, rule_id=decision.rule_id, reason=decision.reason,
        policy_version=mw.policy.version, subject_id=None,
        ttl_seconds=mw.policy.approval_ttl_seconds)
    base = {**facts, "approval_id": appr.approval_id}
    if first:
        mw._event(run, event="approval_requested", args=args, rule_id=decision.rule_id, detail=preview, **base)
    req = ApprovalRequest(approval_id=appr.approval_id, thread_id=thread, tool_call_id=facts["tool_call_id"],
                          tool=spec.name, args=args, args_hash=args_hash(args), preview=preview,
                          rule_id=decision.rule_id, reason=decision.reason, policy_version=mw.policy.version,
                          expires_at=appr.expires_at)
    raw = interrupt(req)
    while True:
        try:
            human = parse_decision(raw, approval_id=appr.approval_id)
            edited = _check_edit(mw, spec, args, human, appr.approval_id) if isinstance(human, Edit) else None
            current = mw.ledger.approval(appr.approval_id)
            if current.status == "pending":
                mw.ledger.decide(appr.approval_id, status=DECISION_STATUS[human.kind], decided_by=human.approver,
                                 decision=human.model_dump(mode="json"))
                first_decision = True
            else:
                recorded = parse_decision(current.decision)
                if recorded.model_dump(mode="json") != human.model_dump(mode="json"):
                    raise ApprovalError(approval_id=appr.approval_id,
                                        reason=f"already {current.status}; decisions are final")
                first_decision = False
            break
        except ApprovalError as exc:  # nothing recorded: ask again, saying why
            raw = interrupt(req.model_copy(update={"refused": str(exc)}))
    row = {**base, "approver": human.approver}
    if isinstance(human, Reject):
        if first_decision:
            mw._event(run, event="rejected", args=args, detail=human.reason, **row)
        return tool_reply(facts["tool_call_id"], spec.name,
                          {"status": "rejected", "reason": human.reason, "approver": human.approver})
    if isinstance(human, Approve):
        if first_decision:
            mw._event(run, event="approved", args=args, detail=human.comment, **row)
        return spec, args, human.approver, appr.approval_id
    assert edited is not None
    new_spec, new_args, check = edited
    if first_decision:
        mw._event(run, event="edited", args=new_args, decision=check.kind, rule_id=check.rule_id,
                  detail=check.reason, **{**row, "tool": new_spec.name})
    return new_spec, new_args, human.approver, appr.approval_id


def _check_edit(mw: TetherMiddleware, spec: ToolSpec[Any, Any], args: dict[str, Any], edit: Edit,
                approval_id: str) -> tuple[ToolSpec[Any, Any], dict[str, Any], AnyDecision]:
    """An edit validated by schema and policy, or ``ApprovalError`` (the approval stays pending)."""
    name = edit.tool or spec.name
    target = mw.toolset.get(name)
    if target is None:
        raise ApprovalError(approval_id=approval_id, reason=f"the edit names tool {name!r}, which is not "
                            f"governed here ({', '.join(mw.toolset.names())}); the approval is still pending")
    parsed = target.parse(jsonable(edit.args if name != spec.name else {**args, **edit.args}))
    if isinstance(parsed, ArgumentProblem):
        raise ApprovalError(approval_id=approval_id, reason="the edited arguments are invalid: "
                            + "; ".join(parsed.errors) + "; the approval is still pending")
    config = get_config()
    decision = mw.policy.evaluate(target.describe(parsed, mw.context(config, {})))
    if isinstance(decision, Deny | Escalate):
        raise ApprovalError(approval_id=approval_id, reason=f"the policy refuses the edited call "
                            f"({decision.rule_id}: {decision.reason}); the approval is still pending")
    return target, parsed.model_dump(mode="json"), decision


def _run_once(mw: TetherMiddleware, run: dict[str, Any], spec: ToolSpec[Any, Any], args: dict[str, Any],
              facts: dict[str, Any], *, approver: str | None) -> ToolMessage:
    """Run the call with its idempotency key: ``executing`` before, ``executed``/``failed`` after."""
    key, call_id = facts["idempotency_key"], facts["tool_call_id"]
    seen = mw.ledger.attempts(key)
    if (done := seen.executed) is not None:
        return tool_reply(call_id, spec.name, {"status": "ok", "result": done.result, "replayed": True})
    if seen.started and not spec.idempotent:
        return tool_reply(call_id, spec.name, {"status": "error", "code": "outcome_unknown",
                                               "message": f"{spec.name} may already have run; a human must check"})
    row = {**facts, "approver": approver}
    mw._event(run, event="executing", args=args, durable=spec.effect != "read", **row)
    config = get_config()
    ctx = ToolContext(subject=None, thread_id=str(config.get("configurable", {}).get("thread_id", "default")),
                      run_id=str(run.get("run_id", "?")), tool_call_id=call_id, idempotency_key=key,
                      resources=mw.resources)
    try:
        result = spec.run(spec.args_model.model_validate(args), ctx)
    except Exception as exc:  # any failure is recorded and told to the model
        mw._event(run, event="failed", args=args, error=f"{type(exc).__name__}: {exc}"[:1000], **row)
        return tool_reply(call_id, spec.name, {"status": "error", "code": getattr(exc, "code", "tool_failed"),
                                               "message": str(exc)[:500]})
    data = result.model_dump(mode="json")
    mw._event(run, event="executed", args=args, result=data, **row)
    return tool_reply(call_id, spec.name, {"status": "ok", "result": data})
