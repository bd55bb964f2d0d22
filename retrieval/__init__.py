"""Citation-bearing retrieval."""

from tether.retrieval.knowledge import Evidence, KnowledgeBase, Passage

__all__ = ["Evidence", "KnowledgeBase", "Passage"]
