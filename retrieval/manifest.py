"""The manifest of a knowledge base: one SQLite file beside its Chroma directory.

``files`` holds every ingested file that is still there (root, relative path, content digest,
the trust default it was read with, its document id and version); ``chunks`` holds every chunk
ever ingested, whatever became of it, with a ``status``:

- ``current``: in a present file at the highest version of its document;
- ``superseded``: its document has a higher version, or its file no longer contains it;
- ``retired``: its file (or its whole document) is gone.

Status is recomputed from those facts for every document an ingest touched, so it never depends
on the order in which files were ingested.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ConfigError
from tether.retrieval.documents import LoadedDocument
from tether.retrieval.knowledge import Passage
from tether.tools.sqlite import open_database, write_transaction

__all__ = ["FileRow", "Manifest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    root TEXT NOT NULL, path TEXT NOT NULL, digest TEXT NOT NULL, trust TEXT NOT NULL,
    doc_id TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (root, path));
CREATE TABLE IF NOT EXISTS chunks (
    evidence_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, version INTEGER NOT NULL,
    title TEXT NOT NULL, text TEXT NOT NULL, source TEXT NOT NULL, updated_at TEXT,
    trust TEXT NOT NULL, root TEXT NOT NULL, path TEXT NOT NULL, ordinal INTEGER NOT NULL,
    live INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'current');
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id, version);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks (root, path);
CREATE INDEX IF NOT EXISTS chunks_status ON chunks (status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_PASSAGE = "evidence_id, doc_id, version, title, text, source, updated_at, trust, status"
_STATUS = """
UPDATE chunks SET status = CASE
    WHEN NOT EXISTS (SELECT 1 FROM files f WHERE f.root = chunks.root AND f.path = chunks.path) THEN 'retired'
    WHEN :top IS NULL THEN 'retired'
    WHEN live = 0 OR version < :top THEN 'superseded'
    ELSE 'current' END
WHERE doc_id = :doc
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRow:
    """What the manifest remembers of one ingested file."""

    path: str
    digest: str
    trust: str
    doc_id: str
    version: int


def _passage(row: sqlite3.Row) -> Passage:
    return Passage(**{k: row[k] for k in row.keys()})  # noqa: SIM118 - sqlite3.Row is not a dict


class Manifest:
    """Documents, versions, digests and chunk status of one knowledge base (``manifest.sqlite``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = open_database(path)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def files(self, root: str) -> dict[str, FileRow]:
        rows = self.db.execute("SELECT path, digest, trust, doc_id, version FROM files WHERE root = ?", (root,))
        return {r["path"]: FileRow(**dict(r)) for r in rows}

    def current_ids(self, doc_ids: Iterable[str] | None = None) -> set[str]:
        if doc_ids is None:
            rows = self.db.execute("SELECT evidence_id FROM chunks WHERE status = 'current'")
        else:
            docs = sorted(set(doc_ids))
            marks = ",".join("?" * len(docs))
            rows = self.db.execute(
                f"SELECT evidence_id FROM chunks WHERE status = 'current' AND doc_id IN ({marks})", docs)
        return {r[0] for r in rows}

    def apply(self, root: str, loaded: dict[str, tuple[str, str, LoadedDocument]],
              removed: Sequence[str]) -> set[str]:
        """Record new or changed files (path -> (digest, trust, document)) and removed paths in one
        transaction; return the document ids whose chunk status was recomputed."""
        with write_transaction(self.db) as db:
            touched = {r[0] for p in [*removed, *loaded] for r in db.execute(
                "SELECT doc_id FROM files WHERE root = ? AND path = ?", (root, p))}
            for path in [*removed, *loaded]:
                db.execute("DELETE FROM files WHERE root = ? AND path = ?", (root, path))
                db.execute("UPDATE chunks SET live = 0 WHERE root = ? AND path = ?", (root, path))
            for path, (digest, trust, doc) in loaded.items():
                touched.add(doc.doc_id)
                db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
                           (root, path, digest, trust, doc.doc_id, doc.version))
                db.executemany(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'current') "
                    "ON CONFLICT (evidence_id) DO UPDATE SET title = excluded.title, source = excluded.source,"
                    " updated_at = excluded.updated_at, trust = excluded.trust, root = excluded.root,"
                    " path = excluded.path, ordinal = excluded.ordinal, live = 1",
                    [(c.evidence_id, c.doc_id, c.version, c.title, c.text, c.source, c.updated_at,
                      c.trust, root, path, i) for i, c in enumerate(doc.chunks)])
            self._refuse_duplicates(db)
            db.execute("INSERT INTO meta VALUES ('generation', '1') ON CONFLICT (key) "
                       "DO UPDATE SET value = CAST(value AS INTEGER) + 1")
            for doc_id in touched:
                (top,) = db.execute("SELECT MAX(version) FROM files WHERE doc_id = ?", (doc_id,)).fetchone()
                db.execute(_STATUS, {"top": top, "doc": doc_id})
        return touched

    @staticmethod
    def _refuse_duplicates(db: sqlite3.Connection) -> None:
        clash = db.execute(
            "SELECT doc_id, version, GROUP_CONCAT(root || '/' || path, ', ') FROM files "
            "GROUP BY doc_id, version HAVING COUNT(*) > 1 LIMIT 1").fetchone()
        if clash:
            raise ConfigError(
                setting=f"document {clash[0]} version {clash[1]}",
                reason=f"two files claim it ({clash[2]}); give one a higher 'version:' or a different 'id:'")

    def meta(self, key: str) -> str | None:
        """A bookkeeping value; ``generation`` counts the ingests that changed anything."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value))

    def get(self, evidence_id: str) -> Passage | None:
        row = self.db.execute(f"SELECT {_PASSAGE} FROM chunks WHERE evidence_id = ?", (evidence_id,)).fetchone()
        return _passage(row) if row else None

    def passages(self, ids: Iterable[str] | None = None) -> list[Passage]:
        """Current passages in document order, or the named ones (any status) in the order given."""
        if ids is None:
            rows = self.db.execute(f"SELECT {_PASSAGE} FROM chunks WHERE status = 'current' "
                                   "ORDER BY doc_id, version, ordinal")
            return [_passage(r) for r in rows]
        found = {p.evidence_id: p for p in (self.get(i) for i in ids) if p is not None}
        return list(found.values())

    def count_current(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM chunks WHERE status = 'current'").fetchone()[0])

    def document_rows(self) -> list[sqlite3.Row]:
        """One row per (document, version): title, source, updated_at, trust, best status, chunks."""
        return list(self.db.execute(
            "SELECT doc_id, version, MAX(title) AS title, MAX(source) AS source, MAX(updated_at) AS updated_at,"
            " MAX(trust) AS trust, MIN(CASE status WHEN 'current' THEN 0 WHEN 'superseded' THEN 1 ELSE 2 END)"
            " AS rank, SUM(status = 'current') AS current_chunks, COUNT(*) AS chunks"
            " FROM chunks GROUP BY doc_id, version ORDER BY doc_id, version DESC"))
