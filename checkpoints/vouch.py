"""The fast path of ``Ledger.verify``: ranges of rows checked where they are read.

A checker takes the rows ``lo < seq <= hi`` and returns a ``Verdict`` for each row it cannot
vouch for and for the range's last row, each with the row before it (the previous range's last
row is read again for the first): a row is vouched for when its hash is that of its version-2
text and it links to the row before it. ``vouched`` turns verdicts into what ``verify_chain``
reads: ``Checked`` runs, and every other row in full (``verify_chain`` names what is wrong with
it). PostgreSQL's checker is SQL run on the server; SQLite's is ``check_range`` here, over the
text SQLite writes for each row, run in worker processes (``python -m tether.checkpoints.vouch
PATH BATCH``, one range per line on stdin, its verdicts as one JSON line on stdout) once a ledger is
large enough for them to pay for their start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tether.checkpoints.chain import GENESIS, Checked
from tether.checkpoints.row_text import JsonRun, row_text, text_batches
from tether.errors import LedgerError

__all__ = ["Range", "Verdict", "check_range", "in_order", "range_checkers", "ranges", "sqlite_json_array", "vouched"]

Verdict = tuple[Any, Any, Any, bool, Any, Any, Any]
"""``(seq, prev_hash, row_hash, fine, bseq, bprev, bhash)``: a row, whether it was vouched for,
and the row before it (``None`` where there is none)."""
Range = tuple[int, int, list[Verdict] | None]
"""``(lo, hi, verdicts)``; ``None`` when the range could not be checked there (read it in full)."""
Read = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
C = TypeVar("C")


def ranges(upto: int, size: int) -> list[tuple[int, int]]:
    """``(lo, hi]`` ranges of ``size`` seqs covering ``0 < seq <= upto``."""
    return [(lo, min(lo + size, upto)) for lo in range(0, upto, size)]


def check_range(read: Read, json_run: JsonRun, lo: int, hi: int, *, batch: int) -> list[Verdict] | None:
    """Verdicts for the rows ``lo < seq <= hi`` (see the module); ``None`` when the database
    refuses to write a row's text (a value of a type the ledger never writes)."""
    before = read("SELECT seq, prev_hash, row_hash FROM ledger_events WHERE seq = ?", (lo,)) if lo else []
    b: tuple[Any, Any, Any] | None = tuple(before[0]) if before else None  # type: ignore[assignment]
    out: list[Verdict] = []
    sha = hashlib.sha256
    none = (None, None, None)
    bb, fine = None, False
    try:
        for rows in text_batches(read, json_run, upto=hi, batch=batch, after=lo):
            for seq, prev_hash, row_hash, head, real, tail in rows:
                linked = seq == b[0] + 1 and prev_hash == b[2] if b is not None else \
                    seq == 1 and prev_hash == GENESIS
                text = f"{head[:-1]},null,{tail[1:]}" if real is None else row_text(head, real, tail)
                fine = linked and text is not None and row_hash == "sha256:" + sha(text.encode()).hexdigest()
                if not fine:
                    out.append((seq, prev_hash, row_hash, False, *(b or none)))
                bb, b = b, (seq, prev_hash, row_hash)
    except LedgerError:
        return None
    if fine and b is not None:  # the range's last row, the end of the run vouched for
        out.append((*b, True, *(bb or none)))
    return out


def vouched(checked: Iterable[Range], *, load: Callable[[int], Sequence[Any] | None],
            raw: Callable[[int, int], Iterable[Sequence[Any]]]) -> Iterator[Sequence[Any]]:
    """What ``verify_chain`` reads, from ranges' verdicts taken in order: runs vouched for as
    ``Checked`` rows, any other row read in full with ``load``; a range that could not be
    checked is read in full with ``raw(lo, hi)``."""
    done = 0
    for lo, hi, verdicts in checked:
        if verdicts is None:
            for r in raw(lo, hi):
                done = int(r[0])
                yield r
            continue
        for seq, prev_hash, row_hash, fine, bseq, bprev, bhash in verdicts:
            if fine:
                yield Checked(seq=int(seq), prev_hash=str(prev_hash), row_hash=str(row_hash))
            else:
                if bseq is not None and int(bseq) > done:  # the rows before it all held
                    yield Checked(seq=int(bseq), prev_hash=str(bprev), row_hash=str(bhash))
                yield load(int(seq)) or (seq, prev_hash, row_hash, None)
            done = int(seq)


class _Worker:
    """One checker process over a SQLite file: a range in, its verdicts out."""

    def __init__(self, path: str, batch: int) -> None:
        self.path = path
        root = str(Path(__file__).parents[2])  # where ``tether`` imports from (tether/checkpoints/vouch.py)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tether.checkpoints.vouch", path, str(batch)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def check(self, lo: int, hi: int) -> list[Verdict] | None:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(f"{lo} {hi}\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise LedgerError(url=self.path, reason=f"a verify worker ended with {self.proc.wait()}")
        got = json.loads(line)
        return None if got is None else [tuple(v) for v in got]  # type: ignore[misc]

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):  # a worker that ended cannot be told to
                self.proc.stdin.close()
        self.proc.wait()


def in_order(spans: Sequence[tuple[int, int]], checkers: Sequence[C],
             check: Callable[[C, int, int], Range]) -> Iterator[Range]:
    """``check(checker, lo, hi)`` for every span, on all ``checkers`` at once (each checks one
    span at a time); the results in the order of the spans."""
    free: queue.SimpleQueue[C] = queue.SimpleQueue()
    for c in checkers:
        free.put(c)

    def one(span: tuple[int, int]) -> Range:
        c = free.get()
        try:
            return check(c, *span)
        finally:
            free.put(c)

    pool = ThreadPoolExecutor(max_workers=len(checkers), thread_name_prefix="tether-verify")
    try:
        yield from pool.map(one, spans)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def range_checkers(path: str, spans: list[tuple[int, int]], workers: int,
                   fallback: Callable[[int, int], list[Verdict] | None], *, batch: int) -> Iterator[Range]:
    """The spans checked by ``workers`` processes at once, their results in order; a span whose
    worker fails (it cannot start, or ends) is checked with ``fallback`` instead."""

    def check(w: _Worker, lo: int, hi: int) -> Range:
        try:
            return (lo, hi, w.check(lo, hi))
        except (OSError, ValueError, LedgerError):
            return (lo, hi, fallback(lo, hi))

    procs: list[_Worker] = []
    try:
        procs.extend(_Worker(path, batch) for _ in range(workers))
    except OSError:  # no Python to start (an embedded interpreter): every range is checked here
        for w in procs:
            w.close()
        yield from ((lo, hi, fallback(lo, hi)) for lo, hi in spans)
        return
    try:
        yield from in_order(spans, procs, check)
    finally:
        for w in procs:
            w.close()


def sqlite_json_array(columns: Sequence[str]) -> str:
    """SQLite's JSON array of columns (``row_text.JsonRun``)."""
    return f"json_array({', '.join(columns)})"


def _serve(path: str, batch: int) -> None:
    db = sqlite3.connect(path, timeout=30)

    def read(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(url=path, reason=f"{type(exc).__name__}: {exc}") from None

    for line in sys.stdin:
        lo, hi = (int(x) for x in line.split())
        print(json.dumps(check_range(read, sqlite_json_array, lo, hi, batch=batch), default=repr), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
