"""``policy_check`` and ``human_interrupt``: nothing here has a business side effect.

``policy_check`` takes the model's tool calls one by one: reserve the tool-call budget,
validate the arguments against the tool's schema, ask the policy. ``human_interrupt`` pauses
with a typed ``ApprovalRequest`` and applies the typed decision. A decision is validated in
full before it is recorded (an edit: schema, route, then policy); the ledger's recorded
decision is authoritative, and a different decision sent later is refused to its sender.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt

from tether.checkpoints.ledger import Approval, args_hash
from tether.errors import ApprovalError, DecisionConflict, ToolError
from tether.graphs.base import NodeBase
from tether.graphs.faults import fault_point
from tether.graphs.messages import DECISION_STATUS, action_id, dumps, jsonable, parse_decision, tool_reply
from tether.graphs.state import (
    ApprovalRequest,
    Approve,
    CheckedView,
    Edit,
    Halt,
    Proposal,
    Reject,
    WorkflowState,
)
from tether.guards.budgets import Usage
from tether.guards.context import PriorAction
from tether.guards.decisions import Allow, Deny, Escalate, RequireApproval
from tether.guards.provenance import ledger_flags
from tether.guards.shadow import shadow_evaluate
from tether.tools.base import ArgumentProblem, ToolSpec

__all__ = ["TERMINAL", "CallFacts", "CallStep", "EditCheck", "GuardNodes", "closed_actions"]

TERMINAL = frozenset({"invalid", "denied", "rejected", "executed", "failed", "skipped"})
AnyDecision = Allow | Deny | RequireApproval | Escalate


def closed_actions(
    before: Sequence[Proposal],
    after: Sequence[Proposal],
    *,
    results: Mapping[str, Any] | None = None,
    records: Mapping[str, tuple[str, ...]] | None = None,
) -> list[PriorAction]:
    """Proposals that reached a final status between two snapshots, as run history."""
    was = {p.action_id: p.status for p in before}
    return [
        PriorAction(
            tool=p.tool,
            args=p.args,
            status=p.status,  # type: ignore[arg-type]
            decision=p.decision.kind if p.decision else None,
            rule_id=p.decision.rule_id if p.decision else None,
            result=(results or {}).get(p.action_id),
            records=(records or {}).get(p.action_id, ()),
        )
        for p in after
        if p.status in TERMINAL and was.get(p.action_id) not in TERMINAL
    ]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallFacts:
    """The ledger fields every row about one call carries."""

    tool_call_id: str
    tool: str
    idempotency_key: str
    tool_schema_version: str | None = None
    approval_id: str | None = None
    approver: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "tool_call_id": self.tool_call_id,
            "tool": self.tool,
            "idempotency_key": self.idempotency_key,
            "tool_schema_version": self.tool_schema_version,
            "approval_id": self.approval_id,
            "approver": self.approver,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class CallStep:
    """What checking one call produced."""

    proposal: Proposal
    reply: ToolMessage | None = None
    """What the model is told now (denials, invalid arguments); ``None`` while it may still run."""
    halt: Halt | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EditCheck:
    """An edit validated against the schema, the route and the policy, before it is recorded."""

    tool: str
    args: dict[str, Any]
    decision: AnyDecision


def _calls(msg: AIMessage) -> list[tuple[str, str, dict[str, Any]]]:
    calls = [(tc["id"] or f"call_{i}", tc["name"], dict(tc["args"])) for i, tc in enumerate(msg.tool_calls)]
    for i, bad in enumerate(msg.invalid_tool_calls):
        raw = {"__raw__": str(bad.get("args"))[:500]}
        calls.append((bad.get("id") or f"invalid_{i}", bad.get("name") or "?", raw))
    return calls


def _decided(decision: AnyDecision) -> dict[str, Any]:
    """The ledger fields every decided event carries."""
    return {
        "decision": decision.kind,
        "rule_id": decision.rule_id,
        "matched_rules": tuple(m.rule_id for m in decision.matched),
    }


def _cited(args: dict[str, Any], key: str | None) -> tuple[str, ...]:
    value = args.get(key) if key else None
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _denied(p: Proposal, decision: AnyDecision, **update: Any) -> CallStep:
    payload = {"status": "denied", "rule_id": decision.rule_id, "reason": decision.reason}
    proposal = p.model_copy(update={"status": "denied", "decision": decision, **update})
    return CallStep(proposal=proposal, reply=tool_reply(p.tool_call_id, p.tool, payload))


class GuardNodes(NodeBase):
    def _facts(self, config: RunnableConfig, p: Proposal, spec: ToolSpec[Any, Any] | None) -> CallFacts:
        return CallFacts(
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            idempotency_key=self._key(config, p),
            tool_schema_version=spec.schema_version if spec else None,
            approval_id=p.approval_id,
            approver=p.approver,
        )

    def _history(self, state: WorkflowState, before: Sequence[Proposal], after: Sequence[Proposal],
                 results: Mapping[str, Any] | None = None) -> list[PriorAction]:
        records = {p.action_id: self._records_of(p) for p in after}
        closed = closed_actions(before, after, results=results, records=records)
        return [*state.get("history", []), *closed]

    def _policy_check(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        usage = state.get("usage", Usage())
        streak = state.get("error_streak", 0)
        halt: Halt | None = None
        proposals: list[Proposal] = []
        replies: list[ToolMessage] = []
        for index, (call_id, name, raw) in enumerate(_calls(last)):
            p = Proposal(action_id=action_id(last.id, index, call_id), tool_call_id=call_id, tool=name,
                         args=jsonable(raw), status="skipped")
            over = self.policy.budgets.check_before_tool_call(usage) if halt is None else None
            if over is not None:
                halt = self._halt_budget(over)
                self._event(state, config, event="budget_exceeded", tool_call_id=call_id, tool=name,
                            rule_id=over.rule_id, detail=over.describe())
            elif halt is None:
                usage = usage.add(tool_calls=1)  # reserved before deciding: floods of calls hit the cap
                admitted = [q for q in proposals if q.status in ("allowed", "awaiting_approval")]
                step = self._check_call(state, config, p, raw, step=usage.tool_calls, admitted=admitted)
                p, halt = step.proposal, step.halt
                replies += [step.reply] if step.reply is not None else []
                streak += p.status == "invalid"
            proposals.append(p)
        return {
            "proposals": proposals,
            "messages": replies,
            "usage": usage,
            "error_streak": streak,
            "halt": halt or self._retries_exhausted(streak),
            "history": self._history(state, [], proposals),
        }

    def _unusable(self, state: WorkflowState, p: Proposal, raw: dict[str, Any]) -> tuple[str, ArgumentProblem] | None:
        """Why the call cannot even be checked: unknown tool, not offered, not JSON."""
        offered = self.offered(state.get("route"))
        spec = self.tools.get(p.tool)
        if spec is not None and p.tool in offered and "__raw__" not in raw:
            return None
        malformed = spec is not None and p.tool in offered
        problem = ArgumentProblem(
            tool=p.tool,
            code="invalid_arguments" if malformed else "unknown_tool",
            errors=("arguments are not valid JSON",) if malformed else (f"no tool named {p.tool!r} is offered",),
            hint=f"Use one of: {', '.join(sorted(offered))}." if offered else "No tool is offered here; answer.",
        )
        rule = "schema.malformed_json" if malformed else "default.unlisted_tool" if spec is None \
            else "route.tool_not_offered"
        return rule, problem

    def _invalid(self, state: WorkflowState, config: RunnableConfig, p: Proposal, problem: ArgumentProblem,
                 rule_id: str, step: int) -> CallStep:
        facts = self._facts(config, p, self.tools.get(p.tool))
        self._event(state, config, event="proposed", step=step, args=p.args, decision="invalid",
                    rule_id=rule_id, error="; ".join(problem.errors)[:1000], model_id=self.model_id,
                    **facts.row())
        denial = Deny(rule_id=rule_id, reason=problem.errors[0])
        payload = {"status": "invalid_arguments", **problem.model_dump(mode="json")}
        return CallStep(
            proposal=p.model_copy(update={"status": "invalid", "problem": problem, "decision": denial}),
            reply=tool_reply(p.tool_call_id, p.tool, payload),
        )

    def _check_call(self, state: WorkflowState, config: RunnableConfig, p: Proposal, raw: dict[str, Any],
                    *, step: int, admitted: Sequence[Proposal] = ()) -> CallStep:
        unusable = self._unusable(state, p, raw)
        if unusable is not None:
            return self._invalid(state, config, p, unusable[1], unusable[0], step)
        spec = self.tools.get(p.tool)
        assert spec is not None
        parsed = spec.parse(raw)
        if isinstance(parsed, ArgumentProblem):
            return self._invalid(state, config, p, parsed, f"schema.{p.tool}", step)
        p = p.model_copy(update={"args": parsed.model_dump(mode="json")})
        action = self._describe(spec, parsed, state, config, admitted)
        decision = self.policy.evaluate(action)
        shadow = shadow_evaluate(self.policy, action)
        detail = decision.reason
        if shadow is not None:  # what a candidate / shadow rule would have decided, as data
            detail += " | shadow: " + shadow.model_dump_json()
        facts = self._facts(config, p, spec)
        self._event(state, config, event="proposed", step=step, args=p.args, model_id=self.model_id,
                    **_decided(decision), detail=detail, evidence=_cited(p.args, spec.citations_arg),
                    citations=self._citation_rows(p.tool, action.citation_facts),
                    flags=ledger_flags(self.policy, action, decision), **facts.row())
        if isinstance(decision, Deny):
            return _denied(p, decision)
        if isinstance(decision, Escalate):
            stop = Halt(rule_id=decision.rule_id, reason=decision.reason, action=decision.action)
            return CallStep(proposal=p.model_copy(update={"status": "denied", "decision": decision}), halt=stop)
        if isinstance(decision, RequireApproval):
            return CallStep(proposal=self._ask(state, config, spec, parsed, p, decision, step))
        return CallStep(proposal=p.model_copy(update={"status": "allowed", "decision": decision}))

    def _preview(self, state: WorkflowState, config: RunnableConfig, spec: ToolSpec[Any, Any], parsed: Any,
                 p: Proposal) -> str:
        if spec.preview is None:
            return f"{spec.name}({dumps(p.args)})"
        try:
            return str(spec.preview(parsed, self._ctx(state, config, p)))
        except ToolError as exc:
            return f"preview unavailable: {exc}"

    def _ask(self, state: WorkflowState, config: RunnableConfig, spec: ToolSpec[Any, Any], parsed: Any,
             p: Proposal, decision: RequireApproval, step: int) -> Proposal:
        """Register the approval request (ledger only) before the interrupt node pauses."""
        preview = self._preview(state, config, spec, parsed, p)
        appr = self._register(state, config, p, decision, preview)
        facts = self._facts(config, p, spec)
        self._event(state, config, event="approval_requested", step=step, args=p.args,
                    model_id=self.model_id, rule_id=decision.rule_id, detail=preview,
                    **{**facts.row(), "approval_id": appr.approval_id})
        return p.model_copy(update={"status": "awaiting_approval", "decision": decision,
                                    "approval_id": appr.approval_id, "preview": preview})

    def _register(self, state: WorkflowState, config: RunnableConfig, p: Proposal,
                  decision: RequireApproval | Allow | Deny | Escalate, preview: str) -> Approval:
        """The approval row for ``p`` (idempotent per thread and tool call)."""
        subject = state.get("subject")
        return self.ledger.request_approval(
            thread_id=self._thread(config), run_id=state.get("run_id", "?"), tool_call_id=p.action_id,
            tool=p.tool, args=p.args, preview=preview, rule_id=decision.rule_id, reason=decision.reason,
            policy_version=self.policy.version, subject_id=subject.id if subject else None,
            ttl_seconds=self.policy.approval_ttl_seconds, workflow=self.ref,
        )

    def _after_check(self, state: CheckedView) -> str:
        if state.get("halt"):
            return "escalate"
        props = state.get("proposals", [])
        if any(p.status == "awaiting_approval" for p in props):
            return "human_interrupt"
        if any(p.status in ("allowed", "approved") for p in props):
            return "act"
        return "reasoning"

    # ------------------------------------------------------------------ human in the loop

    def _human_interrupt(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        props = list(state.get("proposals", []))
        i = next(i for i, p in enumerate(props) if p.status == "awaiting_approval")
        p = props[i]
        assert p.decision is not None and p.approval_id is not None
        try:
            appr = self.ledger.approval(p.approval_id)
        except ApprovalError:  # the request row did not reach the disk before a machine crash; the
            appr = self._register(state, config, p, p.decision, p.preview or "")  # checkpoint did
        request = ApprovalRequest(
            approval_id=p.approval_id, thread_id=self._thread(config), tool_call_id=p.tool_call_id,
            tool=p.tool, args=p.args, args_hash=args_hash(p.args), preview=p.preview or "",
            rule_id=p.decision.rule_id, reason=p.decision.reason, policy_version=self.policy.version,
            expires_at=appr.expires_at,
        )
        raw = interrupt(request)  # nothing above this line has side effects
        while True:
            try:
                decision, edit = self._authoritative(state, config, p, parse_decision(raw, approval_id=p.approval_id))
                break
            except ApprovalError as exc:  # not applied, nothing recorded: ask again, saying why
                raw = interrupt(request.model_copy(update={"refused": str(exc)}))
        facts = self._facts(config, p, self.tools.get(p.tool))
        base = {**facts.row(), "approval_id": p.approval_id, "approver": decision.approver}
        reply: ToolMessage | None = None
        if isinstance(decision, Approve):
            self._event(state, config, event="approved", args=p.args, detail=decision.comment, **base)
            props[i] = p.model_copy(update={"status": "approved", "approver": decision.approver})
        elif isinstance(decision, Reject):
            self._event(state, config, event="rejected", args=p.args, detail=decision.reason, **base)
            props[i] = p.model_copy(update={"status": "rejected", "approver": decision.approver})
            payload = {"status": "rejected", "reason": decision.reason, "approver": decision.approver}
            reply = tool_reply(p.tool_call_id, p.tool, payload)
        else:
            assert edit is not None
            props[i], reply = self._apply_edit(state, config, p, decision, edit, base)
        fault_point("after_approval")
        return {
            "proposals": props,
            "messages": [reply] if reply is not None else [],
            "history": self._history(state, state.get("proposals", []), props),
        }

    def _authoritative(
        self, state: WorkflowState, config: RunnableConfig, p: Proposal, offered: Approve | Reject | Edit
    ) -> tuple[Approve | Reject | Edit, EditCheck | None]:
        """The decision to apply: validated, then recorded once; a recorded one wins.

        A different decision sent for an approval that is already decided raises
        ``DecisionConflict``; an edit that does not validate raises ``ApprovalError`` and
        leaves the approval pending. An expired approval, or one granted for other arguments,
        rejects the action (by the rule that voids it; no human decision is invented).
        """
        assert p.approval_id is not None
        current = self.ledger.approval(p.approval_id)
        if current.status != "pending":
            recorded = parse_decision(current.decision)
            if recorded.model_dump(mode="json") != offered.model_dump(mode="json"):
                raise DecisionConflict(approval_id=p.approval_id, recorded=_says(recorded),
                                       offered=_says(offered))
            offered = recorded
        void = self._void(p, current)
        if void is not None:
            return void, None
        edit = self.check_edit(state, config, p, offered) if isinstance(offered, Edit) else None
        if current.status == "pending":
            self.ledger.decide(p.approval_id, status=DECISION_STATUS[offered.kind], decided_by=offered.approver,
                               decision=offered.model_dump(mode="json"))
        return offered, edit

    def _void(self, p: Proposal, current: Approval) -> Reject | None:
        if current.args_hash != args_hash(p.args):
            return Reject(approver="system", reason=f"{p.approval_id} was granted for other arguments")
        if current.expired() and current.status == "pending":
            ttl = self.policy.approval_ttl_seconds
            age = (datetime.now(UTC) - datetime.fromisoformat(current.created_at)).total_seconds()
            limit = f", limit {ttl:g}s" if ttl is not None else ""
            return Reject(approver="system", reason=f"{p.approval_id} expired: {age:.0f}s after the request{limit}")
        return None

    def check_edit(self, state: WorkflowState, config: RunnableConfig, p: Proposal, edit: Edit) -> EditCheck:
        """Validate an edit (tool offered, schema, policy) without recording anything.

        Raises ``ApprovalError`` with every problem when the edit cannot be applied.
        """
        assert p.approval_id is not None
        name = edit.tool or p.tool
        spec = self.tools.get(name)
        if spec is None or name not in self.offered(state.get("route")):
            offered = ", ".join(self.offered(state.get("route")))
            raise ApprovalError(approval_id=p.approval_id,
                                reason=f"the edit names tool {name!r}, which is not offered here ({offered})")
        merged = jsonable(edit.args if name != p.tool else {**p.args, **edit.args})
        parsed = spec.parse(merged)
        if isinstance(parsed, ArgumentProblem):
            raise ApprovalError(approval_id=p.approval_id,
                                reason="the edited arguments are invalid: " + "; ".join(parsed.errors)
                                + "; the approval is still pending")
        others = [q for q in state.get("proposals", [])
                  if q.action_id != p.action_id and q.status in ("allowed", "approved", "awaiting_approval")]
        decision = self.policy.evaluate(self._describe(spec, parsed, state, config, others))
        if isinstance(decision, Deny | Escalate):
            raise ApprovalError(approval_id=p.approval_id,
                                reason=f"the policy refuses the edited call ({decision.rule_id}: "
                                f"{decision.reason}); the approval is still pending")
        return EditCheck(tool=name, args=parsed.model_dump(mode="json"), decision=decision)

    def _apply_edit(self, state: WorkflowState, config: RunnableConfig, p: Proposal, edit: Edit,
                    checked: EditCheck, base: dict[str, Any]) -> tuple[Proposal, ToolMessage | None]:
        """Allow, or RequireApproval satisfied by the human who wrote these exact arguments."""
        self._event(state, config, event="edited", args=checked.args, **_decided(checked.decision),
                    detail=checked.decision.reason, **{**base, "tool": checked.tool})
        return p.model_copy(update={"status": "approved", "tool": checked.tool, "args": checked.args,
                                    "decision": checked.decision, "approver": edit.approver}), None


def _says(d: Approve | Reject | Edit) -> str:
    if isinstance(d, Reject):
        return f"rejected by {d.approver}: {d.reason}"
    if isinstance(d, Edit):
        return f"edited by {d.approver} to {dumps(d.args)}"
    return f"approved by {d.approver}"
