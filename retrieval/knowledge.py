"""A citation-bearing knowledge base over markdown policy documents.

Each document has front matter (``id``, ``title``, ``version``); each paragraph becomes a
passage with a stable evidence id ``<doc id>@v<version>#p<n>``. Search is LlamaIndex's BM25
retriever; every hit is returned as an ``Evidence`` value the agent must cite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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


_COMPLETE = "complete"


def _persist(retriever: Any, target: Path) -> None:
    """Write the index next to ``target`` and move it into place whole; older indexes beside it
    are removed. Best effort: a directory that cannot be written only costs the next build."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        retriever.persist(str(tmp), show_progress=False)
        (tmp / _COMPLETE).write_text("")
        try:
            tmp.rename(target)
        except OSError:  # another process put the same index there first
            shutil.rmtree(tmp, ignore_errors=True)
        for old in target.parent.iterdir():
            if old.name != target.name and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


class KnowledgeBase:
    """BM25 search over passages. Build with ``from_dir`` or ``from_passages``."""

    def __init__(self, passages: Iterable[Passage], *, index_root: Path | None = None) -> None:
        """``index_root``: a directory where the BM25 index is kept between processes, named by
        a digest of the passages (built there on first use; indexes of other passages are removed)."""
        self._passages = {p.evidence_id: p for p in passages}
        if not self._passages:
            raise ValueError("a knowledge base needs at least one passage")
        self._retriever: Any = None
        self._index_dir = index_root / self._digest() if index_root is not None else None
        self._lock = threading.Lock()

    def _digest(self) -> str:
        h = hashlib.sha256()
        for p in self._passages.values():
            h.update(f"{p.evidence_id}\0{p.title}\0{p.text}\0".encode())
        return h.hexdigest()[:32]

    def _bm25(self) -> Any:
        """The LlamaIndex BM25 retriever, loaded from ``index_dir`` or built on the first search
        (importing it is slow)."""
        if self._retriever is None:
            from llama_index.retrievers.bm25 import BM25Retriever

            self._retriever = self._load(BM25Retriever) or self._build(BM25Retriever)
        return self._retriever

    def _load(self, cls: Any) -> Any:
        if self._index_dir is None or not (self._index_dir / _COMPLETE).is_file():
            return None
        try:
            got = cls.from_persist_dir(str(self._index_dir))
        except Exception:  # a damaged or foreign index is only a cache: build it again
            return None
        ids = {c.get("node_id") for c in got.corpus} if got.corpus is not None else set()
        return got if ids == self._passages.keys() else None

    def _build(self, cls: Any) -> Any:
        from llama_index.core.schema import BaseNode, TextNode

        nodes: list[BaseNode] = [
            TextNode(id_=p.evidence_id, text=f"{p.title}. {p.text}") for p in self._passages.values()
        ]
        # ``search`` sets ``similarity_top_k`` per query, so any ``top_k`` is honoured.
        retriever = cls.from_defaults(nodes=nodes, similarity_top_k=len(nodes))
        if self._index_dir is not None:
            _persist(retriever, self._index_dir)
        return retriever

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
