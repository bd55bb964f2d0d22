"""The version-2 hashed text of ledger rows, computed by the database (``Ledger.verify``'s fast path).

SQLite (``text_batches``): a backend supplies how it writes a run of columns as a JSON array
(``json_array``, which writes text and integers exactly as the hashed form does); the REAL column
is read as it is and written here (SQLite does not write floats in their shortest round-trip
form). PostgreSQL (``pg_text_sql``): the whole text as one SQL expression, hashed on the server.
A text is trusted only as far as its hash: a row whose text does not match is re-read in full
(``tether.checkpoints.vouch``). ``pages`` reads any ``seq``-ordered query a batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from tether.checkpoints.chain import real_text
from tether.checkpoints.columns import COLUMNS

__all__ = ["JsonRun", "pages", "pg_text_sql", "row_text", "text_batches"]

JsonRun = Callable[[Sequence[str]], str]
"""SQL for a JSON array of the given column expressions (written compactly, no spaces)."""

_Segment = tuple[str, str]


def _segments(json_run: JsonRun) -> tuple[_Segment, ...]:
    out: list[_Segment] = []
    run = ["2", "seq", "prev_hash"]
    for name, kind in COLUMNS:
        if kind == "real":
            if run:
                out.append(("json", json_run(run)))
            out.append(("real", name))
            run = []
        else:
            run.append(name)
    if run:
        out.append(("json", json_run(run)))
    return tuple(out)


def text_batches(
    read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]], json_run: JsonRun, *, upto: int, batch: int,
    after: int = 0,
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows ``after < seq <= upto`` as ``(seq, prev_hash, row_hash, head, real, tail)``, read in
    batches with ``read`` (``?`` placeholders): ``row_text(head, real, tail)`` is the row's text.
    Raises what ``read`` raises when the database refuses a value."""
    segments = _segments(json_run)
    if tuple(kind for kind, _ in segments) != ("json", "real", "json"):  # one REAL column (spend_usd)
        raise AssertionError(f"row_text expects one REAL column between text columns, not {segments}")
    sql = ("SELECT seq, prev_hash, row_hash, " + ", ".join(s for _, s in segments)
           + " FROM ledger_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?")
    return pages(read, sql, after=after, upto=upto, batch=batch)


def pages(read: Callable[[str, Sequence[Any]], list[Any]], sql: str, *, after: int, upto: int, batch: int,
          seq: Callable[[Any], Any] = itemgetter(0)) -> Iterator[list[Any]]:
    """Rows of ``sql`` (``WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?``) a batch at a time,
    each batch starting after the last ``seq`` of the one before."""
    last = after
    while True:
        rows = read(sql, (last, upto, batch))
        yield rows
        if len(rows) < batch:
            return
        last = int(seq(rows[-1]))


def row_text(head: str, real: Any, tail: str) -> str | None:
    """A row's version-2 text from ``text_batches``' parts; ``None`` when the REAL column holds
    another type."""
    if real is None:
        return f"{head[:-1]},null,{tail[1:]}"
    return f"{head[:-1]},{real_text(real)},{tail[1:]}" if type(real) is float else None


def pg_text_sql() -> str:
    """PostgreSQL: the version-2 text of a row as one SQL expression (``NULL`` where it cannot
    write a value the way the hashed form does: such a row is re-read and checked in Python).

    Runs of text columns go through ``array_to_json`` (it escapes exactly what the hashed form
    escapes, and writes SQL NULL as ``null``), integers through their text, and the REAL column
    through ``float8`` text, which with ``extra_float_digits = 1`` is the shortest round trip; only
    ``.0`` is added where Python writes it, and magnitudes from 1e15 (where the two pick different
    notations) are left to Python."""
    segments: list[str] = []
    run = ["prev_hash"]

    def flush() -> None:
        if run:  # '["a",null]' -> '"a",null': the first and last characters are brackets
            segments.append(f"btrim(array_to_json(ARRAY[{', '.join(run)}]::text[])::text, '[]')")
            run.clear()

    for name, kind in COLUMNS:
        if kind == "text":
            run.append(name)
            continue
        flush()
        if kind == "int":
            segments.append(f"coalesce({name}::text, 'null')")
        else:
            t = f"{name}::text"
            segments.append(f"(CASE WHEN {name} IS NULL THEN 'null' WHEN abs({name}) < 1e15 THEN"
                            f" (CASE WHEN {t} ~ '[.e]' THEN {t} ELSE {t} || '.0' END) END)")
    flush()
    return "'[2,' || seq::text || ',' || " + " || ',' || ".join(segments) + " || ']'"
