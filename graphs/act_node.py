"""``act``: the only node with side effects.

Each admitted proposal is re-checked against the policy as it stands now (it may have changed
since the approval), then run with an idempotency key. The ledger records intent
(``executing``) before the call and completion (``executed``) after it; an action already
completed is never re-run (its recorded result is reused), and one whose outcome is unknown is
re-run only when the tool dedupes on the key, else escalated.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig

from tether.errors import ToolError
from tether.graphs.base import NodeBase
from tether.graphs.guard_nodes import closed_actions
from tether.graphs.messages import crash_point, tool_reply
from tether.graphs.state import Escalated, Halt, Proposal, WorkflowState
from tether.guards.decisions import Deny, Escalate, EscalationAction, RequireApproval
from tether.retrieval.knowledge import Evidence
from tether.tools.base import ToolContext, ToolSpec

__all__ = ["ActNode"]


class ActNode(NodeBase):
    def _act(self, state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
        props = list(state.get("proposals", []))
        evidence = list(state.get("evidence", []))
        replies: list[ToolMessage] = []
        streak = state.get("error_streak", 0)
        halt: Halt | None = None
        outcome: Escalated | None = None
        moved = dict(state.get("moved_usd", {}))
        for i, p in enumerate(props):
            if p.status not in ("allowed", "approved"):
                continue
            if outcome is not None:  # handed off: nothing else in this message may run
                props[i] = p.model_copy(update={"status": "skipped"})
                replies.append(
                    tool_reply(
                        p.tool_call_id,
                        p.tool,
                        {"status": "not_executed", "reason": "the case was handed to a human"},
                    )
                )
                continue
            spec = self.tools.get(p.tool)
            assert spec is not None
            now: WorkflowState = {**state, "evidence": evidence, "moved_usd": moved}  # type: ignore[typeddict-item]
            ctx = self._ctx(now, config, p)
            base: dict[str, Any] = dict(
                tool_call_id=p.tool_call_id,
                tool=p.tool,
                tool_schema_version=spec.schema_version,
                args=p.args,
                idempotency_key=ctx.idempotency_key,
                approver=p.approver,
                approval_id=p.approval_id,
                rule_id=p.decision.rule_id if p.decision else None,
            )
            done = self.ledger.completed(ctx.idempotency_key)
            if done is not None:  # completed before a crash or an earlier resume: reuse, never repeat
                props[i] = p.model_copy(update={"status": "executed"})
                self._add_moved(moved, spec, p)
                replies.append(
                    tool_reply(
                        p.tool_call_id, p.tool, {"status": "ok", "result": done.result, "replayed": True}
                    )
                )
                continue
            if self.ledger.started(ctx.idempotency_key) and not spec.idempotent:
                props[i] = p.model_copy(update={"status": "failed"})
                halt = Halt(
                    rule_id="act.outcome_unknown",
                    reason=f"{p.tool} may already have run (crash mid-call); a human must check",
                    action=EscalationAction.HANDOFF_TO_HUMAN,
                )
                replies.append(
                    tool_reply(p.tool_call_id, p.tool, {"status": "error", "code": "outcome_unknown"})
                )
                continue
            refusal = self._recheck(spec, p, now, config)
            if refusal is not None:
                self._event(
                    state,
                    config,
                    event="failed",
                    error=f"{refusal.rule_id}: {refusal.reason}",
                    **{**base, "rule_id": refusal.rule_id},
                )
                props[i] = p.model_copy(update={"status": "denied", "decision": refusal})
                replies.append(
                    tool_reply(
                        p.tool_call_id,
                        p.tool,
                        {"status": "denied", "rule_id": refusal.rule_id, "reason": refusal.reason},
                    )
                )
                continue
            self._event(state, config, event="executing", **base)
            crash_point("after_intent", p.tool)
            try:
                result = self._run_tool(spec, p, ctx)
                crash_point("after_tool", p.tool)
            except ToolError as exc:
                streak += 1
                self._after(p.tool, ok=False)
                props[i] = p.model_copy(update={"status": "failed"})
                self._event(state, config, event="failed", error=str(exc)[:1000], **base)
                replies.append(
                    tool_reply(
                        p.tool_call_id,
                        p.tool,
                        {"status": "error", "code": exc.code, "message": exc.message, "hint": exc.hint},
                    )
                )
                if exc.code == "timeout" and spec.effect == "write":
                    halt = Halt(
                        rule_id="tool.timeout",
                        reason=str(exc),
                        action=self.policy.escalation.on_tool_error_retries_exhausted,
                    )
                continue
            data = result.model_dump(mode="json")
            crash_point("before_completion", p.tool)
            streak = 0
            self._after(p.tool, ok=True)
            props[i] = p.model_copy(update={"status": "executed"})
            self._add_moved(moved, spec, p)
            cited: tuple[str, ...] = ()
            if spec.yields_evidence:
                found = [e for e in getattr(result, "evidence", []) if isinstance(e, Evidence)]
                evidence.extend(found)
                cited = tuple(e.evidence_id for e in found)
            self._event(state, config, event="executed", result=data, evidence=cited, **base)
            replies.append(tool_reply(p.tool_call_id, p.tool, {"status": "ok", "result": data}))
            if spec.terminal:
                outcome = Escalated(
                    action=EscalationAction.HANDOFF_TO_HUMAN,
                    rule_id=f"tools.{p.tool}",
                    reason=str(p.args.get("reason", "handed off")),
                    summary=str(p.args.get("summary", "")),
                    ticket_id=data.get("ticket_id"),
                )
        if outcome is not None:
            halt = Halt(rule_id=outcome.rule_id, reason=outcome.reason, action=outcome.action)
        halt = halt or self._retries_exhausted(streak)
        return {
            "proposals": props,
            "messages": replies,
            "evidence": evidence,
            "error_streak": streak,
            "halt": halt,
            "outcome": outcome,
            "moved_usd": moved,
            "actions": [*state.get("actions", []), *closed_actions(state.get("proposals", []), props)],
        }

    def _recheck(
        self, spec: ToolSpec[Any, Any], p: Proposal, state: WorkflowState, config: RunnableConfig
    ) -> Deny | None:
        """The policy as it stands at execution time, plus rate limits and circuit breakers."""
        action = self._with_run_total(
            self._describe(spec, spec.args_model.model_validate(p.args), state, config), spec, state
        )
        decision = self.policy.evaluate(action)
        if isinstance(decision, Deny | Escalate):
            return Deny(rule_id=decision.rule_id, reason=f"at execution time: {decision.reason}")
        if isinstance(decision, RequireApproval) and p.approver is None:
            return Deny(rule_id=decision.rule_id, reason="the policy now requires an approval; propose again")
        if self.limits is not None:
            gate = self.limits.before_act(action)
            if isinstance(gate, Deny):
                return gate
        return None

    @staticmethod
    def _add_moved(moved: dict[str, float], spec: ToolSpec[Any, Any], p: Proposal) -> None:
        amount = p.args.get(spec.amount_arg) if spec.amount_arg else None
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            moved[spec.name] = moved.get(spec.name, 0.0) + float(amount)

    def _after(self, tool: str, *, ok: bool) -> None:
        if self.limits is not None:
            self.limits.after_act(tool, ok=ok)

    def _run_tool(self, spec: ToolSpec[Any, Any], p: Proposal, ctx: ToolContext) -> Any:
        parsed = spec.args_model.model_validate(p.args)
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(spec.run, parsed, ctx)
        try:
            return future.result(timeout=self.tool_timeout_seconds)
        except FutureTimeout:
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
        finally:
            pool.shutdown(wait=False)

    def _after_act(self, state: WorkflowState) -> str:
        return "escalate" if state.get("halt") else "reasoning"
