"""The persistent knowledge base: ingestion of Markdown, text and PDF, incremental updates,
retirement, versions, hybrid ranking, the BM25-only fallback and the ``tether kb`` commands.

Most tests run in ``bm25`` mode (no model). The vector tests share one real model (module
fixture); without the ``embeddings`` extra they skip locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import DocumentInfo, IngestReport, KnowledgeStore
from tether.config import Home
from tether.errors import ConfigError, MissingExtra
from tether.retrieval import RetrievalFallback
from tether.retrieval import embeddings as emb
from tether.retrieval.documents import MAX_CHARS, MIN_CHARS, chunk_text, evidence_id

ID_RE = re.compile(r"^[A-Za-z0-9._-]+@v\d+#[0-9a-f]{8}$")
REFUND_V1 = """---
id: KB-REFUND
title: Refund policy
version: 1
updated_at: 2025-01-10
---
# Refunds

Damaged items. A damaged item is refunded in full when reported within 14 days of delivery.

Change of mind. Unopened items may be returned within 30 days for a full refund.
"""
REFUND_V2 = REFUND_V1.replace("version: 1", "version: 2").replace("14 days", "45 days")
SHIPPING_TXT = """Delivery windows. Standard post takes three to five working days; express takes one.

Lost shipments. When tracking shows no movement for ten business days the shop resends the goods or pays back the whole amount.
"""
PARTS_MD = """Part QK-1180. A replacement burr set for the conical grinders, fitted by the customer with the supplied key.

Part MB-2093. A replacement burr set for the flat-burr grinders, fitted by a technician only.

Part HV-7734. A replacement hopper lid for the conical grinders with a rubber seal.
"""


def tiny_pdf(lines: list[str]) -> bytes:
    """A one-page PDF written by hand: Helvetica text, a real xref table pypdf can read."""
    text = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


PDF_LINES = ["Warranty claims. Grinders and kettles are covered for two years", "from the date of delivery."]


def write_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "refund.md").write_text(REFUND_V1, encoding="utf-8")
    (root / "shipping.txt").write_text(SHIPPING_TXT, encoding="utf-8")
    (root / "warranty.pdf").write_bytes(tiny_pdf(PDF_LINES))
    (root / "notes.bin").write_bytes(b"\x00ignored")
    return root


def store(home: Home, src: Path | None = None, **kw: Any) -> KnowledgeStore:
    return KnowledgeStore.open(home, "t", source=src, **kw)


def ids_of(kb: KnowledgeStore, doc_id: str) -> set[str]:
    return {p.evidence_id for p in kb.manifest.passages() if p.doc_id == doc_id}


# ---------------------------------------------------------------- ingestion


def test_markdown_text_and_pdf_become_citable_chunks(home: Home, tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    os.utime(src / "shipping.txt", (1_700_000_000, 1_700_000_000))
    kb = store(home, src)
    assert isinstance(kb.last_report, IngestReport)
    assert (kb.last_report.documents_added, kb.last_report.chunks_embedded) == (3, 0)
    assert (home.root / "kb" / "t" / "manifest.sqlite").is_file()
    docs = {d.doc_id: d for d in kb.documents()}
    assert set(docs) == {"KB-REFUND", "shipping", "warranty"}
    refund = docs["KB-REFUND"]
    assert isinstance(refund, DocumentInfo)
    assert (refund.version, refund.title, refund.source, refund.updated_at, refund.trust, refund.status) == (
        1, "Refund policy", "refund.md", "2025-01-10", "internal", "current")
    ship = docs["shipping"]  # no front matter: id from the file name, version 1, updated_at from mtime
    assert (ship.version, ship.updated_at, ship.chunks) == (1, "2023-11-14T22:13:20+00:00", 2)
    [pdf] = kb.search("warranty claims two years")
    assert pdf.doc_id == "warranty" and pdf.source == "warranty.pdf" and "from the date of delivery" in pdf.text
    hits = kb.search("damaged item refunded", top_k=5)
    assert hits[0].doc_id == "KB-REFUND" and hits[0].status == "current"
    assert all(ID_RE.match(h.evidence_id) for h in hits)
    first = hits[0]
    assert first.evidence_id == evidence_id("KB-REFUND", 1, first.text)
    assert first.text.startswith("Refunds Damaged items.")  # the heading joined its paragraph, '#' dropped
    assert kb.get(first.evidence_id).text == first.text  # type: ignore[union-attr]
    assert len(kb) == 2 + 2 + 1 and kb.get("KB-REFUND@v9#00000000") is None


def test_trust_comes_from_front_matter_or_the_ingest_default(home: Home, tmp_path: Path) -> None:
    src = tmp_path / "docs"
    src.mkdir()
    (src / "vendor.md").write_text("Vendor note. Prices from the supplier change every quarter, without notice.\n")
    (src / "ours.md").write_text("---\ntrust: internal\n---\nOur note. Support answers within one working day.\n")
    kb = store(home)
    kb.ingest(src, trust="external")
    assert {d.doc_id: d.trust for d in kb.documents()} == {"vendor": "external", "ours": "internal"}
    assert kb.ingest(src, trust="internal").documents_updated == 2  # a new default re-reads the files
    assert {d.doc_id: d.trust for d in kb.documents()}["vendor"] == "internal"


@pytest.mark.parametrize(("name", "content", "setting"), [
    ("a.md", "---\ntrust: partner\n---\nText of a paragraph long enough to be a chunk.\n", "trust"),
    ("b.md", "---\nversion: two\n---\nText.\n", "version"),
    ("c.md", "---\nid: [x\n---\nText.\n", "front matter"),
    ("d.pdf", "%PDF-1.4 not really", "d.pdf"),
])
def test_bad_documents_are_refused_by_name(home: Home, tmp_path: Path, name: str, content: str,
                                           setting: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=re.escape(setting)) as err:
        store(home, tmp_path)
    assert name in err.value.setting
    assert store(home).documents() == []  # nothing half-ingested


def test_two_files_claiming_one_version_are_refused(home: Home, tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(REFUND_V1)
    (tmp_path / "b.md").write_text(REFUND_V1.replace("14 days", "20 days"))
    with pytest.raises(ConfigError, match="two files claim it") as err:
        store(home, tmp_path)
    assert err.value.setting == "document KB-REFUND version 1"
    assert store(home).documents() == []


# ---------------------------------------------------------------- updates, retirement, versions


def test_removed_file_is_retired_not_kept(home: Home, tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    kb = store(home, src)
    shipping = ids_of(kb, "shipping")
    (src / "shipping.txt").unlink()
    report = kb.ingest(src)
    assert (report.documents_retired, report.chunks_retired, report.documents_unchanged) == (1, 2, 2)
    assert not any(h.doc_id == "shipping" for h in kb.search("tracking shows no movement", top_k=10))
    for eid in shipping:
        assert kb.get(eid).status == "retired"  # type: ignore[union-attr]
    assert {d.doc_id: d.status for d in kb.documents()}["shipping"] == "retired"
    (src / "shipping.txt").write_text(SHIPPING_TXT)  # it comes back: same text, same ids, current again
    assert kb.ingest(src).chunks_added == 2 and {kb.get(e).status for e in shipping} == {"current"}  # type: ignore[union-attr]


def test_new_version_supersedes_the_old_in_search_but_old_ids_resolve(home: Home, tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    kb = store(home, src)
    [old] = [kb.search("damaged item refunded")[0]]
    assert old.version == 1
    (src / "refund-v2.md").write_text(REFUND_V2)  # a second file with the same id, a higher version
    report = kb.ingest(src)
    assert (report.documents_added, report.chunks_retired, report.chunks_added) == (1, 2, 2)
    hits = kb.search("damaged item refunded", top_k=10)
    assert hits[0].evidence_id.startswith("KB-REFUND@v2#") and "45 days" in hits[0].text
    assert not any(h.version == 1 and h.doc_id == "KB-REFUND" for h in hits)
    stale = kb.get(old.evidence_id)
    assert stale is not None and stale.status == "superseded" and stale.text == old.text
    versions = [(d.version, d.status) for d in kb.documents() if d.doc_id == "KB-REFUND"]
    assert versions == [(2, "current"), (1, "superseded")]
    (src / "refund-v2.md").unlink()  # withdrawing v2 makes v1 current again; v2's chunks are retired
    kb.ingest(src)
    assert kb.get(old.evidence_id).status == "current"  # type: ignore[union-attr]
    assert kb.get(hits[0].evidence_id).status == "retired"  # type: ignore[union-attr]


def test_editing_a_file_in_place(home: Home, tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    kb = store(home, src)
    before = ids_of(kb, "KB-REFUND")
    (src / "refund.md").write_text(REFUND_V1.replace("30 days", "60 days"))  # same version, one paragraph edited
    report = kb.ingest(src)
    assert (report.documents_updated, report.chunks_added, report.chunks_retired) == (1, 1, 1)
    after = ids_of(kb, "KB-REFUND")
    assert len(before & after) == 1  # the untouched paragraph kept its evidence id
    [edited] = before - after
    assert kb.get(edited).status == "superseded"  # type: ignore[union-attr]
    (src / "refund.md").write_text(REFUND_V2.replace("30 days", "60 days"))  # the file itself becomes v2
    kb.ingest(src)
    assert all(kb.get(i).status == "superseded" for i in after)  # type: ignore[union-attr]
    assert {h.version for h in kb.search("refund", top_k=10) if h.doc_id == "KB-REFUND"} == {2}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["a.md", "b.md", "c.md"]), st.integers(0, 3),
                                st.integers(1, 3)), min_size=1, max_size=8))
def test_status_follows_the_files_whatever_the_order(tmp_path_factory: pytest.TempPathFactory,
                                                     steps: list[tuple[str, int, int]]) -> None:
    """Random writes/deletions: search sees exactly the top version of each present document,
    and every chunk ever ingested still resolves."""
    root = tmp_path_factory.mktemp("prop")
    src = root / "docs"
    src.mkdir()
    kb = store(Home(root=root / "home"))
    seen: set[str] = set()
    for name, text_no, version in steps:
        path = src / name
        if text_no == 0:
            path.unlink(missing_ok=True)
        else:
            body = f"Paragraph {text_no} of {name}: this sentence is long enough to stand as one chunk.\n"
            path.write_text(f"---\nid: DOC-{name[0]}\nversion: {version}\n---\n{body}")
        kb.ingest(src)
        seen |= {p.evidence_id for p in kb.manifest.passages()}
    want = {f"DOC-{f.name[0]}" for f in src.iterdir()}
    current = kb.manifest.passages()
    assert {p.doc_id for p in current} == want and len(current) == len(want)
    assert all(kb.get(i) is not None for i in seen)


# ---------------------------------------------------------------- chunking


@given(st.lists(st.text(alphabet="abcdefgh .", min_size=1, max_size=3000), min_size=1, max_size=6))
def test_chunks_are_bounded_and_keep_every_word(paras: list[str]) -> None:
    chunks = chunk_text("\n\n".join(paras))
    assert all(0 < len(c) <= MAX_CHARS for c in chunks)
    words = " ".join(" ".join(p.split()) for p in paras).split()
    assert set(" ".join(chunks).split()) == set(words)


@given(st.lists(st.text(alphabet="abcdefgh", min_size=MIN_CHARS, max_size=MAX_CHARS), min_size=2, max_size=5,
                unique=True), st.text(alphabet="xyz", min_size=MIN_CHARS, max_size=200))
def test_adding_a_paragraph_keeps_the_other_ids(paras: list[str], extra: str) -> None:
    before = {evidence_id("D", 1, c) for c in chunk_text("\n\n".join(paras))}
    after = {evidence_id("D", 1, c) for c in chunk_text("\n\n".join([paras[0], extra, *paras[1:]]))}
    assert before <= after and len(after - before) == 1


# ---------------------------------------------------------------- vectors (the real model)


@pytest.fixture(scope="module")
def model() -> Any:
    """The bundled MiniLM, loaded once. Skips locally / fails in CI without the extra."""
    try:
        emb.model_path()
        import chromadb  # noqa: F401
        import llama_index.embeddings.huggingface  # noqa: F401
    except (MissingExtra, ConfigError, ImportError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the vector knowledge-base tests: {exc}")
        pytest.skip(f"the 'embeddings' extra is not installed: {exc}")
    return emb.load_embed_model()


def counting(model: Any) -> Any:
    """``model`` behind a LlamaIndex embedding that records every text it embeds."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import Field

    class CountingEmbedding(BaseEmbedding):
        inner: Any = Field(exclude=True)
        texts: list[str] = Field(default_factory=list)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            self.texts.extend(texts)
            return list(self.inner.get_text_embedding_batch(texts))

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query: str) -> list[float]:
            return list(self.inner.get_query_embedding(query))

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return CountingEmbedding(inner=model, model_name=model.model_name, embed_batch_size=64)


@pytest.mark.slow
def test_reingest_embeds_only_what_changed(model: Any, home: Home, tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    counter = counting(model)
    kb = store(home, src, retrieval="vector", embed_model=counter)
    assert kb.last_report is not None and kb.last_report.chunks_embedded == len(kb) == 5
    assert len(counter.texts) == 5
    again = store(home, src, retrieval="vector", embed_model=counter)
    assert again.last_report is not None and again.last_report.chunks_embedded == 0 and len(counter.texts) == 5
    (src / "refund.md").write_text(REFUND_V1.replace("30 days", "60 days"))  # one of its two chunks changes
    assert again.ingest(src).chunks_embedded == 1 and len(counter.texts) == 6 and "60 days" in counter.texts[-1]
    (src / "refund.md").write_text(REFUND_V2)  # a new version: both of its chunks get new ids
    assert again.ingest(src).chunks_embedded == 2
    (src / "shipping.txt").unlink()
    assert again.ingest(src).chunks_embedded == 0
    records = set(again._index().collection.get(include=[])["ids"])  # type: ignore[union-attr]
    assert records == {p.evidence_id for p in again.manifest.passages()}  # retired/superseded: no vectors
    hit = again.search("my package never showed up", top_k=10)
    assert hit and all(h.status == "current" for h in hit) and not any(h.doc_id == "shipping" for h in hit)


@pytest.mark.slow
def test_hybrid_finds_exact_terms_and_paraphrases(model: Any, home: Home, tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    (src / "parts.md").write_text(PARTS_MD)
    kbs = {m: store(home, src, retrieval=m, embed_model=model) for m in ("bm25", "vector", "hybrid")}

    def top(mode: str, query: str, k: int = 1) -> list[str]:
        return [h.text.split(".")[0] for h in kbs[mode].search(query, top_k=k)]

    exact, exact_doc = "reported", "Refunds Damaged items"  # one word, in one paragraph only
    assert top("bm25", exact) == [exact_doc] and exact_doc not in top("vector", exact, 3)
    paraphrase, para_doc = "my order vanished in transit", "Lost shipments"  # no shared word
    assert top("bm25", paraphrase) == [] and top("vector", paraphrase) == [para_doc]
    assert exact_doc in top("hybrid", exact, 2) and para_doc in top("hybrid", paraphrase, 2)
    assert kbs["hybrid"].mode == "hybrid" and kbs["hybrid"].search(exact)[0].score <= 2 / 61


# ---------------------------------------------------------------- without the extra


def test_without_the_extra_the_store_serves_bm25_and_says_so(home: Home, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(module: str) -> Any:
        raise MissingExtra(extra="embeddings", feature="vector retrieval")

    monkeypatch.setattr(emb, "require", missing)
    with pytest.warns(RetrievalFallback, match="using BM25 only"):
        kb = store(home, write_corpus(tmp_path / "docs"), retrieval="hybrid")
    assert kb.mode == "bm25" and kb.notice is not None and "embeddings" in kb.notice
    assert kb.last_report is not None and kb.last_report.chunks_embedded == 0
    assert kb.search("damaged item refunded")[0].doc_id == "KB-REFUND"
    assert not (home.root / "kb" / "t" / "chroma").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store(home).notice is None  # bm25 asked for: no notice


def test_names_and_modes_are_checked(home: Home) -> None:
    with pytest.raises(ConfigError, match="knowledge base name"):
        KnowledgeStore.open(home, "../up")
    with pytest.raises(ConfigError, match="use bm25, vector or hybrid"):
        KnowledgeStore.open(home, "t", retrieval="grep")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="does not exist"):
        KnowledgeStore.open(home, "t", source=home.root / "missing")


# ---------------------------------------------------------------- the CLI


def test_kb_commands_in_a_real_process(tmp_path: Path) -> None:
    src = write_corpus(tmp_path / "docs")
    env = {**os.environ, "TETHER_HOME": str(tmp_path / "home")}

    def tether(*args: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from tether.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, "kb", *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)

    ing = tether("ingest", str(src), "--kb", "docs", "--retrieval", "bm25", "--json")
    assert ing.returncode == 0, ing.stderr
    report = json.loads(ing.stdout)
    assert (report["documents_added"], report["chunks_current"], report["mode"]) == (3, 5, "bm25")
    found = tether("search", "damaged item refunded", "--kb", "docs", "--top", "2", "--retrieval", "bm25")
    assert found.returncode == 0, found.stderr
    header, _, first, *_ = found.stdout.splitlines()
    assert header.split()[:6] == ["evidence", "score", "source", "version", "trust", "status"]
    assert first.startswith("KB-REFUND@v1#") and "refund.md" in first and "current" in first
    listed = tether("list", "--kb", "docs", "--json")
    assert [(d["doc_id"], d["version"], d["status"]) for d in json.loads(listed.stdout)] == [
        ("KB-REFUND", 1, "current"), ("shipping", 1, "current"), ("warranty", 1, "current")]


def test_kb_command_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from tether.cli import main

    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    assert main(["kb", "list", "--kb", "nope", "--json"]) == 1
    err = json.loads(capsys.readouterr().err)
    assert err["error"] == "ConfigError" and "tether kb ingest DIR --kb nope" in err["reason"]
    assert main(["kb", "ingest", str(tmp_path / "absent")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "home" / "kb" / "nope").exists()

    def missing(module: str) -> Any:
        raise MissingExtra(extra="embeddings", feature="vector retrieval")

    monkeypatch.setattr(emb, "require", missing)  # hybrid is the default: the fallback is said on stderr
    assert main(["kb", "ingest", str(write_corpus(tmp_path / "docs")), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["mode"] == "bm25" and "notice: hybrid retrieval unavailable" in out.err
    assert "pip install '.[embeddings]'" in out.err
