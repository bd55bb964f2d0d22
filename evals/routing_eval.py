"""How well a router routes a labelled set, and what routing by difficulty saves.

    report = evaluate_routing(router, load_examples("routing-eval.yaml"),
                              cheap_model_id="openai:gpt-4o-mini", strong_model_id="openai:gpt-4o")
    report.route_accuracy, report.saved_fraction

Spend is estimated with the price table in force (``tether.models.price_for``; a
``TETHER_PRICES`` file applies) under a stated ``Workload``: each request costs
``calls`` reasoning calls (by its labelled difficulty), each sending the request plus the
route's fixed context and returning ``output_tokens``. The baseline sends every request to the
strong model; the router itself costs nothing (local embeddings).

    tether routing eval EXAMPLES EVALSET [--threshold T] [--cheap ID] [--strong ID] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tether.graphs.routing import CentroidRouter, Classification, RouteExample, choose_tier, load_examples

if TYPE_CHECKING:
    from tether.models import ModelPrice

__all__ = ["RoutingReport", "Workload", "add_routing_command", "evaluate_routing"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Workload:
    """The token profile spend is estimated with."""

    easy_calls: int = 2
    """Reasoning calls an easy request takes (a lookup, then the answer)."""
    hard_calls: int = 4
    """Reasoning calls a hard request takes (lookups, the action, the answer)."""
    output_tokens: int = 150
    """Tokens each call returns."""
    context_tokens: Mapping[str, int] = field(default_factory=dict)
    """Per route: system prompt and tool schemas sent with every call (default ``default_context``)."""
    default_context: int = 1200


@dataclass(frozen=True, kw_only=True, slots=True)
class RoutingReport:
    """Accuracy and spend of one router on one labelled set."""

    requests: int
    threshold: float
    route_accuracy: float
    difficulty_accuracy: float
    to_cheap: int
    """Requests the cheap model would answer."""
    hard_to_cheap: int
    """Hard requests sent to the cheap model (the risk routing takes)."""
    easy_to_strong: int
    """Easy requests sent to the strong model (savings left on the table)."""
    strong_usd: float
    """Estimated spend with every request on the strong model."""
    routed_usd: float
    saved_fraction: float
    cheap_model_id: str
    strong_model_id: str
    prices: Mapping[str, str]
    """The price-table stamp (version, sha256) the spend was computed with."""
    misrouted: tuple[tuple[str, str, str], ...] = ()
    """(request, expected route, routed to), at most 20."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cost(price: ModelPrice, ex: RouteExample, work: Workload, tokens: int) -> float:
    calls = work.easy_calls if ex.difficulty == "easy" else work.hard_calls
    context = work.context_tokens.get(ex.route, work.default_context)
    # each call resends the conversation so far: request, context, and the earlier calls' output
    total_in = sum(tokens + context + i * work.output_tokens for i in range(calls))
    return price.cost(input_tokens=total_in, output_tokens=calls * work.output_tokens)


def evaluate_routing(
    router: CentroidRouter,
    examples: Sequence[RouteExample],
    *,
    cheap_model_id: str,
    strong_model_id: str,
    threshold: float | None = None,
    workload: Workload | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    classified: Sequence[Classification] | None = None,
) -> RoutingReport:
    """Route ``examples`` and compare with their labels (``classified``: reuse an earlier pass)."""
    work = workload or Workload()
    limit = router.threshold if threshold is None else threshold
    found = list(classified) if classified is not None else router.classify_many([e.text for e in examples])
    from tether.models import price_for, price_stamp  # langchain: imported when used, not by the CLI

    cheap, strong = price_for(cheap_model_id, prices), price_for(strong_model_id, prices)
    n = len(examples)
    route_ok = diff_ok = to_cheap = hard_cheap = easy_strong = 0
    strong_usd = routed_usd = 0.0
    misrouted: list[tuple[str, str, str]] = []
    for ex, c in zip(examples, found, strict=True):
        tier = choose_tier(c.difficulty, c.confidence, limit)
        route_ok += c.route == ex.route
        diff_ok += c.difficulty == ex.difficulty
        to_cheap += tier == "cheap"
        hard_cheap += tier == "cheap" and ex.difficulty == "hard"
        easy_strong += tier == "strong" and ex.difficulty == "easy"
        tokens = len(ex.text) // 4 + 1
        strong_usd += _cost(strong, ex, work, tokens)
        routed_usd += _cost(cheap if tier == "cheap" else strong, ex, work, tokens)
        if c.route != ex.route and len(misrouted) < 20:
            misrouted.append((ex.text, ex.route, c.route))
    return RoutingReport(
        requests=n, threshold=limit, route_accuracy=route_ok / n if n else 0.0,
        difficulty_accuracy=diff_ok / n if n else 0.0, to_cheap=to_cheap, hard_to_cheap=hard_cheap,
        easy_to_strong=easy_strong, strong_usd=round(strong_usd, 6), routed_usd=round(routed_usd, 6),
        saved_fraction=round(1 - routed_usd / strong_usd, 4) if strong_usd else 0.0,
        cheap_model_id=cheap_model_id, strong_model_id=strong_model_id,
        prices=price_stamp([cheap_model_id, strong_model_id], prices), misrouted=tuple(misrouted))


def render(report: RoutingReport) -> str:
    """A short human-readable summary."""
    lines = [
        f"requests {report.requests}  threshold {report.threshold:g}",
        f"route accuracy {report.route_accuracy:.1%}  difficulty accuracy {report.difficulty_accuracy:.1%}",
        f"to cheap model {report.to_cheap} ({report.hard_to_cheap} of them labelled hard); "
        f"easy kept on strong {report.easy_to_strong}",
        f"spend all-strong ${report.strong_usd:.4f}  routed ${report.routed_usd:.4f}  "
        f"saved {report.saved_fraction:.1%}  ({report.cheap_model_id} / {report.strong_model_id}, "
        f"prices {report.prices['version']})",
    ]
    lines += [f"  misrouted: {text!r}: {want} -> {got}" for text, want, got in report.misrouted]
    return "\n".join(lines)


def cmd_routing_eval(args: argparse.Namespace) -> int:
    from tether.models import ModelConfig

    models = ModelConfig.from_env()
    router = CentroidRouter.from_file(args.examples, threshold=args.threshold)
    report = evaluate_routing(router, load_examples(args.evalset), cheap_model_id=args.cheap,
                              strong_model_id=args.strong, prices=models.prices)
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return 0


def add_routing_command(sub: Any) -> None:
    """Register ``tether routing eval`` on the CLI's subparsers."""
    from tether.graphs.routing import DEFAULT_THRESHOLD

    grp = sub.add_parser("routing", help="routing by difficulty").add_subparsers(dest="sub", required=True)
    ev = grp.add_parser("eval", help="route a labelled set: accuracy and spend saved (embeddings extra)")
    ev.add_argument("examples", help="labelled examples the centroids are built from (YAML/JSON)")
    ev.add_argument("evalset", help="labelled requests to measure on (YAML/JSON, same format)")
    ev.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="confidence margin for the cheap model")
    ev.add_argument("--cheap", default="openai:gpt-4o-mini", help="model id for easy requests")
    ev.add_argument("--strong", default="openai:gpt-4o", help="model id for everything else")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.set_defaults(fn=cmd_routing_eval)
