"""``act``: the only node with side effects.

Each admitted proposal is re-checked against the policy as it stands now (it may have changed
since the approval), then run with an idempotency key. The ledger records intent
(``executing``) before the call and completion (``executed``) after it; an action already
completed is never re-run (its recorded result is reused), and one whose outcome is unknown is
re-run only when the tool dedupes on the key, else escalated. Each proposal goes through
``_act_one``, whose steps each return a typed ``ActStep``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig

from tether.errors import ToolError
from tether.graphs.envelope import Enveloped, envelope
from tether.graphs.faults import fault_point
from tether.graphs.guard_nodes import GuardNodes
from tether.graphs.messages import tool_reply
from tether.graphs.state import Escalated, Halt, HaltView, Proposal, WorkflowState
from tether.guards.decisions import Deny, Escalate, EscalationAction, RequireApproval
from tether.guards.screen import InjectionScreen
from tether.retrieval.knowledge import Evidence
from tether.tools.base import ToolContext, ToolSpec

__all__ = ["ActNode", "ActStep"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ActStep:
    """What acting on one proposal produced."""

    proposal: Proposal
    reply: ToolMessage
    result: Any = None
    """The tool's result as JSON, when it ran (or had run before)."""
    evidence: tuple[Evidence, ...] = ()
    halt: Halt | None = None
    outcome: Escalated | None = None
    """Set when a terminal (hand-off) tool succeeded."""
    error: bool = False
    """The tool failed (counts toward the error streak)."""
    moved: float = field(default=0.0)


def _reply(p: Proposal, payload: dict[str, Any]) -> ToolMessage:
    return tool_reply(p.tool_call_id, p.tool, payload)


def _amount(spec: ToolSpec[Any, Any], p: Proposal) -> float:
    value = p.args.get(spec.amount_arg) if spec.amount_arg else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _tool_pool() -> ThreadPoolExecutor:
    """Threads that run tool calls under their timeout, shared and reused."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=32, thread_name_prefix="tether-tool"))
        return _POOL[0]


def _retire(pool: ThreadPoolExecutor) -> None:
    with _POOL_LOCK:
        if _POOL and _POOL[0] is pool:
            _POOL.clear()
    pool.shutdown(wait=False)


class ActNode(GuardNodes):
    def _act(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        props = list(state.get("proposals", []))
        evidence = list(state.get("evidence", []))
        moved = dict(state.get("moved_usd", {}))
        replies: list[ToolMessage] = []
        results: dict[str, Any] = {}
        streak, halt, outcome = state.get("error_streak", 0), None, None
        for i, p in enumerate(props):
            if p.status not in ("allowed", "approved"):
                continue
            if outcome is not None:  # handed off: nothing else in this message may run
                props[i] = p.model_copy(update={"status": "skipped"})
                replies.append(_reply(p, {"status": "not_executed", "reason": "the case was handed to a human"}))
                continue
            done_now = self._history(state, state.get("proposals", []), props, results)
            now: WorkflowState = {**state, "evidence": evidence, "moved_usd": moved,  # type: ignore[typeddict-item]
                                  "history": done_now}
            step = self._act_one(now, config, p)
            props[i] = step.proposal
            replies.append(step.reply)
            evidence.extend(step.evidence)
            if step.moved:
                moved[p.tool] = moved.get(p.tool, 0.0) + step.moved
            if step.result is not None:
                results[p.action_id] = step.result
            streak = streak + 1 if step.error else 0 if step.proposal.status == "executed" else streak
            halt, outcome = halt or step.halt, outcome or step.outcome
        if outcome is not None:
            halt = Halt(rule_id=outcome.rule_id, reason=outcome.reason, action=outcome.action)
        return {
            "proposals": props,
            "messages": replies,
            "evidence": evidence,
            "error_streak": streak,
            "halt": halt or self._retries_exhausted(streak),
            "outcome": outcome,
            "moved_usd": moved,
            "history": self._history(state, state.get("proposals", []), props, results),
        }

    def _act_one(self, state: WorkflowState, config: RunnableConfig, p: Proposal) -> ActStep:
        spec = self.tools.get(p.tool)
        assert spec is not None
        ctx = self._ctx(state, config, p)
        facts = {**self._facts(config, p, spec).row(), "args": p.args,
                 "rule_id": p.decision.rule_id if p.decision else None}
        seen = self.ledger.attempts(ctx.idempotency_key)
        if (done := seen.executed) is not None:  # completed before a crash or an earlier resume: reuse, never repeat
            return ActStep(proposal=p.model_copy(update={"status": "executed"}), result=done.result,
                           reply=_reply(p, {"status": "ok", "result": done.result, "replayed": True}),
                           moved=_amount(spec, p))
        if seen.started and not spec.idempotent:
            halt = Halt(rule_id="act.outcome_unknown", action=EscalationAction.HANDOFF_TO_HUMAN,
                        reason=f"{p.tool} may already have run (crash mid-call); a human must check")
            return ActStep(proposal=p.model_copy(update={"status": "failed"}), halt=halt,
                           reply=_reply(p, {"status": "error", "code": "outcome_unknown"}))
        parsed = spec.args_model.model_validate(p.args)
        measured = self._measure(spec, parsed.model_dump(mode="json"), state)
        refusal = self._recheck(spec, p, state, config, key=ctx.idempotency_key, parsed=parsed, measured=measured)
        facts["citations"] = self._citation_rows(p.tool, measured)  # as re-checked
        if refusal is not None:
            self._event(state, config, event="failed", error=f"{refusal.rule_id}: {refusal.reason}",
                        **{**facts, "rule_id": refusal.rule_id})
            payload = {"status": "denied", "rule_id": refusal.rule_id, "reason": refusal.reason}
            return ActStep(proposal=p.model_copy(update={"status": "denied", "decision": refusal}),
                           reply=_reply(p, payload))
        self._event(state, config, event="executing", durable=spec.effect != "read", **facts)
        fault_point("after_intent", p.tool)
        try:
            result = self._run_tool(spec, parsed, ctx)
            fault_point("after_tool", p.tool)
        except ToolError as exc:
            return self._failed(state, config, spec, p, exc, facts)
        return self._executed(state, config, spec, p, result, facts, parsed=parsed)

    def _failed(self, state: WorkflowState, config: RunnableConfig, spec: ToolSpec[Any, Any], p: Proposal,
                exc: ToolError, facts: dict[str, Any]) -> ActStep:
        self._after(p.tool, ok=False)
        self._event(state, config, event="failed", error=str(exc)[:1000], immediate=spec.effect != "read", **facts)
        halt = None
        if exc.code == "timeout" and spec.effect == "write":
            halt = Halt(rule_id="tool.timeout", reason=str(exc),
                        action=self.policy.escalation.on_tool_error_retries_exhausted)
        payload = {"status": "error", "code": exc.code, "message": exc.message, "hint": exc.hint}
        return ActStep(proposal=p.model_copy(update={"status": "failed"}), reply=_reply(p, payload),
                       halt=halt, error=True)

    def _executed(self, state: WorkflowState, config: RunnableConfig, spec: ToolSpec[Any, Any], p: Proposal,
                  result: Any, facts: dict[str, Any], *, parsed: Any) -> ActStep:
        data = result.model_dump(mode="json")
        fault_point("before_completion", p.tool)
        self._after(p.tool, ok=True)
        found: tuple[Evidence, ...] = ()
        if spec.yields_evidence:
            found = tuple(e for e in getattr(result, "evidence", None) or () if isinstance(e, Evidence))
        wrapped = self._envelope(p.tool, data)
        if wrapped.flags:
            self._event(state, config, event="flagged", flags=wrapped.flags,
                        detail=f"{len(wrapped.flags)} instruction-like field(s) in the output of {p.tool}",
                        **{k: v for k, v in facts.items() if k not in ("args", "rule_id")})
        self._event(state, config, event="executed", result=data, flags=wrapped.flags or None,
                    evidence=tuple(e.evidence_id for e in found), immediate=spec.effect != "read", **facts)
        outcome = None
        if spec.terminal is not None:
            handoff = spec.terminal(parsed, result)
            outcome = Escalated(action=EscalationAction.HANDOFF_TO_HUMAN, rule_id=f"tools.{p.tool}",
                                reason=handoff.reason, summary=handoff.summary, ticket_id=handoff.ticket_id)
        return ActStep(proposal=p.model_copy(update={"status": "executed"}), result=data, evidence=found,
                       reply=_reply(p, wrapped.payload), outcome=outcome,
                       moved=_amount(spec, p))

    def _envelope(self, tool: str, data: Any) -> Enveloped:
        """The labelled, screened copy of a result the model sees (the raw one is kept)."""
        content = self.policy.content
        screen = self.screen or InjectionScreen.from_policy(self.policy)
        return envelope(tool, data, screen=screen, outputs=self.policy.outputs(tool),
                        on_flagged=content.on_flagged if content is not None else "quarantine")

    def _recheck(
        self, spec: ToolSpec[Any, Any], p: Proposal, state: WorkflowState, config: RunnableConfig,
        *, key: str | None = None, parsed: Any = None, measured: Any = None,
    ) -> Deny | None:
        """The policy as it stands at execution time, plus rate limits and circuit breakers
        (``parsed``: the validated arguments, ``measured``: their citation facts, when known)."""
        action = self._describe(spec, parsed if parsed is not None else spec.args_model.model_validate(p.args),
                                state, config, measured=measured)
        decision = self.policy.evaluate(action)
        if isinstance(decision, Deny | Escalate):
            return Deny(rule_id=decision.rule_id, reason=f"at execution time: {decision.reason}")
        if isinstance(decision, RequireApproval) and p.approver is None:
            return Deny(rule_id=decision.rule_id, reason="the policy now requires an approval; propose again")
        if self.limits is not None:
            gate = self.limits.before_act(action, key=key)
            if isinstance(gate, Deny):
                return gate
        return None

    def _after(self, tool: str, *, ok: bool) -> None:
        if self.limits is not None:
            self.limits.after_act(tool, ok=ok)

    def _run_tool(self, spec: ToolSpec[Any, Any], parsed: Any, ctx: ToolContext[Any]) -> Any:
        pool = _tool_pool()
        future = pool.submit(spec.run, parsed, ctx)
        try:
            return future.result(timeout=self.tool_timeout_seconds)
        except FutureTimeout:
            future.cancel()  # a call still queued never starts after its timeout was reported
            _retire(pool)  # a hung call keeps its thread; later calls get fresh ones
            raise ToolError(
                code="timeout",
                message=f"{spec.name} did not finish in {self.tool_timeout_seconds:g}s; "
                "its outcome is unknown and it will not be retried automatically",
            ) from None
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(
                code="tool_failed", message=f"{spec.name} failed: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None

    def _after_act(self, state: HaltView) -> str:
        return "escalate" if state.get("halt") else "reasoning"
