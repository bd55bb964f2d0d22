"""``Session``: the one way to run, decide and resume any governed workflow.

    with Session.open("support", home=Home.from_env()) as s:
        r = s.run("Refund $40 on O-20417", thread_id="T1", subject="C-1042")
        s.decide(r.waiting_for[0].approval_id, Approve(approver="lead@example.com"))

The command line, evals, the Studio factory and notebooks are thin clients of it. A human
decision is validated completely before it is recorded: the approval must exist, be pending
and unexpired, belong to a thread this session can resume, and an edit must pass the tool's
schema, the route and the policy. A decision that cannot be applied is refused and nothing is
recorded; a different decision for an approval already decided raises ``DecisionConflict``.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, StateSnapshot

from tether.checkpoints.checkpointer import open_checkpointer
from tether.checkpoints.ledger import Approval, Ledger, LedgerRow
from tether.config import Home
from tether.errors import ApprovalError, DecisionConflict, TetherError
from tether.graphs.messages import DECISION_STATUS, parse_decision
from tether.graphs.registry import BuildContext, WorkflowSpec, find_workflow
from tether.graphs.state import ApprovalRequest, Approve, Edit, Escalated, Reject, Resolved
from tether.graphs.tracing import TraceLabels
from tether.graphs.workflow import Workflow
from tether.guards.context import Subject
from tether.guards.policy import Policy
from tether.models import ModelConfig

__all__ = ["PendingApproval", "RunResult", "Session"]

Decision = Approve | Reject | Edit


_INTERRUPT = "__interrupt__"
"""Where ``invoke`` returns the interrupts a run paused at, next to its values."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """Where a thread stands after a call: finished (with an outcome) or waiting for a human."""

    thread_id: str
    outcome: Resolved | Escalated | None
    waiting_for: tuple[ApprovalRequest, ...] = ()
    route: str | None = None

    @property
    def status(self) -> Literal["awaiting_approval", "resolved", "escalated", "unfinished"]:
        if self.waiting_for:
            return "awaiting_approval"
        return self.outcome.kind if self.outcome is not None else "unfinished"


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingApproval:
    """An approval as a reviewer sees it: the request, and whether it can still be granted."""

    approval: Approval
    state: Literal["pending", "expired", "approved", "rejected", "edited"]


class Session:
    """Runs one compiled workflow over a ledger and a checkpointer. Use as a context manager."""

    def __init__(
        self,
        *,
        workflow: Workflow,
        checkpointer: BaseCheckpointSaver[Any],
        principal: str | None = None,
        roles: tuple[str, ...] = (),
        recursion_limit: int = 100,
    ) -> None:
        """Borrow a built workflow and a checkpointer (``Session.open`` builds and owns both)."""
        self.workflow = workflow
        self.ledger: Ledger = workflow.ledger
        self.app = workflow.compile(checkpointer=checkpointer)
        self._identity: dict[str, Any] = {"principal": principal} if principal else {}
        if roles:
            self._identity["roles"] = list(roles)
        self._recursion_limit = recursion_limit
        self._stack = ExitStack()
        self._labels = TraceLabels.of(workflow)
        self._callbacks: list[Any] = []
        """Callback handlers added to every invocation (e.g. the OpenTelemetry exporter)."""
        self.home: Home | None = None
        """The data directory, when the session was opened with ``Session.open``."""
        self.last_trace_id: uuid.UUID | None = None
        """Root run id (LangSmith trace id) of the last graph invocation this session made."""

    @classmethod
    def open(
        cls,
        workflow: str | WorkflowSpec,
        *,
        home: Home | None = None,
        policy: Policy | str | Path | None = None,
        models: ModelConfig | None = None,
        principal: str | None = None,
        roles: tuple[str, ...] = (),
        adapt: Callable[[Workflow], Workflow] | None = None,
        tracer_provider: Any = None,
    ) -> Session:
        """Build a workflow by name (or spec) over ``home``'s ledger and checkpointer, and own them.

        ``adapt`` wraps the built workflow before it is compiled, e.g. fault injection or recording.
        ``tracer_provider`` (an OpenTelemetry ``TracerProvider``; or ``TETHER_OTEL=1`` for the global
        one) exports spans per node, model call and tool call (``tether.graphs.otel``).
        """
        spec = find_workflow(workflow) if isinstance(workflow, str) else workflow
        home = (home or Home.from_env()).ensure()
        with ExitStack() as stack:  # on any error below, what was opened is closed again
            ledger = stack.enter_context(Ledger.open(home.ledger_url))
            ctx = BuildContext(home=home, ledger=ledger, policy=spec.load_policy(policy),
                               models=models or ModelConfig.from_env())
            wf = spec.build(ctx)
            stack.callback(wf.close)
            if isinstance(workflow, str) and workflow != wf.name:  # found as module:attribute
                wf = dataclasses.replace(wf, origin=workflow)
            if adapt is not None:
                wf = adapt(wf)
            saver = stack.enter_context(open_checkpointer(home.checkpoint_url))
            session = cls(workflow=wf, checkpointer=saver, principal=principal, roles=roles)
            session.home = home
            if tracer_provider is not None or os.environ.get("TETHER_OTEL", "") in ("1", "true"):
                from tether.graphs.otel import OtelExporter

                session._callbacks.append(OtelExporter(tracer_provider))
            session._stack = stack.pop_all()
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    @property
    def policy(self) -> Policy:
        return self.workflow.policy

    def config(self, thread_id: str, *, trace_id: uuid.UUID | None = None,
               run_id: str | None = None) -> RunnableConfig:
        """The configuration of a call on a thread; with ``trace_id``, of one traced invocation
        (its root run id, plus ``run_id``, the ledger's run it continues; ``tether.graphs.tracing``)."""
        cfg: dict[str, Any] = {"configurable": {"thread_id": thread_id, **self._identity},
                               "recursion_limit": self._recursion_limit,
                               **self._labels.config_part(thread_id, trace_id=trace_id, run_id=run_id)}
        if trace_id is not None and self._callbacks:
            cfg["callbacks"] = list(self._callbacks)
        return cfg  # type: ignore[return-value]

    def _invocation(self, thread_id: str, run_id: str | None = None) -> RunnableConfig:
        """A fresh traced invocation's configuration; its root run id is ``last_trace_id``."""
        self.last_trace_id = uuid.uuid4()
        return self.config(thread_id, trace_id=self.last_trace_id, run_id=run_id)

    # ------------------------------------------------------------------ running

    def _start(self, text: str, thread_id: str, subject: Subject | str | None,
               designated: Sequence[str] = ()) -> dict[str, Any]:
        waiting = self.waiting(thread_id)
        if waiting:
            raise ApprovalError(approval_id=waiting[0].approval_id,
                                reason=f"thread {thread_id} is waiting for this approval; decide it first")
        who = Subject(id=subject) if isinstance(subject, str) else subject
        if who is None and self.workflow.requires_subject:
            from tether.errors import WorkflowError

            raise WorkflowError(workflow=self.workflow.name, reason="needs a subject (the party the run acts "
                                "for): pass subject=... (tether run --subject ID)")
        if isinstance(designated, str):
            designated = (designated,)
        return {"messages": [HumanMessage(content=text)], "subject": who, "designate": tuple(designated)}

    def run(self, text: str, *, thread_id: str, subject: Subject | str | None = None,
            designated: Sequence[str] = ()) -> RunResult:
        """Start a new request on a thread (the thread may hold earlier requests).

        ``designated``: ids of documents the user points the run at (a ticket, a page); what
        they say may vouch for argument values under ``from: [designated]``.
        """
        return self._invoke(self._start(text, thread_id, subject, designated), thread_id)

    def _invoke(self, inp: Any, thread_id: str, run_id: str | None = None) -> RunResult:
        """Run the graph; the result comes from what it returned (its final values and the
        interrupts it paused at), so no checkpoint is read back."""
        try:
            out = self.app.invoke(inp, self._invocation(thread_id, run_id), durability="sync")
        finally:  # rows a run stopped between nodes still holds (see ``Workflow.flush_rows``)
            self.workflow.flush_rows(thread_id)
        values: dict[str, Any] = out if isinstance(out, dict) else {}
        waiting = tuple(i.value for i in values.get(_INTERRUPT, ()) if isinstance(i.value, ApprovalRequest))
        return RunResult(thread_id=thread_id, outcome=None if waiting else values.get("outcome"),
                         waiting_for=waiting, route=values.get("route"))

    def stream(self, text: str, *, thread_id: str, subject: Subject | str | None = None,
               designated: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Like ``run``, yielding each node's update as it happens."""
        start = self._start(text, thread_id, subject, designated)
        try:
            yield from self.app.stream(start, self._invocation(thread_id), stream_mode="updates", durability="sync")
        finally:
            self.workflow.flush_rows(thread_id)

    def waiting(self, thread_id: str) -> tuple[ApprovalRequest, ...]:
        return _waiting(self.app.get_state(self.config(thread_id)))

    def result(self, thread_id: str) -> RunResult:
        snap = self.app.get_state(self.config(thread_id))  # one read: values and interrupts agree
        values, waiting = snap.values or {}, _waiting(snap)
        return RunResult(thread_id=thread_id, outcome=None if waiting else values.get("outcome"),
                         waiting_for=waiting, route=values.get("route"))

    def events(self, thread_id: str) -> list[LedgerRow]:
        return self.ledger.events(thread_id)

    # ------------------------------------------------------------------ approvals

    def pending(self, *, thread_id: str | None = None, everything: bool = False) -> list[PendingApproval]:
        """Approvals of this workflow (undecided ones unless ``everything``), expired ones marked."""
        rows = self.ledger.approvals(status=None if everything else "pending", thread_id=thread_id)
        return [PendingApproval(approval=a, state="expired" if a.status == "pending" and a.expired()
                                else a.status) for a in rows if a.workflow in (None, self.workflow.name, self.workflow.ref)]

    def check(self, approval_id: str, decision: Decision) -> Approval:
        """Everything ``decide`` verifies, without recording: raises ``ApprovalError`` if it cannot apply."""
        return self._checked(approval_id, decision)[0]

    def _checked(self, approval_id: str, decision: Decision) -> tuple[Approval, StateSnapshot]:
        """``check``, returning the thread's snapshot it read too."""
        appr = self.ledger.approval(approval_id)
        if appr.status != "pending":
            recorded = parse_decision(appr.decision)
            if recorded.model_dump(mode="json") != decision.model_dump(mode="json"):
                raise DecisionConflict(approval_id=approval_id, recorded=f"{appr.status} by {appr.decided_by}",
                                       offered=f"{decision.kind} by {decision.approver}")
            raise ApprovalError(approval_id=approval_id, reason=f"already {appr.status} by {appr.decided_by}")
        if appr.workflow not in (None, self.workflow.name, self.workflow.ref):
            raise ApprovalError(approval_id=approval_id, reason=f"belongs to workflow {appr.workflow!r}, "
                                f"not {self.workflow.name!r}; decide it with that workflow")
        if appr.expired():
            raise ApprovalError(approval_id=approval_id, reason=f"expired at {appr.expires_at}; it can no "
                                "longer be granted (the action will be rejected when the thread resumes)")
        snap = self.app.get_state(self.config(appr.thread_id))
        if approval_id not in {w.approval_id for w in _waiting(snap)}:
            raise ApprovalError(approval_id=approval_id, reason=f"thread {appr.thread_id} is not waiting for "
                                f"it in {self._where()}; decide it where the thread runs (e.g. in Studio)")
        if isinstance(decision, Edit):
            self._check_edit(appr, decision, snap)
        return appr, snap

    def _where(self) -> str:
        saver = getattr(self.app, "checkpointer", None)
        return type(saver).__name__ if saver is not None else "this session"

    def _check_edit(self, appr: Approval, edit: Edit, snap: StateSnapshot) -> None:
        values = snap.values or {}
        p = next(q for q in values.get("proposals", []) if q.approval_id == appr.approval_id)
        self.workflow.check_edit(values, self.config(appr.thread_id), p, edit)  # type: ignore[arg-type]

    def decide(self, approval_id: str, decision: Decision, *, resume: bool = True) -> RunResult:
        """Validate, record and (by default) apply a human decision; returns where the thread stands."""
        appr, snap = self._checked(approval_id, decision)
        self.ledger.decide(approval_id, status=DECISION_STATUS[decision.kind], decided_by=decision.approver,
                           decision=decision.model_dump(mode="json"), durable=not resume)
        if not resume:
            return self.result(appr.thread_id)
        mark = self.ledger.commit_mark()
        try:  # an approved write's durable intent makes the decision durable too; else sync here
            return self._resume(appr.thread_id, snap)  # the snapshot the decision was checked against
        finally:
            self.ledger.sync(through=mark)

    def resume(self, thread_id: str) -> RunResult:
        """Continue a thread: apply the recorded decision to its pending approval, or, after a
        crash, carry on from the last checkpoint. A finished thread is left as it is."""
        return self._resume(thread_id, self.app.get_state(self.config(thread_id)))

    def _resume(self, thread_id: str, snap: StateSnapshot) -> RunResult:
        if not snap.values and not snap.tasks:
            raise TetherError(f"no thread {thread_id!r} for workflow {self.workflow.name!r} in "
                              f"{self._where()}; check the id (tether ledger show)")
        waiting = _waiting(snap)
        if not waiting:
            if snap.tasks:  # interrupted by a crash, not by a human: continue from the last checkpoint
                return self._invoke(None, thread_id, snap.values.get("run_id"))
            return self.result(thread_id)
        appr = self.ledger.approval(waiting[0].approval_id)
        if appr.status == "pending" or appr.decision is None:
            if not appr.expired():
                raise ApprovalError(approval_id=appr.approval_id,
                                    reason="still pending; run `tether approve` or `tether reject` first")
            # expired: the interrupt voids it by rule; no human decision is invented
            decision: Decision = Reject(approver="system", reason="expired")
        else:
            decision = parse_decision(appr.decision)
        return self._invoke(Command(resume=decision), thread_id, snap.values.get("run_id"))


def _waiting(snap: StateSnapshot) -> tuple[ApprovalRequest, ...]:
    """The approvals a thread's snapshot is paused for."""
    return tuple(i.value for t in snap.tasks for i in t.interrupts if isinstance(i.value, ApprovalRequest))
