"""Latency of ``Policy.evaluate``: median and p99 microseconds per decision.

    .venv/bin/python bench/policy_latency.py [--scale tiny|full]

Four policies, each over a mix of requests with random amounts (so remembered decisions do
not flatter the figures) and a run context with earlier actions:

- the support policy as shipped (``agents/support/agent-policy.yaml``);
- the same with run-context rules (refund after a lookup of the same order, once per order);
- a generated policy with 1,000 rules over 250 tools (written to a temporary file in the
  policy-file format and loaded with ``Policy.from_yaml``), without and with context rules.

``run(scale)`` returns the figures as a dict (``make bench`` calls it); the CLI prints them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tether.guards.context import PriorAction, RunContext, Subject
from tether.guards.policy import ActionRequest, Policy

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "agents" / "support" / "agent-policy.yaml"
CONTEXT_RULES = """    context:
      - {id: order_looked_up, after: lookup_order, same: {order_id: order_id}}
      - {id: once_per_order, max_per_record: 1, effect: require_approval}
"""
SUPPORT_CONTEXT = SUPPORT.read_text().replace(
    "    require_citation: true\n", "    require_citation: true\n" + CONTEXT_RULES, 1
)
CITE = "KB-REFUND@v3#p1"
SCALES = {"tiny": (2, 100), "full": (30, 1000)}
"""Rounds and requests per round."""


def generated_policy(tools: int = 250, *, context: bool) -> str:
    """A policy with four rules per tool (cap, approval threshold, two argument rules; with
    ``context``, one of the argument rules is replaced by a context rule): 1,000 rules at 250."""
    doc: dict[str, Any] = {
        "agent": {"max_wall_clock_seconds": 60, "max_tool_calls": 10, "max_model_spend_usd": 1},
        "tools": {"lookup": {"allowed": True}},
    }
    for i in range(tools):
        rule: dict[str, Any] = {
            "allowed": True,
            "max_amount_usd": 100 + i,
            "require_approval_over_usd": 50 + i,
            "args": {"order_id": {"pattern": f"O-{i}-[0-9]{{4}}"}},
        }
        if context:
            rule["context"] = [{"id": "looked_up", "after": "lookup", "same": {"order_id": "order_id"}}]
        else:
            rule["args"]["channel"] = {"enum": ["mail", "phone", f"desk-{i}"]}
        doc["tools"][f"tool_{i:04d}"] = rule
    return yaml.safe_dump(doc, sort_keys=False)


def _context(rnd: random.Random, order: str) -> RunContext:
    prior = [PriorAction(tool=t, args={"order_id": order}, status="executed", records=(order,))
             for t in ("lookup_order", "lookup") if rnd.random() < 0.7]  # fmt: skip
    return RunContext(request="where is my order", subject=Subject(id="C-1042"), actions=tuple(prior))


def support_requests(n: int, seed: int = 7) -> list[ActionRequest]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        tool = rnd.choice(["issue_refund", "issue_refund", "update_crm_record", "run_sql_query",
                           "lookup_order", "search_policy", "delete_customer"])  # fmt: skip
        amount = rnd.choice([None, round(rnd.uniform(1, 90), 2)])
        order = rnd.choice(["O-20417", "O-20418"])
        out.append(ActionRequest(
            tool=tool, amount_usd=amount, citations=rnd.choice([(), (CITE,)]),
            retrieved_evidence=frozenset({CITE}), records=(order,),
            fields=rnd.choice([None, ("email",), ("credit_limit_usd",)]), free_sql=rnd.random() < 0.2,
            target_subject_ids=rnd.choice([(), ("C-1042",), ("C-7",)]), subject_id="C-1042",
            principal="tether-agent", args={"amount_usd": amount, "order_id": order}, context=_context(rnd, order),
        ))  # fmt: skip
    return out


def generated_requests(n: int, tools: int = 250, seed: int = 11) -> list[ActionRequest]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        i = rnd.randrange(tools + 5)  # a few unlisted tools too
        order = f"O-{i}-{rnd.randrange(10_000):04d}" if rnd.random() < 0.8 else "bad"
        args = {"order_id": order, "channel": rnd.choice(["mail", "fax"])}
        out.append(ActionRequest(tool=f"tool_{i:04d}", amount_usd=round(rnd.uniform(1, 400), 2), args=args,
                                 context=_context(rnd, order)))  # fmt: skip
    return out


def measure(policy: Policy, reqs: list[ActionRequest], rounds: int) -> dict[str, float]:
    for a in reqs:  # warm-up
        policy.evaluate(a)
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for a in reqs:
            t0 = clock()
            policy.evaluate(a)
            samples.append((clock() - t0) / 1000)
    samples.sort()
    return {"median_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99)],
            "decisions": len(samples)}  # fmt: skip


def run(scale: str = "full") -> dict[str, dict[str, float]]:
    """Median and p99 microseconds per decision for each policy (``scale``: tiny or full)."""
    rounds, n = SCALES[scale]
    support = support_requests(n)
    generated = generated_requests(n)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, context in (("1000 rules", False), ("1000 rules + context rules", True)):
            path = Path(tmp) / f"policy-{len(files)}.yaml"
            path.write_text(generated_policy(context=context))
            files[name] = Policy.from_yaml(path)
        cases = [
            ("support policy", Policy.from_yaml(SUPPORT), support),
            ("support + context rules", Policy.from_text(SUPPORT_CONTEXT), support),
            *((name, policy, generated) for name, policy in files.items()),
        ]
        for name, policy, reqs in cases:
            out[name] = measure(policy, reqs, rounds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    args = ap.parse_args()
    for name, r in run(args.scale).items():
        print(f"{name:28s} Policy.evaluate: median {r['median_us']:6.1f} µs  p99 {r['p99_us']:6.1f} µs "
              f"({r['decisions']:.0f} decisions)")  # fmt: skip


if __name__ == "__main__":
    main()
