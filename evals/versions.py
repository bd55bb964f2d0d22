"""What a built workflow runs: policy, prompt, models and tool schemas, each with a content hash.

    workflow_versions(session.workflow, policy_path)
    # {"policy": {"version": "sha256:…", "sha256": "…", "path": "…"},
    #  "prompt": {"version": "support-v1", "sha256": "…"},
    #  "models": {"router": "offline:router-v1", "reasoning": "offline:support-v1"},
    #  "tools": {"issue_refund": {"schema_version": "1", "sha256": "…"}, …},
    #  "routes": {"refund": {"tools": ["lookup_customer", …], "sha256": "…"}, …},
    #  "prices": {"offline:support-v1": {"input_per_mtok": …, "output_per_mtok": …, "max_output_tokens": …}},
    #  "price_table": {"version": "tether-prices-2026-01", "sha256": "…"},
    #  "routing": {"kind": "llm", "router_model": "offline:router-v1"}}

``price_table`` is the stamp the ledger records on every ``run_started`` row; ``routing`` is
the centroid router's threshold, embedding model and examples hash when the workflow has one.

The policy ``version`` is the one the ledger records on every decision (``policy_version``);
``sha256`` values are of the exact policy file text, the system prompt text, and each tool's
model-facing schema as canonical JSON. Two runs with equal values ran the same configuration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.graphs.workflow import Workflow

__all__ = ["flatten_versions", "sha256_text", "workflow_versions"]


def sha256_text(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _policy_file(workflow: Workflow, policy_path: str | Path | None) -> Path | None:
    for candidate in (policy_path, workflow.policy.source):
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
    return None


def workflow_versions(workflow: Workflow, policy_path: str | Path | None = None) -> dict[str, Any]:
    """The versions and content hashes of ``workflow``'s policy, prompt, models and tools.

    ``policy_path``: the policy file enforced (default: the file the policy was read from).
    """
    path = _policy_file(workflow, policy_path)
    tools = {
        t.name: {"schema_version": t.schema_version,
                 "sha256": sha256_text(json.dumps(t.openai_schema(), sort_keys=True, separators=(",", ":")))}
        for t in workflow.tools.tools
    }
    return {
        "policy": {"version": workflow.policy.version,
                   "sha256": sha256_text(path.read_text(encoding="utf-8")) if path is not None else None,
                   "path": str(path) if path is not None else workflow.policy.source},
        "prompt": {"version": workflow.prompt_version, "sha256": sha256_text(workflow.system_prompt)},
        "models": {"router": workflow.router_model_id, "reasoning": workflow.model_id,
                   **({"cheap": workflow.cheap_model_id} if workflow.cheap_model_id else {}),
                   **({"fallback": workflow.fallback_model_id} if workflow.fallback_model_id else {})},
        "tools": dict(sorted(tools.items())),
        "routes": _routes(workflow),
        "prices": _prices(workflow),
        "price_table": workflow._price_stamp(),
        "routing": workflow.router.describe() if workflow.router is not None
        else {"kind": "llm", "router_model": workflow.router_model_id},
    }


def _routes(workflow: Workflow) -> dict[str, Any]:
    """Each route's offered tools, and a hash of what the router is shown (name, description, tools)."""
    return {r.name: {"tools": list(r.tools),
                     "sha256": sha256_text(json.dumps({"name": r.name, "description": r.description,
                                                       "tools": list(r.tools)}, sort_keys=True))}
            for r in workflow.routes}


def _prices(workflow: Workflow) -> dict[str, Any]:
    """USD per million tokens of the router and reasoning models (what the spend cap charges)."""
    from tether.models import price_for

    ids = sorted(set(workflow._model_ids()))
    return {i: price_for(i, workflow.prices).model_dump(mode="json") for i in ids}


def flatten_versions(data: Any, prefix: str = "") -> dict[str, str]:
    """A nested versions block as dotted keys to text values (strings as they are, the rest as JSON)."""
    if isinstance(data, Mapping):
        out: dict[str, str] = {}
        for k, v in data.items():
            out.update(flatten_versions(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data if isinstance(data, str) else json.dumps(data)}
