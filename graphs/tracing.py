"""Trace labels: what every traced run of a workflow carries, and how a trace joins the ledger.

With LangSmith's usual environment (``LANGSMITH_TRACING=true``, ``LANGSMITH_API_KEY``,
``LANGSMITH_ENDPOINT``, ``LANGSMITH_PROJECT``) every graph invocation a ``Session`` makes is
one trace whose root run id ``Session`` chooses (``config["run_id"]``). Every run in it carries
the workflow's labels as metadata and tags (workflow, policy version, prompt version, model
ids, thread, the trace's own root run id as ``tether_trace_id``), and the runs that act add
what they did as the ledger rows record it: ``tether_run_id`` (the ledger's run id),
``tether_action_ids`` (tool call ids), ``tether_idempotency_keys``, ``tether_approval_ids``,
``tether_rule_ids`` and ``tether_decisions``. Search LangSmith by any of them to find the trace
of a ledger row; a trace's metadata names its ledger rows.

Without tracing configured nothing is sent and ``observe`` costs one lookup per ledger row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_core.runnables import RunnableConfig

if TYPE_CHECKING:
    from tether.checkpoints.records import LedgerEvent
    from tether.graphs.workflow import Workflow

__all__ = ["RUN_KEY", "TRACE_KEY", "LedgerObserver", "TraceLabels", "observe", "run_id_for", "trace_id_of"]

TRACE_KEY = "tether_trace_id"
"""Metadata key: the root run id of the graph invocation (the LangSmith trace id)."""
RUN_KEY = "tether_run_id"
"""Metadata key: the ledger's ``run_id`` of the governed run the invocation belongs to."""

_LISTED: tuple[tuple[str, str], ...] = (
    ("tool_call_id", "tether_action_ids"),
    ("idempotency_key", "tether_idempotency_keys"),
    ("approval_id", "tether_approval_ids"),
    ("rule_id", "tether_rule_ids"),
    ("decision", "tether_decisions"),
)
"""Ledger fields gathered onto the runs that wrote them: (row field, metadata key)."""


@runtime_checkable
class LedgerObserver(Protocol):
    """A callback handler that also wants every ledger row as it is written (e.g. the
    OpenTelemetry exporter, which turns ``executing``/``executed`` rows into tool spans)."""

    def tether_observe(self, event: LedgerEvent, *, node_run_id: uuid.UUID | None) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceLabels:
    """The metadata and tags every traced run of one workflow carries (computed once per session)."""

    metadata: Mapping[str, str]
    tags: tuple[str, ...]

    @classmethod
    def of(cls, wf: Workflow) -> TraceLabels:
        meta = {
            "tether_workflow": wf.ref,
            "tether_policy_version": wf.policy.version,
            "tether_prompt_version": wf.prompt_version,
            "tether_router_model": wf.router_model_id,
            "tether_model": wf.model_id,
        }
        tags = ("tether", f"tether:workflow:{wf.ref}", f"tether:policy:{wf.policy.version}",
                f"tether:prompt:{wf.prompt_version}")
        return cls(metadata=meta, tags=tags)

    def config_part(self, thread_id: str, *, trace_id: uuid.UUID | None = None,
                    run_id: str | None = None) -> dict[str, Any]:
        """``metadata`` and ``tags`` of one call's configuration; with ``trace_id``, also the
        root run id (``run_id``) the invocation is traced under."""
        meta: dict[str, Any] = {**self.metadata, "tether_thread_id": thread_id}
        part: dict[str, Any] = {"metadata": meta, "tags": list(self.tags)}
        if trace_id is not None:
            meta[TRACE_KEY] = str(trace_id)
            part["run_id"] = trace_id
        if run_id:
            meta[RUN_KEY] = run_id
        return part


def trace_id_of(config: RunnableConfig) -> str | None:
    """The root run id the current invocation is traced under, if a ``Session`` chose one."""
    value = (config.get("metadata") or {}).get(TRACE_KEY)
    return str(value) if value else None


def run_id_for(config: RunnableConfig) -> str:
    """The ledger run id for a governed run starting now: the trace's root run id when the
    invocation has one, so the ledger row and the trace share one id; else a fresh id."""
    return trace_id_of(config) or uuid.uuid4().hex[:12]


def observe(config: RunnableConfig, event: LedgerEvent) -> None:
    """Label the runs that wrote a ledger row with what it records (call after appending)."""
    manager = config.get("callbacks")
    handlers = getattr(manager, "handlers", None)
    if not handlers:
        return
    node: uuid.UUID | None = getattr(manager, "parent_run_id", None)
    for h in handlers:
        if isinstance(h, LedgerObserver):
            h.tether_observe(event, node_run_id=node)
            continue
        run_map = getattr(h, "run_map", None)
        if node is None or not isinstance(run_map, dict):
            continue
        run = run_map.get(str(node))
        if run is None:
            continue
        _label(run, event)
        root = run_map.get(str(getattr(run, "trace_id", "")))
        if root is not None and root is not run:
            _label(root, event)


def _label(run: Any, event: LedgerEvent) -> None:
    """Add a row's ids to a LangSmith run's metadata (sent when the run ends) and tag it."""
    extra = run.extra if isinstance(getattr(run, "extra", None), dict) else None
    if extra is None:
        return
    meta = extra.setdefault("metadata", {})
    meta.setdefault(RUN_KEY, event.run_id)
    for field, key in _LISTED:
        value = getattr(event, field)
        if value is None:
            continue
        seen = meta.setdefault(key, [])
        if isinstance(seen, list) and value not in seen:
            seen.append(value)
    tag = f"tether:{event.event}"
    tags = run.tags if isinstance(run.tags, list) else []
    if tag not in tags:
        run.tags = [*tags, tag]
