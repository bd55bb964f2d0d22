"""Median latency of ``Policy.evaluate`` for the support policy over a mix of requests.

    .venv/bin/python bench/policy_latency.py [--rounds 200]

Prints the median and p95 microseconds per decision, for the support policy as shipped and
for the same policy with the optional sections (roles, tiers, args rules) switched on.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from tether.guards.policy import ActionRequest, Policy

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "agents" / "support" / "agent-policy.yaml"
EXTENDED = SUPPORT.read_text().replace(
    "    require_citation: true\n",
    "    risk: financial\n    args:\n      amount_usd: {min: 0.01, max: 50}\n"
    '      order_id: {pattern: "O-[0-9]{5}"}\n',
) + """
principals:
  support_bot: {id: tether-agent, roles: [support_agent]}
roles:
  support_agent:
    tools: [lookup_customer, lookup_order, search_policy, issue_refund, update_crm_record, handoff_to_human]
tiers:
  financial: {require_citation: true}
"""
CITE = "KB-REFUND@v3#p1"


def requests(n: int, seed: int = 7) -> list[ActionRequest]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        tool = rnd.choice(["issue_refund", "issue_refund", "update_crm_record", "run_sql_query",
                           "lookup_order", "search_policy", "delete_customer"])  # fmt: skip
        amount = rnd.choice([None, 10.0, 30.0, 80.0])
        cites = rnd.choice([(), (CITE,)])
        out.append(ActionRequest(
            tool=tool, amount_usd=amount, citations=cites, retrieved_evidence=frozenset({CITE}),
            fields=rnd.choice([None, ("email",), ("credit_limit_usd",)]), free_sql=rnd.random() < 0.2,
            target_subject_ids=rnd.choice([(), ("C-1042",), ("C-7",)]), subject_id="C-1042",
            principal="tether-agent", args={"amount_usd": amount, "order_id": "O-20417"},
        ))  # fmt: skip
    return out


def median_us(policy: Policy, reqs: list[ActionRequest], rounds: int) -> tuple[float, float]:
    samples: list[float] = []
    for _ in range(rounds):
        for a in reqs:
            t0 = time.perf_counter_ns()
            policy.evaluate(a)
            samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    reqs = requests(args.requests)
    for name, policy in (("support policy", Policy.from_yaml(SUPPORT)),
                         ("support + roles/tiers/args", Policy.from_text(EXTENDED))):  # fmt: skip
        med, p95 = median_us(policy, reqs, args.rounds)
        print(f"{name:28s} Policy.evaluate: median {med:6.1f} µs  p95 {p95:6.1f} µs "
              f"({args.rounds * len(reqs)} decisions)")  # fmt: skip


if __name__ == "__main__":
    main()
