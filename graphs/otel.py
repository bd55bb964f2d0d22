"""OpenTelemetry spans for governed runs (extra ``tracing``), with GenAI semantic conventions.

    Session.open("support", tracer_provider=provider)      # or TETHER_OTEL=1: the global provider

One span per graph invocation (``invoke_agent <workflow>``), per graph node, per model call
(``chat <model>``: ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``/``output_tokens``)
and per executed tool call (``execute_tool <tool>``: ``gen_ai.tool.name``, ``gen_ai.tool.call.id``),
with ``tether.*`` attributes: thread id, trace run id, ledger run id, rule id, decision,
approval id and idempotency key. Tool spans follow the ledger (``executing`` opens one,
``executed``/``failed`` closes it); policy decisions and approvals are events on node spans.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from tether.errors import MissingExtra
from tether.graphs.tracing import RUN_KEY

if TYPE_CHECKING:
    from langchain_core.outputs import LLMResult

    from tether.checkpoints.records import LedgerEvent

__all__ = ["OtelExporter"]


class OtelExporter(BaseCallbackHandler):
    """A LangChain callback handler that exports a governed run as OpenTelemetry spans."""

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise MissingExtra(extra="tracing", feature="OpenTelemetry spans") from exc
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._trace = trace
        self._tracer = provider.get_tracer("tether")
        self._spans: dict[UUID, Any] = {}
        """LangChain run id -> its span (runs without a span map to their parent's)."""
        self._owned: set[UUID] = set()
        self._tools: dict[str, Any] = {}
        self._calls: dict[str, dict[str, str]] = {}
        """tool call id -> what the policy decided about it (for its tool span)."""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ spans

    def _start(self, run_id: UUID, parent: UUID | None, name: str, attrs: dict[str, Any]) -> Any:
        with self._lock:
            up = self._spans.get(parent) if parent is not None else None
            ctx = self._trace.set_span_in_context(up) if up is not None else None
            span = self._tracer.start_span(name, context=ctx, attributes={k: v for k, v in attrs.items()
                                                                          if v is not None})
            self._spans[run_id] = span
            self._owned.add(run_id)
        return span

    def _end(self, run_id: UUID, error: BaseException | None = None) -> None:
        with self._lock:
            span = self._spans.pop(run_id, None)
            owned = run_id in self._owned
            self._owned.discard(run_id)
        if span is None or not owned:
            return
        if error is not None and type(error).__name__ != "GraphInterrupt":
            from opentelemetry.trace import Status, StatusCode

            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
        elif error is not None:
            span.set_attribute("tether.interrupted", True)
        span.end()

    @staticmethod
    def _base(meta: dict[str, Any] | None) -> dict[str, Any]:
        m = meta or {}
        return {"tether.thread_id": m.get("tether_thread_id") or m.get("thread_id"),
                "tether.trace_run_id": m.get("tether_trace_id"), "tether.run_id": m.get(RUN_KEY),
                "tether.workflow": m.get("tether_workflow")}

    # ------------------------------------------------------------------ LangChain callbacks

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
        meta = metadata or {}
        name = kwargs.get("name") or ""
        if parent_run_id is None:
            wf = meta.get("tether_workflow", name)
            self._start(run_id, None, f"invoke_agent {wf}", {
                **self._base(meta), "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": wf,
                "gen_ai.conversation.id": meta.get("tether_thread_id"),
                "tether.trace_run_id": str(run_id), "tether.policy_version": meta.get("tether_policy_version"),
                "tether.prompt_version": meta.get("tether_prompt_version")})
        elif name and name == meta.get("langgraph_node"):
            self._start(run_id, parent_run_id, f"node {name}", {**self._base(meta), "tether.node": name,
                                                                 "langgraph.step": meta.get("langgraph_step")})
        else:  # routing functions and wrappers: their children hang under the parent's span
            with self._lock:
                up = self._spans.get(parent_run_id)
                if up is not None:
                    self._spans[run_id] = up

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                            **kwargs: Any) -> None:
        meta = metadata or {}
        node = meta.get("langgraph_node")
        model = meta.get("ls_model_name") or (meta.get("tether_router_model") if node == "router"
                                              else meta.get("tether_model"))
        self._start(run_id, parent_run_id, f"chat {model}", {
            **self._base(meta), "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
            "gen_ai.provider.name": meta.get("ls_provider")})

    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                     **kwargs: Any) -> None:
        self.on_chat_model_start(serialized, prompts, run_id=run_id, parent_run_id=parent_run_id,
                                 metadata=metadata)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._spans.get(run_id)
        if span is not None:
            inp = out = 0
            for batch in response.generations:
                for g in batch:
                    usage = getattr(getattr(g, "message", None), "usage_metadata", None) or {}
                    inp += int(usage.get("input_tokens", 0))
                    out += int(usage.get("output_tokens", 0))
            span.set_attribute("gen_ai.usage.input_tokens", inp)
            span.set_attribute("gen_ai.usage.output_tokens", out)
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name")
        self._start(run_id, parent_run_id, f"execute_tool {name}", {
            **self._base(metadata), "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    # ------------------------------------------------------------------ ledger rows

    def tether_observe(self, event: LedgerEvent, *, node_run_id: UUID | None) -> None:
        """Turn a ledger row into span attributes, events and tool spans."""
        node = self._spans.get(node_run_id) if node_run_id is not None else None
        facts = {"tether.rule_id": event.rule_id, "tether.decision": event.decision,
                 "tether.approval_id": event.approval_id, "tether.idempotency_key": event.idempotency_key,
                 "gen_ai.tool.name": event.tool, "gen_ai.tool.call.id": event.tool_call_id,
                 "tether.run_id": event.run_id}
        facts = {k: v for k, v in facts.items() if v is not None}
        call = event.tool_call_id or ""
        if event.event in ("proposed", "approval_requested", "approved", "rejected", "edited") and call:
            known = self._calls.setdefault(call, {})
            known.update({k: str(v) for k, v in facts.items() if k.startswith("tether.")})
        if node is not None:
            node.add_event(f"tether.{event.event}", facts)
            node.set_attributes({k: v for k, v in facts.items() if k.startswith("tether.")})
        key = event.idempotency_key or call
        if event.event == "executing" and node_run_id is not None:
            attrs = {"gen_ai.operation.name": "execute_tool", **self._calls.get(call, {}), **facts,
                     "tether.thread_id": event.thread_id}
            parent = self._trace.set_span_in_context(node) if node is not None else None
            self._tools[key] = self._tracer.start_span(f"execute_tool {event.tool}", context=parent,
                                                       attributes=attrs)
        elif event.event in ("executed", "failed"):
            span = self._tools.pop(key, None)
            self._calls.pop(call, None)
            if span is not None:
                if event.event == "failed":
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR, (event.error or "failed")[:500]))
                span.end()
