"""Citation-bearing retrieval.

``KnowledgeBase`` is BM25 and always available. ``VectorKnowledgeBase`` (LlamaIndex over
embedded Chroma) and ``HybridKnowledgeBase`` (BM25 + vectors, reciprocal-rank fusion) need the
``embeddings`` extra; importing them is free, building one without the extra raises ``MissingExtra``.
"""

from tether.retrieval.hybrid import EvidenceSearch, HybridKnowledgeBase, reciprocal_rank_fusion
from tether.retrieval.knowledge import Evidence, KnowledgeBase, Passage, read_passages
from tether.retrieval.vector import VectorKnowledgeBase

__all__ = [
    "Evidence",
    "EvidenceSearch",
    "HybridKnowledgeBase",
    "KnowledgeBase",
    "Passage",
    "VectorKnowledgeBase",
    "read_passages",
    "reciprocal_rank_fusion",
]
