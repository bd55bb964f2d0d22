"""Citation-bearing retrieval.

``KnowledgeBase`` is BM25 and always available. ``VectorKnowledgeBase`` (LlamaIndex over
embedded Chroma) and ``HybridKnowledgeBase`` (BM25 + vectors, reciprocal-rank fusion) need the
``embeddings`` extra; importing them is free, building one without the extra raises ``MissingExtra``.
``KnowledgeStore`` is the persistent knowledge base under ``$TETHER_HOME/kb/<name>/``: ingests
Markdown, text and PDF incrementally, keeps versions and retired chunks resolvable, and searches
with BM25, vectors or both.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.retrieval.hybrid import EvidenceSearch, HybridKnowledgeBase, reciprocal_rank_fusion
    from tether.retrieval.knowledge import Evidence, KnowledgeBase, Passage, read_passages
    from tether.retrieval.store import DocumentInfo, IngestReport, KnowledgeStore, RetrievalFallback
    from tether.retrieval.vector import VectorKnowledgeBase

_HOME = {
    "EvidenceSearch": "hybrid", "HybridKnowledgeBase": "hybrid", "reciprocal_rank_fusion": "hybrid",
    "Evidence": "knowledge", "KnowledgeBase": "knowledge", "Passage": "knowledge", "read_passages": "knowledge",
    "DocumentInfo": "store", "IngestReport": "store", "KnowledgeStore": "store", "RetrievalFallback": "store",
    "VectorKnowledgeBase": "vector",
}

__all__ = [
    "DocumentInfo",
    "Evidence",
    "EvidenceSearch",
    "HybridKnowledgeBase",
    "IngestReport",
    "KnowledgeBase",
    "KnowledgeStore",
    "Passage",
    "RetrievalFallback",
    "VectorKnowledgeBase",
    "read_passages",
    "reciprocal_rank_fusion",
]


def __getattr__(name: str) -> Any:  # imported on first use: the CLI's other commands stay fast
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'tether.retrieval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tether.retrieval.{module}"), name)
