"""Loading and chunking the files of a knowledge base: Markdown, plain text and PDF.

A file becomes one ``LoadedDocument``: its id, version, title, ``updated_at`` and trust level
come from Markdown front matter when present (``id``, ``title``, ``version``, ``updated_at``,
``trust``, all optional), otherwise from the file: id from the file name, version 1, title from
the first Markdown heading or the file name, ``updated_at`` from the file's modification time,
trust from the ingest default. The body is cut into chunks at paragraph boundaries: short
paragraphs (headings, one-line notes) are merged into the next one, long ones are split at
sentence ends. Each chunk's evidence id is ``<doc id>@v<version>#<first 8 hex of the SHA-256 of
its text>``, so an unchanged paragraph keeps its id however the text around it changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from tether.errors import ConfigError
from tether.retrieval.knowledge import Passage

__all__ = [
    "SUFFIXES",
    "LoadedDocument",
    "Trust",
    "chunk_text",
    "evidence_id",
    "file_digest",
    "load_document",
    "scan",
]

Trust = Literal["internal", "external"]
SUFFIXES = (".md", ".markdown", ".txt", ".pdf")
"""File types a knowledge base ingests; anything else under the directory is ignored."""
MIN_CHARS = 60
"""A paragraph shorter than this is merged into the next one (a heading, a one-line note)."""
MAX_CHARS = 1200
"""A chunk longer than this is split at sentence ends (~250 tokens of English)."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_HEADING_MARK = re.compile(r"^#{1,6}\s+", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedDocument:
    """One file, read and chunked: what a knowledge base stores for it."""

    doc_id: str
    version: int
    title: str
    source: str
    """The file's path relative to the ingested directory."""
    updated_at: str
    trust: Trust
    chunks: tuple[Passage, ...]


def scan(root: Path) -> list[Path]:
    """Every ingestible file under ``root`` (recursively, hidden files skipped), in path order."""
    if root.is_file():
        return [root] if root.suffix.lower() in SUFFIXES else []
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: what decides whether a re-ingest has to read it again."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evidence_id(doc_id: str, version: int, text: str) -> str:
    """``KB-REFUND@v3#1a2b3c4d``: document, version and the hash of the chunk's text."""
    return f"{doc_id}@v{version}#{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def _pack(sentences: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    cur = ""
    for s in sentences:
        while len(s) > max_chars:  # one enormous "sentence": cut at the last space before the limit
            cut = s.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            head, s = s[:cut].strip(), s[cut:].strip()
            if cur:
                out.append(cur)
                cur = ""
            out.append(head)
        if cur and len(cur) + 1 + len(s) > max_chars:
            out.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}".strip()
    if cur:
        out.append(cur)
    return out


def chunk_text(text: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[str]:
    """Paragraphs (blank-line separated, whitespace collapsed), short ones merged forward and
    long ones split at sentence ends; identical chunks are kept once."""
    if min_chars > max_chars:
        raise ValueError(f"min_chars ({min_chars}) must not exceed max_chars ({max_chars})")
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    merged: list[str] = []
    pending = ""
    for p in filter(None, paras):
        pending = f"{pending} {p}".strip()
        if len(pending) >= min_chars:
            merged.append(pending)
            pending = ""
    if pending:  # a short tail joins the previous chunk when that stays within bounds
        if merged and len(merged[-1]) + 1 + len(pending) <= max_chars:
            merged[-1] = f"{merged[-1]} {pending}"
        else:
            merged.append(pending)
    chunks: list[str] = []
    for m in merged:
        chunks.extend([m] if len(m) <= max_chars else _pack(_SENTENCE_END.split(m), max_chars))
    return list(dict.fromkeys(chunks))


def _front_matter(raw: str, path: Path) -> tuple[dict[str, Any], str]:
    if not raw.startswith("---\n"):
        return {}, raw
    parts = raw.split("\n---\n", 1) if "\n---\n" in raw else raw.split("\n---", 1)
    if len(parts) != 2:
        raise ConfigError(setting=f"{path}: front matter", reason="opened with '---' but never closed; "
                          "end it with a line '---' or remove the opening line")
    try:
        meta = yaml.safe_load(parts[0][4:]) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(setting=f"{path}: front matter", reason=f"not YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise ConfigError(setting=f"{path}: front matter", reason="must be a mapping of keys like 'id: KB-X'")
    return meta, parts[1]


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise ConfigError(setting=f"{path}", reason=f"not a readable PDF ({exc}); re-export it or remove it") from exc
    return "\n\n".join(pages)


def _read(path: Path) -> tuple[dict[str, Any], str]:
    if path.suffix.lower() == ".pdf":
        return {}, _pdf_text(path)
    try:
        raw = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise ConfigError(setting=f"{path}", reason="not UTF-8 text; convert it or remove it") from exc
    if path.suffix.lower() in (".md", ".markdown"):
        return _front_matter(raw, path)
    return {}, raw


def _meta_value(meta: dict[str, Any], key: str, path: Path, kind: type) -> Any:
    value = meta.get(key)
    if value is None:
        return None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("v").isdigit():
            raise ConfigError(setting=f"{path}: {key}", reason=f"{value!r} is not a whole number, e.g. 'version: 3'")
        number = int(str(value).lstrip("v"))
        if number < 1:
            raise ConfigError(setting=f"{path}: {key}", reason="versions start at 1")
        return number
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip() or None


def load_document(path: Path, *, root: Path, trust: Trust = "internal") -> LoadedDocument:
    """Read and chunk one file; ``trust`` applies unless its front matter says otherwise."""
    meta, body = _read(path)
    doc_id = _meta_value(meta, "id", path, str) or _ID_UNSAFE.sub("-", path.stem).strip("-") or "doc"
    if _ID_UNSAFE.search(doc_id) or "@" in doc_id:
        raise ConfigError(setting=f"{path}: id", reason=f"{doc_id!r}: use letters, digits, '.', '_' and '-'")
    version = _meta_value(meta, "version", path, int) or 1
    heading = _HEADING.search(body) if path.suffix.lower() != ".pdf" else None
    title = _meta_value(meta, "title", path, str) or (heading.group(1) if heading else path.stem)
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC).replace(microsecond=0)
    updated_at = _meta_value(meta, "updated_at", path, str) or mtime.isoformat()
    doc_trust = _meta_value(meta, "trust", path, str) or trust
    if doc_trust not in ("internal", "external"):
        raise ConfigError(setting=f"{path}: trust", reason=f"{doc_trust!r}: use 'internal' or 'external'")
    source = path.name if path == root else path.relative_to(root).as_posix()
    base = {"doc_id": doc_id, "version": version, "title": title, "source": source,
            "updated_at": updated_at, "trust": doc_trust}
    if path.suffix.lower() in (".md", ".markdown"):
        body = _HEADING_MARK.sub("", body)  # "## Refunds" reads as "Refunds" in a chunk
    chunks = tuple(
        Passage(evidence_id=evidence_id(doc_id, version, text), text=text, **base)
        for text in chunk_text(body)
    )
    return LoadedDocument(chunks=chunks, **cast(dict[str, Any], base))
