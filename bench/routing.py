"""Routing by difficulty on the shipped workflows: accuracy and model spend saved.

    .venv/bin/python bench/routing.py [--threshold 0.05] [--cheap ID] [--strong ID] [--json]

For each shipped workflow (support, itdesk) it builds the embedding router from
``agents/<w>/routing-examples.yaml`` and routes the separate labelled set
``agents/<w>/routing-eval.yaml`` (210 requests in all). It prints route and difficulty
accuracy, how many requests the cheap model would answer (and how many of those are labelled
hard), and the estimated spend against sending everything to the strong model, priced with the
price table in force (``TETHER_PRICES`` applies). The fixed context per route is the workflow's
system prompt plus that route's tool schemas. A threshold sweep shows the trade-off. The
shipped offline keyword router (what the LLM router path runs offline) is scored on the same
set for comparison. Needs the ``embeddings`` extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from tether.evals.routing_eval import RoutingReport, Workload, evaluate_routing, render
from tether.graphs.routing import CentroidRouter, RouteExample, load_examples, minilm_embedder
from tether.models import KeywordRouter, ModelConfig, estimate_tokens

AGENTS = Path(__file__).resolve().parent.parent / "agents"
SWEEP = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12)


def _desk(name: str) -> tuple[Any, str, Any, KeywordRouter]:
    if name == "support":
        from tether.agents.support.desk import SUPPORT_ROUTES, SYSTEM_PROMPT
        from tether.agents.support.models import support_router
        from tether.agents.support.tools import build_support_tools

        return SUPPORT_ROUTES, SYSTEM_PROMPT, build_support_tools(), support_router()
    from tether.agents.itdesk.desk import ITDESK_ROUTES, SYSTEM_PROMPT
    from tether.agents.itdesk.models import itdesk_router
    from tether.agents.itdesk.tools import build_itdesk_tools

    return ITDESK_ROUTES, SYSTEM_PROMPT, build_itdesk_tools(), itdesk_router()


def _context(routes: Any, prompt: str, tools: Any) -> dict[str, int]:
    out = {}
    for r in routes:
        schema = json.dumps([tools.get(n).openai_schema() for n in r.tools if tools.get(n) is not None])
        out[r.name] = estimate_tokens([HumanMessage(prompt)]) + len(schema) // 4
    return out


def keyword_accuracy(router: KeywordRouter, routes: Any, examples: list[RouteExample]) -> float:
    """Route accuracy of the offline keyword router (the LLM-router path's stand-in)."""
    from tether.graphs.messages import route_tool

    tool = route_tool({r.name: r.description for r in routes})
    ok = 0
    for ex in examples:
        reply = router.reply([HumanMessage(ex.text)], [tool])
        ok += isinstance(reply, AIMessage) and reply.tool_calls[0]["args"]["route"] == ex.route
    return ok / len(examples)


def run(scale: str = "full", *, threshold: float = 0.05, cheap: str = "openai:gpt-4o-mini",
        strong: str = "openai:gpt-4o") -> dict[str, Any]:
    """Reports per workflow and for both together (``scale="tiny"``: 20 requests per workflow)."""
    embed = minilm_embedder()
    prices = ModelConfig.from_env().prices
    out: dict[str, Any] = {"threshold": threshold, "workflows": {}}
    pooled: list[tuple[RouteExample, Any]] = []
    for name in ("support", "itdesk"):
        routes, prompt, tools, keywords = _desk(name)
        router = CentroidRouter.from_file(AGENTS / name / "routing-examples.yaml", embed=embed,
                                          threshold=threshold, routes=[r.name for r in routes])
        evalset = list(load_examples(AGENTS / name / "routing-eval.yaml"))
        if scale == "tiny":
            evalset = evalset[::max(1, len(evalset) // 20)][:20]
        found = router.classify_many([e.text for e in evalset])
        work = Workload(context_tokens=_context(routes, prompt, tools))
        sweep = {t: evaluate_routing(router, evalset, cheap_model_id=cheap, strong_model_id=strong, threshold=t,
                                     workload=work, prices=prices, classified=found) for t in SWEEP}
        report = evaluate_routing(router, evalset, cheap_model_id=cheap, strong_model_id=strong,
                                  workload=work, prices=prices, classified=found)
        out["workflows"][name] = {"report": report, "sweep": sweep,
                                  "keyword_route_accuracy": keyword_accuracy(keywords, routes, evalset)}
        pooled += [(e, (report, work)) for e in evalset]
    reports = [w["report"] for w in out["workflows"].values()]
    n = sum(r.requests for r in reports)
    strong_usd = sum(r.strong_usd for r in reports)
    routed_usd = sum(r.routed_usd for r in reports)
    out["total"] = {
        "requests": n,
        "route_accuracy": sum(r.route_accuracy * r.requests for r in reports) / n,
        "difficulty_accuracy": sum(r.difficulty_accuracy * r.requests for r in reports) / n,
        "to_cheap": sum(r.to_cheap for r in reports), "hard_to_cheap": sum(r.hard_to_cheap for r in reports),
        "strong_usd": round(strong_usd, 6), "routed_usd": round(routed_usd, 6),
        "saved_fraction": round(1 - routed_usd / strong_usd, 4),
        "keyword_route_accuracy": sum(w["keyword_route_accuracy"] * w["report"].requests
                                      for w in out["workflows"].values()) / n,
    }
    return out


def _jsonable(data: Any) -> Any:
    if isinstance(data, RoutingReport):
        return data.as_dict()
    if isinstance(data, dict):
        return {str(k): _jsonable(v) for k, v in data.items()}
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--cheap", default="openai:gpt-4o-mini")
    ap.add_argument("--strong", default="openai:gpt-4o")
    ap.add_argument("--scale", default="full", choices=("tiny", "full"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.scale, threshold=args.threshold, cheap=args.cheap, strong=args.strong)
    if args.json:
        print(json.dumps(_jsonable(out), indent=2))
        return
    for name, w in out["workflows"].items():
        print(f"== {name}\n{render(w['report'])}")
        print(f"keyword router route accuracy {w['keyword_route_accuracy']:.1%}")
        print("threshold sweep: " + "  ".join(
            f"{t:g}: cheap {r.to_cheap} (hard {r.hard_to_cheap}) saved {r.saved_fraction:.1%}"
            for t, r in w["sweep"].items()))
    t = out["total"]
    print(f"== both: {t['requests']} requests, route accuracy {t['route_accuracy']:.1%} "
          f"(keyword router {t['keyword_route_accuracy']:.1%}), difficulty accuracy {t['difficulty_accuracy']:.1%}, "
          f"cheap {t['to_cheap']} (hard {t['hard_to_cheap']}), spend ${t['routed_usd']:.4f} vs all-strong "
          f"${t['strong_usd']:.4f}: saved {t['saved_fraction']:.1%}")


if __name__ == "__main__":
    main()
