"""Evaluate Cedar (``cedarpy``) for tether's role/tool permissions.

    .venv/bin/pip install cedarpy && .venv/bin/python bench/cedar_eval.py [--requests 500]

Translates the ``principals:``/``roles:`` sections (and ``allowed: false``) of the support
policy into Cedar, decides the same requests with both engines, fails if any decision
differs, and prints the median µs per decision of each (Cedar with pre-parsed policy set and
entities; native ``Policy.evaluate`` deciding the whole tool rule, not only the role part).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tether.guards.policy import ActionRequest, AnyDecision, Policy

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "agents" / "support" / "agent-policy.yaml"
RBAC = SUPPORT.read_text().replace(
    "  handoff_to_human:\n    allowed: true\n", "  handoff_to_human:\n    allowed: true\n  wipe_account:\n    allowed: false\n"
) + """
principals:
  support_bot: {id: tether-agent, roles: [support_agent]}
  reporting_bot: {id: reporting-agent, roles: [analyst]}
  ops_bot: {id: ops-agent, roles: [analyst, support_agent]}
  intern_bot: {id: intern-agent, roles: []}
roles:
  support_agent:
    tools: [lookup_customer, lookup_order, search_policy, issue_refund, update_crm_record, handoff_to_human]
  analyst:
    tools: [run_sql_query, lookup_order, wipe_account]
"""


def to_cedar(policy: Policy) -> tuple[str, list[dict[str, Any]]]:
    """Cedar policies and entities equivalent to the role/tool part of ``policy``."""
    spec = policy.spec
    lines = []
    for role, section in (spec.roles or {}).items():
        for tool in section.tools:
            lines.append(f'permit(principal in Role::"{role}", action == Action::"call", resource == Tool::"{tool}");')
    for tool, rule in spec.tools.items():
        if not rule.allowed:
            lines.append(f'forbid(principal, action == Action::"call", resource == Tool::"{tool}");')
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Role", "id": r}, "attrs": {}, "parents": []} for r in spec.roles or {}
    ]
    for key, p in (spec.principals or {}).items():
        entities.append({"uid": {"type": "Agent", "id": p.id or key}, "attrs": {},
                         "parents": [{"type": "Role", "id": r} for r in p.roles]})  # fmt: skip
    entities += [{"uid": {"type": "Tool", "id": t}, "attrs": {}, "parents": []} for t in spec.tools]
    return "\n".join(lines), entities


def native_granted(d: AnyDecision) -> bool:
    """The role/tool part of a native decision: no role, listing or ``allowed`` rule denied."""
    gate = ("roles.", "default.")
    return not any(m.effect == "deny" and (m.rule_id.startswith(gate) or m.rule_id.endswith(".allowed"))
                   for m in d.matched)  # fmt: skip


def requests(n: int, tools: list[str], seed: int = 11) -> list[tuple[str, ActionRequest]]:
    rnd = random.Random(seed)
    agents = ["tether-agent", "reporting-agent", "ops-agent", "intern-agent", "unknown-agent"]
    out = []
    for _ in range(n):
        agent, tool = rnd.choice(agents), rnd.choice([*tools, "delete_customer"])
        a = ActionRequest(tool=tool, principal=agent, amount_usd=10.0, citations=("K",),
                          retrieved_evidence=frozenset({"K"}), fields=("email",), subject_id="C-1")
        out.append((agent, a))
    return out


def main() -> int:
    import cedarpy

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    policy = Policy.from_text(RBAC, source="rbac")
    text, entities = to_cedar(policy)
    pset, ents = cedarpy.PolicySet.from_str(text), cedarpy.Entities.from_json_str(__import__("json").dumps(entities))
    reqs = requests(args.requests, list(policy.tools))
    cedar_req = [{"principal": {"type": "Agent", "id": agent}, "action": {"type": "Action", "id": "call"},
                  "resource": {"type": "Tool", "id": a.tool}, "context": {}} for agent, a in reqs]  # fmt: skip
    disagree = []
    for (agent, a), cr in zip(reqs, cedar_req, strict=True):
        c = cedarpy.is_authorized(cr, pset, ents).allowed
        n = native_granted(policy.evaluate(a))
        if c != n:
            disagree.append((agent, a.tool, c, n))
    allowed = sum(cedarpy.is_authorized(cr, pset, ents).allowed for cr in cedar_req)
    print(f"{len(reqs)} requests: {allowed} allowed by Cedar, {len(disagree)} disagreements")
    if disagree:
        for d in disagree[:10]:
            print("  DISAGREE agent={} tool={} cedar={} native={}".format(*d))
        return 1
    cedar_t: list[float] = []
    native_t: list[float] = []
    for _ in range(args.rounds):
        for (_agent, a), cr in zip(reqs, cedar_req, strict=True):
            t0 = time.perf_counter_ns()
            cedarpy.is_authorized(cr, pset, ents)
            t1 = time.perf_counter_ns()
            policy.evaluate(a)
            t2 = time.perf_counter_ns()
            cedar_t.append((t1 - t0) / 1000)
            native_t.append((t2 - t1) / 1000)
    t0 = time.perf_counter_ns()
    for _ in range(args.rounds):
        cedarpy.is_authorized_batch(cedar_req, pset, ents)
    batch = (time.perf_counter_ns() - t0) / 1000 / (args.rounds * len(cedar_req))
    print(f"Cedar is_authorized:   median {statistics.median(cedar_t):6.1f} µs per decision "
          f"(batch: {batch:.1f} µs amortised)")  # fmt: skip
    print(f"native Policy.evaluate: median {statistics.median(native_t):6.1f} µs per decision "
          "(whole tool rule + roles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
