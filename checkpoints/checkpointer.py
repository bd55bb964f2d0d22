"""LangGraph checkpointers by URL: ``sqlite:///PATH`` (default) or ``postgresql://...``.

Both are LangGraph's own savers; the serializer is told which tether types it may restore.
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
from tether.graphs.state import SERDE_ALLOWLIST

__all__ = ["open_checkpointer", "serializer"]


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=SERDE_ALLOWLIST)  # type: ignore[arg-type]


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
