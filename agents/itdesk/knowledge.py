"""What the desk's ``search_policy`` searches: its shipped policy documents, and the pages it
imported into the directory database (team wiki pages, vendor how-tos).

The shipped documents (``kb/*.md``: access policy, MFA reset procedure, group catalogue, data
handling) are ingested on first use. Imported pages live in the ``documents`` table with their
own ``trust``: a vendor page is ``external`` (a third party wrote it) and its evidence says so.
Both are searched with BM25; hits are merged by score, so a citation names which document, which
version, and how far it can be trusted.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

from tether import Evidence, EvidenceSearch, Home, KnowledgeBase, KnowledgeStore

__all__ = ["KB_DIR", "DeskKnowledge", "shipped_knowledge"]

KB_DIR = Path(__file__).parent / "kb"
"""The desk's shipped knowledge base (installed as package data)."""


def _front_matter(path: Path) -> dict[str, str]:
    _, front, _ = path.read_text(encoding="utf-8").split("---\n", 2)
    return dict(line.split(": ", 1) for line in front.strip().splitlines())


def shipped_knowledge(home: Home) -> EvidenceSearch:
    """The shipped documents, ingested from ``KB_DIR`` into ``$TETHER_HOME/kb/itdesk/`` on first use."""
    return KnowledgeStore.open(home, "itdesk", source=KB_DIR, retrieval="bm25")


class DeskKnowledge:
    """The shipped knowledge base plus the directory's imported pages, searched as one."""

    def __init__(self, *, shipped: EvidenceSearch, db: sqlite3.Connection, cache: Path) -> None:
        self._shipped, self._db, self._cache = shipped, db, cache
        self._meta: dict[str, dict[str, str]] = {}
        for path in sorted(KB_DIR.glob("*.md")):
            m = _front_matter(path)
            self._meta[m["id"]] = {"trust": m.get("trust", "internal"), "updated_at": m.get("updated_at", ""),
                                   "source": f"kb/{path.name}"}
        self._combined: tuple[str, KnowledgeBase | None] = ("", None)

    def _index(self) -> EvidenceSearch:
        """One BM25 index over the shipped documents and the imported pages (so scores compare),
        rebuilt when the ``documents`` table changes; the shipped index alone when nothing is imported."""
        rows = list(self._db.execute("SELECT * FROM documents ORDER BY id"))
        if not rows:
            return self._shipped
        digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()[:16]
        if digest != self._combined[0] or self._combined[1] is None:
            folder = self._cache / digest
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for path in KB_DIR.glob("*.md"):
                shutil.copyfile(path, folder / path.name)
            for i, r in enumerate(rows):
                (folder / f"zz-imported-{i:04d}.md").write_text(
                    f"---\nid: {r['id']}\ntitle: {r['title']!r}\nversion: {r['version']}\n---\n{r['body']}\n",
                    encoding="utf-8")
                self._meta[r["id"]] = {"trust": r["trust"], "updated_at": r["updated_at"], "source": r["source"]}
            self._combined = (digest, KnowledgeBase.from_dir(folder))
        index = self._combined[1]
        assert index is not None
        return index

    def search(self, query: str, *, top_k: int = 3) -> list[Evidence]:
        """The best passages for ``query``, highest score first, each with its document's trust."""
        return [self._with_meta(e) for e in self._index().search(query, top_k=top_k)]

    def _with_meta(self, e: Evidence) -> Evidence:
        meta = self._meta.get(e.doc_id)
        if meta is None or (e.updated_at is not None and e.source):
            return e
        return e.model_copy(update={"trust": meta["trust"], "updated_at": meta["updated_at"] or None,
                                    "source": e.source or meta["source"]})
