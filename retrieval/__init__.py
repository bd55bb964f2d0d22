"""Citation-bearing retrieval.

``KnowledgeBase`` is BM25 and always available. ``VectorKnowledgeBase`` (LlamaIndex over
embedded Chroma) and ``HybridKnowledgeBase`` (BM25 + vectors, reciprocal-rank fusion) need the
``embeddings`` extra; importing them is free, building one without the extra raises ``MissingExtra``.
``KnowledgeStore`` is the persistent knowledge base under ``$TETHER_HOME/kb/<name>/``: ingests
Markdown, text and PDF incrementally, keeps versions and retired chunks resolvable, and searches
with BM25, vectors or both.
"""

from tether.retrieval.hybrid import EvidenceSearch, HybridKnowledgeBase, reciprocal_rank_fusion
from tether.retrieval.knowledge import Evidence, KnowledgeBase, Passage, read_passages
from tether.retrieval.store import DocumentInfo, IngestReport, KnowledgeStore, RetrievalFallback
from tether.retrieval.vector import VectorKnowledgeBase

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
