"""How well a cited passage supports an action's stated reason: a score in [0, 1].

The citation gate asks a ``RelevanceScorer`` whether the passage a call cites is about what
the call says it is doing (``reason``). Two scorers ship:

* ``LexicalRelevance`` (the default): the share of the reason's content words that the passage
  also uses, after lower-casing, dropping stop words and light suffix stemming ("damaged",
  "damages" and "damage" are one word). Deterministic, instant, no model. It measures
  *coverage of the reason*, so a short reason fully covered by a long passage scores 1.
* ``EmbeddingRelevance``: cosine similarity of sentence embeddings, negative values clipped to
  0. Catches paraphrases ("refund request" vs "money back"). Give it the bundled MiniLM model:
  ``EmbeddingRelevance(embed_model=tether.retrieval.embeddings.load_embed_model())`` (loading
  takes a few seconds, once per process).

A workflow picks one with ``Workflow(relevance=...)``; the threshold is the policy's
``tools.<t>.citation.min_relevance`` (with MiniLM, unrelated text scores about 0.0-0.2 and a
reason the passage addresses about 0.4-0.6).
"""

from __future__ import annotations

import functools
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["STOP_WORDS", "EmbeddingRelevance", "LexicalRelevance", "RelevanceScorer", "content_words"]


@runtime_checkable
class RelevanceScorer(Protocol):
    """Scores how well ``passage`` supports ``reason``: 0 (unrelated) .. 1 (fully supported)."""

    def score(self, reason: str, passage: str) -> float: ...


STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own per please same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up us very was we were what when where
    which while who whom why will with would you your yours yourself yourselves may must also via
    ok okay""".split()  # noqa: SIM905 - a word list reads better as text
)
"""English function words that carry no topic (negations included: relevance is about topic)."""

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ied", "ies", "ed", "es", "ly", "s", "e")


def _stem(word: str) -> str:
    """Strip one common English suffix, keeping at least three letters ("refunds" -> "refund")."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            return stem + "y" if suffix in ("ies", "ied") else stem
    return word


@functools.lru_cache(maxsize=4096)
def content_words(text: str) -> frozenset[str]:
    """The stemmed content words of ``text`` (lower-cased; stop words and 1-letter tokens dropped)."""
    return frozenset(
        _stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class LexicalRelevance:
    """Share of the reason's content words the passage also has (deterministic, no model)."""

    def score(self, reason: str, passage: str) -> float:
        wanted = content_words(reason)
        if not wanted:
            return 0.0
        return len(wanted & content_words(passage)) / len(wanted)


@dataclass(kw_only=True)
class EmbeddingRelevance:
    """Cosine similarity of sentence embeddings, clipped to [0, 1].

    ``embed_model`` is any LlamaIndex embedding (``get_text_embedding``), e.g. the bundled
    ``tether.retrieval.embeddings.load_embed_model()``. Vectors are cached (``cache_size`` texts).
    """

    embed_model: Any
    cache_size: int = 512
    _cache: OrderedDict[str, tuple[float, ...]] = field(default_factory=OrderedDict, repr=False)

    def _vector(self, text: str) -> tuple[float, ...]:
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        vec = tuple(float(x) for x in self.embed_model.get_text_embedding(text))
        self._cache[text] = vec
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vec

    def score(self, reason: str, passage: str) -> float:
        if not reason.strip() or not passage.strip():
            return 0.0
        a, b = self._vector(reason), self._vector(passage)
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        if norm == 0:
            return 0.0
        cos = sum(x * y for x, y in zip(a, b, strict=True)) / norm
        return min(1.0, max(0.0, cos))
