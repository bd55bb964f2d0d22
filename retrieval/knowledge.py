"""A citation-bearing knowledge base over markdown policy documents.

Each document has front matter (``id``, ``title``, ``version``); each paragraph becomes a
passage with a stable evidence id ``<doc id>@v<version>#p<n>``. Search is LlamaIndex's BM25
retriever; every hit is returned as an ``Evidence`` value the agent must cite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

__all__ = ["Evidence", "KnowledgeBase", "Passage", "read_passages"]


class Passage(BaseModel):
    """One paragraph of one document version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evidence_id: str
    doc_id: str
    version: int
    title: str
    text: str
    source: str = ""
    """Where the document came from (a path relative to the ingested directory, or a URL)."""
    updated_at: str | None = None
    """When the document version was last updated (ISO 8601 date or instant)."""
    trust: Literal["internal", "external"] = "internal"
    """``internal``: written by the organisation; ``external``: a third party could write it."""
    status: Literal["current", "superseded", "retired"] = "current"
    """``superseded``: a newer version of the document exists; ``retired``: the file is gone."""


class Evidence(BaseModel):
    """A retrieved passage with its score: what a citation points to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evidence_id: str
    doc_id: str
    version: int
    title: str
    text: str
    source: str = ""
    """Where the document came from (a path relative to the ingested directory, or a URL)."""
    updated_at: str | None = None
    """When the document version was last updated (ISO 8601 date or instant)."""
    trust: Literal["internal", "external"] = "internal"
    """``internal``: written by the organisation; ``external``: a third party could write it."""
    status: Literal["current", "superseded", "retired"] = "current"
    """``superseded``: a newer version of the document exists; ``retired``: the file is gone."""
    score: float


def _read_doc(path: Path) -> list[Passage]:
    raw = path.read_text(encoding="utf-8")
    if not raw.startswith("---\n"):
        raise ValueError(f"{path}: missing front matter (id, title, version)")
    _, front, body = raw.split("---\n", 2)
    meta = yaml.safe_load(front)
    doc_id, title, version = str(meta["id"]), str(meta["title"]), int(meta["version"])
    paras = [p.strip() for p in body.split("\n\n") if p.strip()]
    return [
        Passage(
            evidence_id=f"{doc_id}@v{version}#p{i}",
            doc_id=doc_id,
            version=version,
            title=title,
            text=" ".join(p.split()),
        )
        for i, p in enumerate(paras, start=1)
    ]


def read_passages(path: Path) -> list[Passage]:
    """Every passage of every ``*.md`` document under ``path``, in file-name order."""
    passages: list[Passage] = []
    for doc in sorted(path.glob("*.md")):
        passages.extend(_read_doc(doc))
    return passages


class KnowledgeBase:
    """BM25 search over passages. Build with ``from_dir`` or ``from_passages``."""

    def __init__(self, passages: Iterable[Passage]) -> None:
        self._passages = {p.evidence_id: p for p in passages}
        if not self._passages:
            raise ValueError("a knowledge base needs at least one passage")
        self._retriever: Any = None
        self._lock = threading.Lock()

    def _bm25(self) -> Any:
        """The LlamaIndex BM25 retriever, built on the first search (importing it is slow)."""
        if self._retriever is None:
            from llama_index.core.schema import BaseNode, TextNode
            from llama_index.retrievers.bm25 import BM25Retriever

            nodes: list[BaseNode] = [
                TextNode(id_=p.evidence_id, text=f"{p.title}. {p.text}") for p in self._passages.values()
            ]
            # ``search`` sets ``similarity_top_k`` per query, so any ``top_k`` is honoured.
            self._retriever = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=len(nodes))
        return self._retriever

    @classmethod
    def from_dir(cls, path: Path) -> KnowledgeBase:
        return cls(read_passages(path))

    def get(self, evidence_id: str) -> Passage | None:
        return self._passages.get(evidence_id)

    def __len__(self) -> int:
        return len(self._passages)

    def search(self, query: str, *, top_k: int = 3) -> list[Evidence]:
        """Best passages for ``query``, highest score first; zero-score hits are dropped."""
        if not query.strip():
            return []
        if top_k <= 0:
            return []
        retriever = self._bm25()
        # Score every passage but materialise only the head: building thousands of hits is the cost.
        with self._lock:
            retriever.similarity_top_k = min(top_k, len(self._passages))
            hits = retriever.retrieve(query)[:top_k]
        out: list[Evidence] = []
        for hit in hits:
            p = self._passages[hit.node.node_id]
            score = float(hit.score or 0.0)
            if score > 0:
                out.append(Evidence(**p.model_dump(), score=round(score, 4)))
        return out
