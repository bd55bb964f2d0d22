"""SQLite helpers for tools whose resource is a local database.

``open_database(path, build)`` creates the file on first use (built in a private file, then
renamed into place, so concurrent first runs never see half a database) and opens it for
tools: autocommit, WAL, foreign keys, rows by name, usable from the act step's worker thread.
``write_transaction(db)`` is one ``BEGIN IMMEDIATE`` transaction, taken before any read it
depends on: the idempotency-key lookup and the write it guards cannot interleave with another
process doing the same.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["open_database", "write_transaction"]


def _create(path: Path, build: Callable[[sqlite3.Connection], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".sqlite", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    db = sqlite3.connect(tmp)
    try:
        build(db)
        db.commit()
    finally:
        db.close()
    if path.exists():  # another process won the race; a deterministic build is identical
        tmp.unlink()
    else:
        tmp.replace(path)


def open_database(path: Path, build: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """Open ``path`` for tools, first creating it with ``build`` when it does not exist."""
    if build is not None and not path.exists():
        _create(path, build)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``); rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
