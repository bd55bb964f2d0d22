"""Vector search over the same passages as ``KnowledgeBase``: LlamaIndex over embedded Chroma.

Every passage is one Chroma record whose id is its evidence id (``KB-SHIP@v2#p2``) and whose
metadata carries ``doc_id``, ``version``, ``title`` and a ``content_hash``, so a hit is always
citable. The collection lives in ``persist_dir`` (``chromadb.PersistentClient``). Opening it
again embeds only passages that are new or whose text changed, deletes records of passages
that are gone, and rebuilds everything when the embedding model differs from the one recorded
on the collection. Needs the ``embeddings`` extra unless you pass your own ``embed_model``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.retrieval.embeddings import load_embed_model, model_identity, require
from tether.retrieval.knowledge import Evidence, Passage, read_passages

__all__ = ["DEFAULT_COLLECTION", "SyncReport", "VectorKnowledgeBase", "open_collection"]

DEFAULT_COLLECTION = "tether-kb"
_HASH_KEY = "content_hash"
_MODEL_KEY = "tether_embed_model"
_FORMAT = 1  # bump when the embedded text or the metadata layout changes


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """What opening the index did: passages embedded, records deleted, full rebuild or not."""

    embedded: int
    deleted: int
    rebuilt: bool


def _embed_text(p: Passage) -> str:
    return f"{p.title}. {p.text}"


def _content_hash(p: Passage) -> str:
    payload = json.dumps([_FORMAT, p.evidence_id, p.doc_id, p.version, p.title, _embed_text(p)])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _node(p: Passage, digest: str) -> Any:
    schema = require("llama_index.core.schema")
    meta: dict[str, Any] = {"doc_id": p.doc_id, "version": p.version, "title": p.title, _HASH_KEY: digest}
    return schema.TextNode(
        id_=p.evidence_id,
        text=_embed_text(p),
        metadata=meta,
        excluded_embed_metadata_keys=list(meta),  # embed the words, not "doc_id: KB-SHIP ..."
        excluded_llm_metadata_keys=list(meta),
        # LlamaIndex writes the source document id into the reserved "doc_id"/"document_id" keys
        # of every vector-store record: make that the policy document, not "None".
        relationships={schema.NodeRelationship.SOURCE: schema.RelatedNodeInfo(node_id=p.doc_id)},
    )


def open_collection(client: Any, name: str, model_id: str) -> tuple[Any, bool]:
    """The cosine collection ``name``, dropped first if it holds vectors from another model
    (their dimensions and meaning differ); ``True`` when it was dropped."""
    meta = {_MODEL_KEY: model_id}
    rebuilt = False
    if name in {c if isinstance(c, str) else c.name for c in client.list_collections()}:
        old = client.get_collection(name, embedding_function=None)
        if (old.metadata or {}).get(_MODEL_KEY) != model_id:
            client.delete_collection(name)
            rebuilt = True
    col = client.get_or_create_collection(
        name,
        metadata=meta,
        configuration={"hnsw": {"space": "cosine"}},
        embedding_function=None,  # vectors always come from LlamaIndex, never Chroma's default model
    )
    return col, rebuilt


class VectorKnowledgeBase:
    """Semantic search over passages with the ``KnowledgeBase`` contract (``search``/``get``/``len``)."""

    def __init__(
        self,
        passages: Iterable[Passage],
        *,
        persist_dir: Path | str,
        embed_model: Any = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        self._passages = {p.evidence_id: p for p in passages}
        if not self._passages:
            raise ValueError("a knowledge base needs at least one passage")
        chromadb = require("chromadb")
        chroma_store = require("llama_index.vector_stores.chroma")
        core = require("llama_index.core")
        embed = embed_model if embed_model is not None else load_embed_model()
        self.persist_dir = Path(persist_dir)
        self.persist_dir.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(self.persist_dir), settings=chromadb.Settings(anonymized_telemetry=False)
        )
        model_id = model_identity(embed)
        col, rebuilt = self._open_collection(client, collection, model_id)
        store = chroma_store.ChromaVectorStore(chroma_collection=col)
        stale, fresh = self._diff(col)
        if stale:
            store.delete_nodes(node_ids=stale)
        self._index = core.VectorStoreIndex.from_vector_store(store, embed_model=embed)
        if fresh:
            self._index.insert_nodes([_node(p, _content_hash(p)) for p in fresh])
        self.sync = SyncReport(embedded=len(fresh), deleted=len(stale), rebuilt=rebuilt)

    @staticmethod
    def _open_collection(client: Any, name: str, model_id: str) -> tuple[Any, bool]:
        return open_collection(client, name, model_id)

    def _diff(self, col: Any) -> tuple[list[str], list[Passage]]:
        """Record ids to delete, and passages to (re-)embed, by comparing content hashes."""
        got = col.get(include=["metadatas"])
        have = {i: (m or {}).get(_HASH_KEY) for i, m in zip(got["ids"], got["metadatas"], strict=True)}
        want = {eid: _content_hash(p) for eid, p in self._passages.items()}
        stale = [i for i, h in have.items() if want.get(i) != h]
        fresh = [p for eid, p in self._passages.items() if have.get(eid) != want[eid]]
        return stale, fresh

    @classmethod
    def from_dir(cls, path: Path, *, persist_dir: Path | str, embed_model: Any = None) -> VectorKnowledgeBase:
        return cls(read_passages(path), persist_dir=persist_dir, embed_model=embed_model)

    def get(self, evidence_id: str) -> Passage | None:
        return self._passages.get(evidence_id)

    def __len__(self) -> int:
        return len(self._passages)

    def search(self, query: str, *, top_k: int = 3) -> list[Evidence]:
        """Nearest passages to ``query``, most similar first.

        ``score`` is LlamaIndex's Chroma similarity ``exp(-cosine distance)``: in (0.13, 1], higher is closer.
        """
        if not query.strip() or top_k <= 0:
            return []
        retriever = self._index.as_retriever(similarity_top_k=min(top_k, len(self._passages)))
        out: list[Evidence] = []
        for hit in retriever.retrieve(query):
            p = self._passages.get(hit.node.node_id)
            if p is not None:
                out.append(Evidence(**p.model_dump(), score=round(float(hit.score or 0.0), 4)))
        return out
