"""Measure the persistent knowledge base: ingest rate and query latency per retrieval mode.

    .venv/bin/python bench/kb.py [--chunks 4000] [--files 80] [--queries 200]

Writes ``--chunks`` synthetic paragraphs (each its own chunk: 150-400 characters of a small
shop-policy vocabulary plus a unique code) across ``--files`` Markdown files in a temporary
directory, ingests them with the bundled embedding model into a temporary ``$TETHER_HOME``
(``hybrid``: BM25 manifest + Chroma vectors), re-ingests unchanged (digest check only) and after
editing one file, then times ``--queries`` searches in each mode (half exact codes, half
free-text questions). Prints chunks/s and p50/p95 latency in milliseconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from tether.config import Home
from tether.retrieval import KnowledgeStore
from tether.retrieval.embeddings import load_embed_model

TOPICS = ["refund", "shipping", "warranty", "privacy", "returns", "grinder", "kettle", "carafe", "invoice",
          "account", "delivery", "parcel", "repair", "exchange", "subscription", "discount"]
WORDS = ["customer", "order", "item", "days", "within", "policy", "support", "team", "request", "approval", "receipt", "damaged", "replacement", "tracking", "address", "window", "standard", "express", "fee", "credit", "limit", "manager", "written", "notice", "business", "record", "email", "phone", "store", "online", "payment", "card", "bank", "review"]
QUESTIONS = ["how long does delivery take", "can I return an opened kettle", "my parcel never arrived",
             "who approves a large refund", "is the grinder covered after two years", "do you keep my emails",
             "what is the restocking fee", "change the address on my order"]


def paragraph(rng: random.Random, n: int) -> str:
    topic = rng.choice(TOPICS)
    words = [rng.choice(WORDS) for _ in range(rng.randint(25, 60))]
    return f"{topic.title()} rule {n}. Code P-{n:05d} applies to {topic} cases: " + " ".join(words) + "."


def write_corpus(root: Path, chunks: int, files: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    per = -(-chunks // files)
    for f in range(files):
        paras = [paragraph(rng, n) for n in range(f * per, min(chunks, (f + 1) * per))]
        body = "\n\n".join(paras)
        (root / f"doc-{f:03d}.md").write_text(f"---\nid: DOC-{f:03d}\ntitle: Policy {f}\nversion: 1\n---\n{body}\n")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=4000)
    ap.add_argument("--files", type=int, default=80)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, home = Path(tmp) / "docs", Home(root=Path(tmp) / "home")
        src.mkdir()
        write_corpus(src, args.chunks, args.files)
        t = time.perf_counter()
        model = load_embed_model()
        print(f"model load: {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        kb = KnowledgeStore.open(home, "bench", source=src, retrieval="hybrid", embed_model=model)
        first = kb.last_report
        assert first is not None
        elapsed = time.perf_counter() - t
        print(f"ingest: {first.chunks_embedded} chunks embedded in {elapsed:.1f}s = "
              f"{first.chunks_embedded / elapsed:.0f} chunks/s ({len(kb)} current, {args.files} files)")
        again = kb.ingest(src)
        print(f"re-ingest unchanged: {again.chunks_embedded} embedded in {again.seconds * 1000:.0f} ms")
        edited = src / "doc-000.md"
        edited.write_text(edited.read_text().replace("rule 0.", "rule 0 (revised)."))
        changed = kb.ingest(src)
        print(f"re-ingest one edited paragraph: {changed.chunks_embedded} embedded, "
              f"{changed.chunks_retired} superseded, in {changed.seconds * 1000:.0f} ms")
        rng = random.Random(11)
        queries = [f"P-{rng.randrange(args.chunks):05d}" if i % 2 else rng.choice(QUESTIONS)
                   for i in range(args.queries)]
        for mode in ("bm25", "vector", "hybrid"):
            store = KnowledgeStore.open(home, "bench", retrieval=mode, embed_model=model)
            t = time.perf_counter()
            store.search(queries[0])  # first query builds BM25 / opens Chroma
            warm = time.perf_counter() - t
            times = []
            for q in queries:
                t = time.perf_counter()
                store.search(q, top_k=5)
                times.append((time.perf_counter() - t) * 1000)
            hits = sum(1 for q in queries[1::2] if store.search(q, top_k=5)[:1]
                       and q in store.search(q, top_k=5)[0].text)
            print(f"{mode:6s} first query {warm * 1000:6.0f} ms; p50 {pct(times, 50):6.1f} ms, "
                  f"p95 {pct(times, 95):6.1f} ms; exact code found first in {hits}/{len(queries) // 2}")
            store.close()
        kb.close()


if __name__ == "__main__":
    main()
