"""The BM25 index of a knowledge store is kept on disk: a new process loads it instead of building
it again, and it is never used for passages other than the ones it was built from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_kb import REFUND_V2, store, write_corpus

from tether.config import Home


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many BM25 indexes were built from passages (not loaded)."""
    from llama_index.retrievers.bm25 import BM25Retriever

    counted: list[int] = []
    original = BM25Retriever.from_defaults.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        counted.append(len(kwargs.get("nodes") or []))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(BM25Retriever, "from_defaults", classmethod(counting))
    return counted


def _hits(home: Home, query: str) -> list[tuple[str, float]]:
    with store(home, retrieval="bm25") as kb:
        return [(e.evidence_id, e.score) for e in kb.search(query, top_k=3)]


def test_a_second_store_loads_the_index_and_finds_the_same(home: Home, tmp_path: Path, builds: list[int]) -> None:
    src = write_corpus(tmp_path / "docs")
    with store(home, src, retrieval="bm25"):
        pass
    first = _hits(home, "damaged item refunded")
    assert len(builds) == 1 and first and first[0][0].startswith("KB-REFUND@v1")
    assert _hits(home, "damaged item refunded") == first and len(builds) == 1  # loaded, not built
    (index,) = (home.root / "kb" / "t" / "bm25").iterdir()
    assert (index / "complete").is_file() and len(index.name) == 32


def test_changed_passages_get_a_new_index_and_the_old_one_goes(home: Home, tmp_path: Path,
                                                              builds: list[int]) -> None:
    src = write_corpus(tmp_path / "docs")
    with store(home, src, retrieval="bm25"):
        pass
    assert _hits(home, "14 days")[0][0].startswith("KB-REFUND@v1")
    index_root = home.root / "kb" / "t" / "bm25"
    before = {d.name for d in index_root.iterdir()}
    (src / "refund.md").write_text(REFUND_V2, encoding="utf-8")
    with store(home, src, retrieval="bm25"):
        pass
    hits = _hits(home, "45 days")
    assert hits[0][0].startswith("KB-REFUND@v2") and len(builds) == 2
    after = {d.name for d in index_root.iterdir()}
    assert len(after) == 1 and after.isdisjoint(before)


@pytest.mark.parametrize("damage", ["truncate", "remove_marker", "garbage"])
def test_a_damaged_index_is_built_again(home: Home, tmp_path: Path, builds: list[int], damage: str) -> None:
    src = write_corpus(tmp_path / "docs")
    with store(home, src, retrieval="bm25"):
        pass
    good = _hits(home, "damaged item refunded")
    (index,) = (home.root / "kb" / "t" / "bm25").iterdir()
    files = sorted(p for p in index.iterdir() if p.name != "complete")
    if damage == "truncate":
        for p in files:
            p.write_bytes(p.read_bytes()[:10])
    elif damage == "remove_marker":
        (index / "complete").unlink()
    else:
        for p in files:
            p.write_text("{not json")
    assert _hits(home, "damaged item refunded") == good and len(builds) == 2
