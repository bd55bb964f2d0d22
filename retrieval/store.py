"""A persistent knowledge base: files in, citable chunks out, kept in step with the files.

``KnowledgeStore.open(home, name, source=DIR)`` keeps ``$TETHER_HOME/kb/<name>/``: a SQLite
manifest (documents, versions, content digests, chunk status) and, for ``vector``/``hybrid``
retrieval, an embedded Chroma collection written through LlamaIndex with the bundled MiniLM
model. Ingesting again reads only files whose bytes changed, embeds only chunks whose evidence
id is new, and retires the chunks of files that are gone. BM25 runs over the current chunks; its
index is built on the first search and kept in ``bm25/`` (named by a digest of the chunks, so a
later process loads it and a changed store never uses an old one); the embedding model is loaded only when something has to be
embedded or a vector query is asked. Without the ``embeddings`` extra a store asked for vectors
serves BM25 and says so in ``notice`` (and a ``RetrievalFallback`` warning).

Search returns current chunks only; ``get`` resolves any chunk ever ingested, with its
``status`` (``current``, ``superseded``, ``retired``), so a stale citation can be named stale.
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether.config import Home
from tether.errors import ConfigError, MissingExtra
from tether.retrieval import embeddings as emb
from tether.retrieval.documents import LoadedDocument, Trust, file_digest, load_document, scan
from tether.retrieval.hybrid import reciprocal_rank_fusion
from tether.retrieval.knowledge import Evidence, KnowledgeBase, Passage
from tether.retrieval.manifest import Manifest

__all__ = ["DocumentInfo", "IngestReport", "KnowledgeStore", "Retrieval", "RetrievalFallback"]

Retrieval = Literal["bm25", "vector", "hybrid"]
Status = Literal["current", "superseded", "retired"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COLLECTION = "chunks"
_STATUSES: tuple[Status, ...] = ("current", "superseded", "retired")


class RetrievalFallback(UserWarning):
    """Vectors were asked for but the ``embeddings`` extra is missing: BM25 serves instead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestReport:
    """What one ingest did. Documents are counted per file (one file is one document version)."""

    documents_added: int
    documents_updated: int
    documents_unchanged: int
    documents_retired: int
    chunks_added: int
    """Chunks that became current (new text, a new version, a file that came back)."""
    chunks_retired: int
    """Chunks that stopped being current (superseded or retired)."""
    chunks_embedded: int
    """Chunks written to the vector index (0 in ``bm25`` mode: vectors are made when first needed)."""
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.documents_added or self.documents_updated or self.documents_retired)


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentInfo:
    """One version of one document, as the store knows it."""

    doc_id: str
    version: int
    title: str
    source: str
    updated_at: str | None
    trust: Trust
    status: Status
    """``current`` if any of its chunks is searchable, else ``superseded`` or ``retired``."""
    chunks: int
    current_chunks: int


class _Vectors:
    """The Chroma collection of current chunks, written and queried through LlamaIndex."""

    def __init__(self, directory: Path, embed_model: Any) -> None:
        chromadb = emb.require("chromadb")
        self._store_mod = emb.require("llama_index.vector_stores.chroma")
        self._schema = emb.require("llama_index.core.schema")
        self._vs = emb.require("llama_index.core.vector_stores.types")
        if embed_model is None:  # fail now, not at the first query, when the bundled model is absent;
            emb.model_path()  # the model itself (and torch) is loaded only when something is embedded
        from tether.retrieval.vector import open_collection

        self._embed = embed_model
        client = chromadb.PersistentClient(path=str(directory), settings=chromadb.Settings(anonymized_telemetry=False))
        model_id = emb.model_identity(embed_model) if embed_model is not None else emb.DEFAULT_MODEL_ID
        self.collection, self.rebuilt = open_collection(client, _COLLECTION, model_id)
        self.store = self._store_mod.ChromaVectorStore(chroma_collection=self.collection)

    def model(self) -> Any:
        if self._embed is None:
            self._embed = emb.load_embed_model()
        return self._embed

    def sync(self, current: list[Passage]) -> int:
        """Delete records that are no longer current, embed current chunks it lacks; return how many."""
        have = set(self.collection.get(include=[])["ids"])
        want = {p.evidence_id: p for p in current}
        stale = sorted(have - set(want))
        if stale:
            self.collection.delete(ids=stale)
        fresh = [p for eid, p in want.items() if eid not in have]
        for start in range(0, len(fresh), 256):
            batch = fresh[start:start + 256]
            vectors = self.model().get_text_embedding_batch([f"{p.title}. {p.text}" for p in batch])
            self.store.add([self._node(p, v) for p, v in zip(batch, vectors, strict=True)])
        return len(fresh)

    def _node(self, p: Passage, vector: list[float]) -> Any:
        meta: dict[str, Any] = {"doc_id": p.doc_id, "version": p.version, "title": p.title, "source": p.source}
        return self._schema.TextNode(
            id_=p.evidence_id, text=f"{p.title}. {p.text}", metadata=meta, embedding=vector,
            relationships={self._schema.NodeRelationship.SOURCE: self._schema.RelatedNodeInfo(node_id=p.doc_id)},
        )

    def query(self, text: str, k: int) -> list[tuple[str, float]]:
        if k <= 0 or self.collection.count() == 0:
            return []
        q = self._vs.VectorStoreQuery(query_embedding=self.model().get_query_embedding(text),
                                      similarity_top_k=min(k, self.collection.count()))
        res = self.store.query(q)
        return list(zip(res.ids or [], res.similarities or [], strict=False))


def _check_extra(embed_model: Any) -> None:
    """Raise ``MissingExtra`` unless vectors can be served, importing nothing heavy."""
    if embed_model is None:
        emb.model_path()  # the bundled model's package: small to import
    for module in ("chromadb", "llama_index.vector_stores.chroma"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtra(extra="embeddings", feature="vector retrieval")


class KnowledgeStore:
    """A persistent, incrementally updated knowledge base meeting the ``EvidenceSearch`` contract."""

    def __init__(self, directory: Path, *, retrieval: Retrieval = "bm25", embed_model: Any = None,
                 depth: int = 10) -> None:
        if retrieval not in ("bm25", "vector", "hybrid"):
            raise ConfigError(setting="retrieval", reason=f"{retrieval!r}: use bm25, vector or hybrid")
        self.directory = Path(directory)
        self.manifest = Manifest(self.directory / "manifest.sqlite")
        self.depth = depth
        self.notice: str | None = None
        """Why the store serves less than was asked (the ``embeddings`` extra is missing), or None."""
        self._bm25: KnowledgeBase | None = None
        self._vectors: _Vectors | None = None
        self._embed_model = embed_model
        self.mode: Retrieval = retrieval
        if retrieval != "bm25":
            try:
                _check_extra(embed_model)
            except MissingExtra as exc:
                self._fall_back(exc)
        self.last_report: IngestReport | None = None
        """The report of the ingest ``open`` ran, if it ran one."""

    @classmethod
    def open(cls, home: Home, name: str, *, source: Path | None = None, retrieval: Retrieval = "bm25",
             trust: Trust = "internal", embed_model: Any = None) -> KnowledgeStore:
        """The store ``$TETHER_HOME/kb/<name>/``; with ``source``, first brought in step with it
        (cheap when nothing changed: digests are compared, no model is loaded)."""
        if not _NAME.match(name):
            raise ConfigError(setting="knowledge base name",
                              reason=f"{name!r}: use up to 64 letters, digits, '.', '_' or '-'")
        store = cls(home.root / "kb" / name, retrieval=retrieval, embed_model=embed_model)
        if source is not None:
            store.last_report = store.ingest(source, trust=trust)
        else:
            store.sync_vectors()
        return store

    def _fall_back(self, exc: MissingExtra) -> None:
        self.notice = f"{self.mode} retrieval unavailable, using BM25 only: {exc}"
        self.mode = "bm25"
        self._vectors = None
        warnings.warn(self.notice, RetrievalFallback, stacklevel=3)

    def _index(self) -> _Vectors | None:
        """The Chroma index, opened on first need; None in ``bm25`` mode."""
        if self._vectors is None and self.mode != "bm25":
            try:
                self._vectors = _Vectors(self.directory / "chroma", self._embed_model)
            except MissingExtra as exc:
                self._fall_back(exc)
        return self._vectors

    def sync_vectors(self) -> int:
        """Bring the vector index in step with the current chunks; return how many were embedded.

        Free when the manifest has not changed since the last sync (Chroma is not even opened)."""
        if self.mode == "bm25":
            return 0
        model_id = emb.DEFAULT_MODEL_ID if self._embed_model is None else emb.model_identity(self._embed_model)
        marker = f"{self.manifest.meta('generation') or 0}:{model_id}"
        if self.manifest.meta("vectors") == marker and (self.directory / "chroma").is_dir():
            return 0
        index = self._index()
        if index is None:
            return 0
        embedded = index.sync(self.manifest.passages())
        self.manifest.set_meta("vectors", marker)
        return embedded

    def close(self) -> None:
        self.manifest.close()

    def __enter__(self) -> KnowledgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ ingest

    def ingest(self, path: Path | str, *, trust: Trust = "internal") -> IngestReport:
        """Bring the store in step with the files under ``path`` (a directory or one file).

        ``trust`` is the level of files whose front matter does not set one."""
        started = time.perf_counter()
        if trust not in ("internal", "external"):
            raise ConfigError(setting="trust", reason=f"{trust!r}: use 'internal' or 'external'")
        root = Path(path).resolve()
        if not root.exists():
            raise ConfigError(setting="knowledge base source", reason=f"{root} does not exist")
        base = root.parent if root.is_file() else root
        key = str(root)
        known = self.manifest.files(key)
        loaded: dict[str, tuple[str, str, LoadedDocument]] = {}
        seen: set[str] = set()
        for file in scan(root):
            rel = file.relative_to(base).as_posix()
            seen.add(rel)
            digest = file_digest(file)
            old = known.get(rel)
            if old is None or old.digest != digest or old.trust != trust:
                loaded[rel] = (digest, trust, load_document(file, root=base, trust=trust))
        removed = sorted(set(known) - seen)
        docs = {known[p].doc_id for p in removed} | {known[p].doc_id for p in loaded if p in known} | {
            d.doc_id for _, _, d in loaded.values()}
        before = self.manifest.current_ids(docs) if docs else set()
        if loaded or removed:
            self.manifest.apply(key, loaded, removed)
            self._bm25 = None
        after = self.manifest.current_ids(docs) if docs else set()
        embedded = self.sync_vectors()
        updated = sum(1 for p in loaded if p in known)
        return IngestReport(
            documents_added=len(loaded) - updated, documents_updated=updated,
            documents_unchanged=len(seen) - len(loaded), documents_retired=len(removed),
            chunks_added=len(after - before), chunks_retired=len(before - after), chunks_embedded=embedded,
            seconds=round(time.perf_counter() - started, 4),
        )

    # ------------------------------------------------------------ read

    def documents(self) -> list[DocumentInfo]:
        """Every document version ever ingested, by id, newest version first."""
        return [
            DocumentInfo(doc_id=r["doc_id"], version=r["version"], title=r["title"], source=r["source"],
                         updated_at=r["updated_at"], trust=r["trust"], status=_STATUSES[r["rank"]],
                         chunks=r["chunks"], current_chunks=r["current_chunks"])
            for r in self.manifest.document_rows()
        ]

    def get(self, evidence_id: str) -> Passage | None:
        """Any chunk ever ingested, with its status; None for an id this store never held."""
        return self.manifest.get(evidence_id)

    def __len__(self) -> int:
        """How many chunks are current (searchable)."""
        return self.manifest.count_current()

    def search(self, query: str, *, top_k: int = 3) -> list[Evidence]:
        """Best current chunks for ``query``: BM25 score, cosine similarity, or RRF score by ``mode``."""
        if not query.strip() or top_k <= 0:
            return []
        n = max(top_k, self.depth)
        semantic = self._semantic(query, n) if self.mode != "bm25" else []  # may fall back to bm25
        ranked: list[tuple[str, float]]
        if self.mode == "bm25":
            ranked = [(e.evidence_id, e.score) for e in self._lexical(query, n)]
        elif self.mode == "vector":
            ranked = semantic
        else:
            lists = [[e.evidence_id for e in self._lexical(query, n)], [i for i, _ in semantic]]
            ranked = reciprocal_rank_fusion(lists)
        out: list[Evidence] = []
        for eid, score in ranked:
            p = self.manifest.get(eid)
            if p is not None and p.status == "current":
                out.append(Evidence(**p.model_dump(), score=round(float(score), 6)))
            if len(out) == top_k:
                break
        return out

    def _lexical(self, query: str, k: int) -> list[Evidence]:
        if self._bm25 is None:
            passages = self.manifest.passages()
            if not passages:
                return []
            self._bm25 = KnowledgeBase(passages, index_root=self.directory / "bm25")
        return self._bm25.search(query, top_k=k)

    def _semantic(self, query: str, k: int) -> list[tuple[str, float]]:
        self.sync_vectors()
        index = self._index()
        return index.query(query, k) if index is not None else []
