"""``tether kb``: ingest, search and list a persistent knowledge base under ``$TETHER_HOME/kb/``.

    tether kb ingest DIR [--kb NAME] [--trust internal|external] [--retrieval MODE]
    tether kb search 'QUERY' [--kb NAME] [--top N] [--retrieval MODE]
    tether kb list [--kb NAME]

Every command takes ``--json``. ``--retrieval`` defaults to ``hybrid`` (BM25 and vectors);
without the ``embeddings`` extra the commands fall back to BM25 and say so on stderr. Errors
follow the ``tether`` command: a message (a JSON object with ``--json``) on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

__all__ = ["DEFAULT_KB", "add_kb_commands"]

DEFAULT_KB = "default"
_MODES = ("bm25", "vector", "hybrid")


def _open(args: argparse.Namespace, *, must_exist: bool) -> Any:
    from tether.config import Home
    from tether.errors import ConfigError
    from tether.retrieval.store import KnowledgeStore

    home = Home.from_env()
    if must_exist and not (home.root / "kb" / args.kb / "manifest.sqlite").is_file():
        raise ConfigError(setting="knowledge base", reason=f"{args.kb!r} does not exist under {home.root / 'kb'}; "
                          f"create it with: tether kb ingest DIR --kb {args.kb}")
    import warnings

    from tether.retrieval.store import RetrievalFallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetrievalFallback)  # said once on stderr below instead
        store = KnowledgeStore.open(home, args.kb, retrieval=getattr(args, "retrieval", "bm25"))
    if store.notice:
        print(f"notice: {store.notice}", file=sys.stderr)
    return store


def _print(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human)


def cmd_ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tether.errors import ConfigError

    source = Path(args.dir)
    if not source.exists():
        raise ConfigError(setting="DIR", reason=f"{source} does not exist; pass the directory of documents to ingest")
    with _open(args, must_exist=False) as store:
        report = store.ingest(source, trust=args.trust)
        data = {"kb": args.kb, "mode": store.mode, "chunks_current": len(store), **asdict(report)}
    human = (f"{args.kb}: {report.documents_added} added, {report.documents_updated} updated, "
             f"{report.documents_unchanged} unchanged, {report.documents_retired} retired; "
             f"chunks {report.chunks_added} added, {report.chunks_retired} retired, "
             f"{report.chunks_embedded} embedded; {data['chunks_current']} current ({store.mode}) "
             f"in {report.seconds:.2f}s")
    _print(args, data, human)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tether.cli import table

    if args.top < 1:
        from tether.errors import ConfigError

        raise ConfigError(setting="--top", reason=f"{args.top}: ask for at least 1 result")
    with _open(args, must_exist=True) as store:
        hits = store.search(args.query, top_k=args.top)
        mode = store.mode
    rows = [[e.evidence_id, f"{e.score:.4f}", e.source, e.version, e.trust, e.status, e.text] for e in hits]
    human = table(rows, ["evidence", "score", "source", "version", "trust", "status", "text"]) if hits else (
        f"no matches in {args.kb} ({mode})")
    _print(args, [e.model_dump() for e in hits], human)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tether.cli import table

    with _open(args, must_exist=True) as store:
        docs = store.documents()
    rows = [[d.doc_id, d.version, d.status, d.trust, d.current_chunks, d.chunks, d.source, d.updated_at or "",
             d.title] for d in docs]
    human = table(rows, ["document", "version", "status", "trust", "current", "chunks", "source", "updated_at",
                         "title"])
    _print(args, [asdict(d) for d in docs], human)
    return 0


def add_kb_commands(subparsers: Any) -> None:
    """Add ``kb ingest|search|list`` to the ``tether`` command's subparsers."""
    kb = subparsers.add_parser("kb", help="persistent knowledge bases").add_subparsers(dest="sub", required=True)

    def add(name: str, fn: Any, helptext: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = kb.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("--kb", default=DEFAULT_KB, help=f"knowledge base name (default: {DEFAULT_KB})")
        sp.set_defaults(fn=fn)
        return sp

    ing = add("ingest", cmd_ingest, "ingest Markdown, text and PDF files; only changed files are re-read")
    ing.add_argument("dir", help="directory (or one file) of documents")
    ing.add_argument("--trust", choices=("internal", "external"), default="internal",
                     help="trust level of files whose front matter sets none (default: internal)")
    ing.add_argument("--retrieval", choices=_MODES, default="hybrid", help="embed for this mode (default: hybrid)")
    se = add("search", cmd_search, "best current chunks for a query")
    se.add_argument("query")
    se.add_argument("--top", type=int, default=5, help="how many results (default: 5)")
    se.add_argument("--retrieval", choices=_MODES, default="hybrid", help="default: hybrid")
    add("list", cmd_list, "documents and their versions")
