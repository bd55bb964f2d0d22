"""``policy_check`` and ``human_interrupt``: nothing here has a business side effect.

``policy_check`` takes the model's tool calls one by one: reserve the tool-call budget,
validate the arguments against the tool's schema, ask the policy. ``human_interrupt`` pauses
with a typed ``ApprovalRequest`` and applies the typed decision; the ledger's recorded decision
is authoritative, and edited arguments are checked by the policy again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt
from pydantic import ValidationError

from tether.checkpoints.ledger import args_hash
from tether.errors import ToolError
from tether.graphs.base import NodeBase
from tether.graphs.messages import (
    DECISION_STATUS,
    action_id,
    crash_point,
    dumps,
    jsonable,
    parse_decision,
    tool_reply,
)
from tether.graphs.state import ApprovalRequest, Approve, Edit, Halt, Proposal, Reject, WorkflowState
from tether.guards.budgets import Usage
from tether.guards.decisions import Allow, Deny, Escalate, RequireApproval
from tether.guards.shadow import shadow_evaluate
from tether.tools.base import ArgumentProblem, ToolSpec

__all__ = ["TERMINAL", "GuardNodes", "closed_actions"]

TERMINAL = frozenset({"invalid", "denied", "rejected", "executed", "failed", "skipped"})


def closed_actions(before: Sequence[Proposal], after: Sequence[Proposal]) -> list[str]:
    """``tool:status`` for proposals that reached a final status between two snapshots."""
    was = {p.action_id: p.status for p in before}
    return [
        f"{p.tool}:{p.status}" for p in after if p.status in TERMINAL and was.get(p.action_id) not in TERMINAL
    ]


def _calls(msg: AIMessage) -> list[tuple[str, str, dict[str, Any]]]:
    calls = [(tc["id"] or f"call_{i}", tc["name"], dict(tc["args"])) for i, tc in enumerate(msg.tool_calls)]
    for i, bad in enumerate(msg.invalid_tool_calls):
        raw = {"__raw__": str(bad.get("args"))[:500]}
        calls.append((bad.get("id") or f"invalid_{i}", bad.get("name") or "?", raw))
    return calls


def _decided(decision: Allow | Deny | RequireApproval | Escalate) -> dict[str, Any]:
    """The ledger fields every decided event carries."""
    return {
        "decision": decision.kind,
        "rule_id": decision.rule_id,
        "matched_rules": tuple(m.rule_id for m in decision.matched),
    }


def _cited(args: dict[str, Any], key: str | None) -> tuple[str, ...]:
    value = args.get(key) if key else None
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class GuardNodes(NodeBase):
    def _policy_check(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        usage = state.get("usage", Usage())
        streak = state.get("error_streak", 0)
        halt: Halt | None = None
        proposals: list[Proposal] = []
        replies: list[ToolMessage] = []
        for index, (call_id, name, raw) in enumerate(_calls(last)):
            skipped = Proposal(
                action_id=action_id(last.id, index, call_id),
                tool_call_id=call_id,
                tool=name,
                args=jsonable(raw),
                status="skipped",
            )
            if halt is not None:
                proposals.append(skipped)
                continue
            over = self.policy.budgets.check_before_tool_call(usage)
            if over is not None:
                halt = self._halt_budget(over)
                self._event(
                    state,
                    config,
                    event="budget_exceeded",
                    tool_call_id=call_id,
                    tool=name,
                    rule_id=over.rule_id,
                    detail=over.describe(),
                )
                proposals.append(skipped)
                continue
            usage = usage.add(tool_calls=1)  # reserved before deciding: floods of calls hit the cap
            admitted = [q for q in proposals if q.status in ("allowed", "awaiting_approval")]
            p, reply, stop = self._check_call(
                state, config, skipped, raw, step=usage.tool_calls, admitted=admitted
            )
            proposals.append(p)
            if reply is not None:
                replies.append(reply)
            streak += p.status == "invalid"
            halt = halt or stop
        halt = halt or self._retries_exhausted(streak)
        return {
            "proposals": proposals,
            "messages": replies,
            "usage": usage,
            "error_streak": streak,
            "halt": halt,
            "actions": [*state.get("actions", []), *closed_actions([], proposals)],
        }

    def _invalid(
        self,
        state: WorkflowState,
        config: RunnableConfig,
        p: Proposal,
        problem: ArgumentProblem,
        rule_id: str,
        step: int,
        spec: ToolSpec[Any, Any] | None,
    ) -> tuple[Proposal, ToolMessage, None]:
        self._event(
            state,
            config,
            event="proposed",
            step=step,
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            tool_schema_version=spec.schema_version if spec else None,
            args=p.args,
            decision="invalid",
            rule_id=rule_id,
            error="; ".join(problem.errors)[:1000],
            model_id=self.model_id,
            idempotency_key=self._key(config, p),
        )
        denial = Deny(rule_id=rule_id, reason=problem.errors[0])
        payload = {"status": "invalid_arguments", **problem.model_dump(mode="json")}
        return (
            p.model_copy(update={"status": "invalid", "problem": problem, "decision": denial}),
            tool_reply(p.tool_call_id, p.tool, payload),
            None,
        )

    def _check_call(
        self,
        state: WorkflowState,
        config: RunnableConfig,
        p: Proposal,
        raw: dict[str, Any],
        *,
        step: int,
        admitted: Sequence[Proposal] = (),
    ) -> tuple[Proposal, ToolMessage | None, Halt | None]:
        offered = set(self.routes[state.get("route", "other")])
        spec = self.tools.get(p.tool)
        if spec is None or p.tool not in offered or "__raw__" in raw:
            malformed = spec is not None and p.tool in offered
            problem = ArgumentProblem(
                tool=p.tool,
                code="invalid_arguments" if malformed else "unknown_tool",
                errors=("arguments are not valid JSON",)
                if malformed
                else (f"no tool named {p.tool!r} is offered",),
                hint=f"Use one of: {', '.join(sorted(offered))}.",
            )
            rule = (
                "schema.malformed_json"
                if malformed
                else "default.unlisted_tool"
                if spec is None
                else "route.tool_not_offered"
            )
            return self._invalid(state, config, p, problem, rule, step, spec)
        parsed = spec.parse(raw)
        if isinstance(parsed, ArgumentProblem):
            return self._invalid(state, config, p, parsed, f"schema.{p.tool}", step, spec)
        p = p.model_copy(update={"args": parsed.model_dump(mode="json")})
        action = self._with_run_total(self._describe(spec, parsed, state, config), spec, state, admitted)
        decision = self.policy.evaluate(action)
        shadow = shadow_evaluate(self.policy, action)
        common: dict[str, Any] = dict(
            step=step,
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            tool_schema_version=spec.schema_version,
            args=p.args,
            model_id=self.model_id,
            idempotency_key=self._key(config, p),
        )
        detail = decision.reason
        if shadow is not None:  # what a candidate / shadow rule would have decided, as data
            detail += " | shadow: " + shadow.model_dump_json()
        self._event(
            state,
            config,
            event="proposed",
            **_decided(decision),
            detail=detail,
            evidence=_cited(p.args, spec.citations_arg),
            **common,
        )
        if isinstance(decision, Deny):
            payload = {"status": "denied", "rule_id": decision.rule_id, "reason": decision.reason}
            return (
                p.model_copy(update={"status": "denied", "decision": decision}),
                tool_reply(p.tool_call_id, p.tool, payload),
                None,
            )
        if isinstance(decision, Escalate):
            stop = Halt(rule_id=decision.rule_id, reason=decision.reason, action=decision.action)
            return p.model_copy(update={"status": "denied", "decision": decision}), None, stop
        if isinstance(decision, RequireApproval):
            return self._ask(state, config, spec, parsed, p, decision, common), None, None
        return p.model_copy(update={"status": "allowed", "decision": decision}), None, None

    def _ask(
        self,
        state: WorkflowState,
        config: RunnableConfig,
        spec: ToolSpec[Any, Any],
        parsed: Any,
        p: Proposal,
        decision: RequireApproval,
        common: dict[str, Any],
    ) -> Proposal:
        """Register the approval request (ledger only) before the interrupt node pauses."""
        if spec.preview is None:
            preview = f"{spec.name}({dumps(p.args)})"
        else:
            try:
                preview = str(spec.preview(parsed, self._ctx(state, config, p)))
            except ToolError as exc:
                preview = f"preview unavailable: {exc}"
        appr = self.ledger.request_approval(
            thread_id=self._thread(config),
            run_id=state.get("run_id", "?"),
            tool_call_id=p.action_id,
            tool=p.tool,
            args=p.args,
            preview=preview,
            rule_id=decision.rule_id,
            reason=decision.reason,
            policy_version=self.policy.version,
            customer_id=state.get("customer_id"),
        )
        self._event(
            state,
            config,
            event="approval_requested",
            approval_id=appr.approval_id,
            detail=preview,
            **{**common, "rule_id": decision.rule_id},
        )
        return p.model_copy(
            update={
                "status": "awaiting_approval",
                "decision": decision,
                "approval_id": appr.approval_id,
                "preview": preview,
            }
        )

    def _after_check(self, state: WorkflowState) -> str:
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
        request = ApprovalRequest(
            approval_id=p.approval_id,
            thread_id=self._thread(config),
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            args=p.args,
            args_hash=args_hash(p.args),
            preview=p.preview or "",
            rule_id=p.decision.rule_id,
            reason=p.decision.reason,
            policy_version=self.policy.version,
        )
        raw = interrupt(request)  # nothing above this line has side effects
        try:
            offered = parse_decision(raw)
        except ValidationError as exc:
            offered = Reject(
                approver="system", reason=f"unreadable decision payload, rejected: {str(exc)[:200]}"
            )
        decision = self._authoritative(p, offered)
        before = list(props)
        replies: list[ToolMessage] = []
        base: dict[str, Any] = dict(
            tool_call_id=p.tool_call_id,
            tool=p.tool,
            approval_id=p.approval_id,
            approver=decision.approver,
            idempotency_key=self._key(config, p),
        )
        if isinstance(decision, Approve):
            self._event(state, config, event="approved", args=p.args, detail=decision.comment, **base)
            props[i] = p.model_copy(update={"status": "approved", "approver": decision.approver})
        elif isinstance(decision, Reject):
            self._event(state, config, event="rejected", args=p.args, detail=decision.reason, **base)
            props[i] = p.model_copy(update={"status": "rejected", "approver": decision.approver})
            payload = {"status": "rejected", "reason": decision.reason, "approver": decision.approver}
            replies.append(tool_reply(p.tool_call_id, p.tool, payload))
        else:
            props[i], reply = self._recheck_edit(state, config, p, decision, base)
            replies += [reply] if reply is not None else []
        crash_point("after_approval")
        return {
            "proposals": props,
            "messages": replies,
            "actions": [*state.get("actions", []), *closed_actions(before, props)],
        }

    def _authoritative(self, p: Proposal, offered: Approve | Reject | Edit) -> Approve | Reject | Edit:
        """Record the decision once; a decision already recorded wins over the resume payload.

        The approval is bound to the hash of the arguments it was asked for, and expires after
        the policy's ``approval_ttl_seconds``: a stale or mismatched approval rejects the action.
        """
        assert p.approval_id is not None
        current = self.ledger.approval(p.approval_id)
        if current.status == "pending":
            self.ledger.decide(
                p.approval_id,
                status=DECISION_STATUS[offered.kind],
                decided_by=offered.approver,
                decision=offered.model_dump(mode="json"),
            )
            decision = offered
        else:
            try:
                decision = parse_decision(current.decision)
            except ValidationError:
                return Reject(approver="system", reason=f"recorded decision of {p.approval_id} is unreadable")
        if isinstance(decision, Reject):
            return decision
        if current.args_hash != args_hash(p.args):
            return Reject(approver="system", reason=f"{p.approval_id} was granted for other arguments")
        ttl = self.policy.spec.agent.approval_ttl_seconds
        age = (datetime.now(UTC) - datetime.fromisoformat(current.created_at)).total_seconds()
        if ttl is not None and age > ttl:
            return Reject(
                approver="system",
                reason=f"{p.approval_id} expired: {age:.0f}s after the request, limit {ttl:g}s",
            )
        return decision

    def _recheck_edit(
        self, state: WorkflowState, config: RunnableConfig, p: Proposal, edit: Edit, base: dict[str, Any]
    ) -> tuple[Proposal, ToolMessage | None]:
        name = edit.tool or p.tool
        spec = self.tools.get(name)
        if spec is None or name not in self.routes[state.get("route", "other")]:
            why = f"edit names tool {name!r}, which is not offered on this route"
            self._event(state, config, event="rejected", args=jsonable(edit.args), error=why, **base)
            return (
                p.model_copy(update={"status": "rejected"}),
                tool_reply(p.tool_call_id, p.tool, {"status": "rejected", "reason": why}),
            )
        merged = jsonable(edit.args if name != p.tool else {**p.args, **edit.args})
        p = p.model_copy(update={"tool": name})
        base = {**base, "tool": name}
        parsed = spec.parse(merged)
        if isinstance(parsed, ArgumentProblem):
            why = "edited arguments invalid: " + "; ".join(parsed.errors)
            self._event(state, config, event="rejected", args=merged, error=why, **base)
            return (
                p.model_copy(update={"status": "rejected", "args": merged, "problem": parsed}),
                tool_reply(p.tool_call_id, p.tool, {"status": "rejected", "reason": why}),
            )
        args = parsed.model_dump(mode="json")
        others = [
            q
            for q in state.get("proposals", [])
            if q.action_id != p.action_id and q.status in ("allowed", "approved", "awaiting_approval")
        ]
        action = self._with_run_total(self._describe(spec, parsed, state, config), spec, state, others)
        decision = self.policy.evaluate(action)
        self._event(
            state,
            config,
            event="edited",
            args=args,
            **_decided(decision),
            detail=decision.reason,
            **base,
        )
        if isinstance(decision, Deny | Escalate):
            payload = {"status": "denied", "rule_id": decision.rule_id, "reason": decision.reason}
            return (
                p.model_copy(update={"status": "denied", "args": args, "decision": decision}),
                tool_reply(p.tool_call_id, p.tool, payload),
            )
        assert isinstance(decision, Allow | RequireApproval)
        # Allow, or RequireApproval satisfied by the human who wrote these exact arguments
        return p.model_copy(
            update={"status": "approved", "args": args, "decision": decision, "approver": edit.approver}
        ), None
