"""LangGraph checkpointers by URL: ``sqlite:///PATH`` (default) or ``postgresql://...``.

Both are LangGraph's own savers; the serializer is told which types it may restore. Modules
that put their own values into a graph's state register them with ``allow_in_checkpoints``
(the governed workflow's state types register themselves on import).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from tether.errors import ConfigError, MissingExtra

__all__ = ["allow_in_checkpoints", "open_checkpointer", "serializer"]

_ALLOWED: list[tuple[str, str]] = []


def allow_in_checkpoints(*types: type) -> None:
    """Let checkpoints restore these classes as themselves (LangGraph's msgpack allowlist)."""
    for cls in types:
        key = (cls.__module__, cls.__name__)
        if key not in _ALLOWED:
            _ALLOWED.append(key)


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=list(_ALLOWED))  # type: ignore[arg-type]


@contextmanager
def open_checkpointer(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    """Open a checkpointer for the duration of a ``with`` block."""
    if url.startswith("sqlite:///") or "://" not in url:
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        try:
            saver = SqliteSaver(conn, serde=serializer())
            saver.setup()
            yield saver
        finally:
            conn.close()
        return
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            raise MissingExtra(extra="postgres", feature="PostgreSQL checkpointer") from None
        with PostgresSaver.from_conn_string(url) as pg:
            pg.serde = serializer()
            pg.setup()
            yield pg
        return
    raise ConfigError(setting="checkpoint URL", reason=f"{url!r}: use sqlite:///PATH or postgresql://...")
