"""Hybrid search: BM25 and vector hits merged by reciprocal-rank fusion (RRF).

RRF scores a passage ``sum(1 / (k + rank))`` over the ranked lists it appears in (rank from 1),
so a passage both retrievers like beats one only a single retriever ranks first, and the two
incomparable score scales (BM25 vs cosine) never have to be normalised. ``k = 60`` is the value
from Cormack et al. (2009).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from tether.retrieval.knowledge import Evidence, KnowledgeBase, Passage, read_passages
from tether.retrieval.vector import VectorKnowledgeBase

__all__ = ["EvidenceSearch", "HybridKnowledgeBase", "reciprocal_rank_fusion"]


class EvidenceSearch(Protocol):
    """The search contract every knowledge base here meets."""

    def search(self, query: str, *, top_k: int = 3) -> list[Evidence]: ...

    def get(self, evidence_id: str) -> Passage | None: ...

    def __len__(self) -> int: ...


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], *, k: int = 60) -> list[tuple[str, float]]:
    """Fuse ranked id lists; best first, ties broken by first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


class HybridKnowledgeBase:
    """BM25 (exact terms: order ids, "30-day") plus vectors (paraphrases: "parcel never arrived")."""

    def __init__(
        self, lexical: EvidenceSearch, semantic: EvidenceSearch, *, k: int = 60, depth: int = 10
    ) -> None:
        if len(lexical) != len(semantic):
            raise ValueError("both retrievers must index the same passages")
        self.lexical, self.semantic, self.k, self.depth = lexical, semantic, k, depth

    @classmethod
    def from_dir(cls, path: Path, *, persist_dir: Path | str, embed_model: Any = None) -> HybridKnowledgeBase:
        passages = read_passages(path)
        return cls(
            KnowledgeBase(passages),
            VectorKnowledgeBase(passages, persist_dir=persist_dir, embed_model=embed_model),
        )

    def get(self, evidence_id: str) -> Passage | None:
        return self.lexical.get(evidence_id)

    def __len__(self) -> int:
        return len(self.lexical)

    def search(self, query: str, *, top_k: int = 3) -> list[Evidence]:
        """Best fused passages; ``score`` is the RRF score (at most ``2 / (k + 1)``)."""
        if not query.strip() or top_k <= 0:
            return []
        n = max(top_k, self.depth)
        lists = [[e.evidence_id for e in kb.search(query, top_k=n)] for kb in (self.lexical, self.semantic)]
        out: list[Evidence] = []
        for eid, score in reciprocal_rank_fusion(lists, k=self.k)[:top_k]:
            p = self.get(eid)
            if p is not None:
                out.append(Evidence(**p.model_dump(), score=round(score, 6)))
        return out
