"""The ledger's hash chain: row hashes, verification and anchors.

Every event row carries ``seq`` (1, 2, 3, ... without gaps), ``prev_hash`` (the ``row_hash``
of the row before, ``GENESIS`` for the first) and ``row_hash`` (SHA-256 over the row's
columns, ``seq`` and ``prev_hash``). ``verify_chain`` walks the rows in ``seq`` order and
names the first row that was edited, deleted, inserted or reordered. The ledger's own head
record and an optional external ``Anchor`` (the head written to a file) make deleting the
tail detectable too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tether.checkpoints.records import COLUMNS, dumps, now

__all__ = [
    "GENESIS",
    "Anchor",
    "BreakKind",
    "ChainBreak",
    "ChainReport",
    "row_hash",
    "verify_chain",
]

GENESIS = "sha256:" + "0" * 64
"""``prev_hash`` of the first row."""
ANCHOR_FORMAT = "tether-ledger-anchor/1"
BreakKind = Literal["edited", "deleted", "inserted", "reordered", "truncated"]


_HASH_NAME = {"subject_id": "customer_id"}
"""Columns renamed by a migration keep the name they were hashed under (old rows still verify)."""
_ADDED = frozenset({"citations", "flags"})
"""Columns added after 0003: hashed only when set, so rows written before them still verify."""


def _canonical(cols: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in COLUMNS:
        old = _HASH_NAME.get(name)
        v = cols.get(name, cols.get(old) if old else None)
        if v is not None:
            v = int(v) if kind == "int" else float(v) if kind == "real" else str(v)
        elif name in _ADDED:
            continue
        out[old or name] = v
    return out


def row_hash(cols: Mapping[str, Any], *, seq: int, prev_hash: str) -> str:
    """The hash a row must carry, from its stored columns, its ``seq`` and ``prev_hash``."""
    payload = dumps({"v": 1, "seq": int(seq), "prev_hash": prev_hash, "row": _canonical(cols)})
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Anchor:
    """A ledger head saved outside the ledger, to detect a deleted tail later."""

    seq: int
    """Sequence number of the head row when the anchor was taken (0: empty ledger)."""
    row_hash: str
    """That row's hash."""
    written_at: str = ""
    """When the anchor was taken (ISO 8601, UTC)."""

    def write(self, path: str | Path) -> None:
        data = {"format": ANCHOR_FORMAT, **asdict(self), "written_at": self.written_at or now()}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> Anchor:
        data = json.loads(Path(path).read_text())
        if data.get("format") != ANCHOR_FORMAT:
            raise ValueError(f"{path}: not a tether ledger anchor (format {data.get('format')!r})")
        return cls(seq=int(data["seq"]), row_hash=str(data["row_hash"]),
                   written_at=str(data.get("written_at", "")))


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainBreak:
    """The first place where the chain does not hold."""

    kind: BreakKind
    """What happened to the row: edited, deleted, inserted, reordered, or the tail truncated."""
    seq: int
    """The first row concerned (for ``deleted``/``truncated``: the first missing seq)."""
    reason: str
    """What was found, in words."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainReport:
    """Result of verifying a whole ledger."""

    ok: bool
    rows: int
    """Rows checked."""
    head_seq: int
    head_hash: str
    problem: ChainBreak | None = None

    def describe(self) -> str:
        if self.problem is None:
            return f"OK: {self.rows} rows, chain intact; head seq {self.head_seq} {self.head_hash}"
        p = self.problem
        return f"BROKEN at seq {p.seq}: {p.kind}: {p.reason} ({self.rows} rows checked)"


def _classify(
    r: Mapping[str, Any], *, expected_seq: int, prev: Mapping[str, Any] | None,
    find_seq: Callable[[str], int | None],
) -> ChainBreak:
    seq, link = int(r["seq"]), r.get("prev_hash")
    self_ok = r.get("row_hash") == row_hash(r, seq=seq, prev_hash=str(link))
    expected_prev = prev["row_hash"] if prev is not None else GENESIS
    if link == expected_prev:
        why = "its content does not match its hash" if seq == expected_seq or not self_ok \
            else f"its sequence number was changed (expected {expected_seq})"
        return ChainBreak(kind="edited", seq=seq, reason=why)
    if not link:
        return ChainBreak(kind="inserted", seq=seq, reason="the row has no chain link: written "
                          "outside the ledger")
    target = find_seq(str(link))
    prev_seq = int(prev["seq"]) if prev is not None else 0
    if target is not None and target > seq:
        return ChainBreak(kind="reordered", seq=seq,
                          reason=f"it links to row {target}, which comes after it")
    if target is not None and target < prev_seq:
        return ChainBreak(kind="inserted", seq=target + 1,
                          reason=f"row {seq} links to row {target}; rows {target + 1}..{prev_seq} "
                          "are not in the chain")
    if seq > expected_seq:
        return ChainBreak(kind="deleted", seq=expected_seq,
                          reason=f"rows {expected_seq}..{seq - 1} are missing")
    if self_ok and prev is not None:
        return ChainBreak(kind="edited", seq=prev_seq,
                          reason=f"its hash was recomputed; row {seq} still links to the original")
    return ChainBreak(kind="edited", seq=seq, reason="its content and link do not match its hash")


def verify_chain(
    rows: Iterable[Mapping[str, Any]],
    *,
    find_seq: Callable[[str], int | None],
    head: tuple[int, str] | None = None,
    anchor: Anchor | None = None,
) -> ChainReport:
    """Check rows (stored columns, ascending ``seq``) against each other, the head, an anchor.

    ``find_seq`` maps a row hash to the seq of the row carrying it (used to classify a break).
    ``head`` is the ledger's own record of its last ``(seq, row_hash)``.
    """
    prev: Mapping[str, Any] | None = None
    n = 0
    anchored: str | None = None
    for r in rows:
        seq = int(r["seq"])
        expected_seq = int(prev["seq"]) + 1 if prev is not None else 1
        good = (seq == expected_seq
                and r.get("prev_hash") == (prev["row_hash"] if prev is not None else GENESIS)
                and r.get("row_hash") == row_hash(r, seq=seq, prev_hash=str(r.get("prev_hash"))))
        if not good:
            problem = _classify(r, expected_seq=expected_seq, prev=prev, find_seq=find_seq)
            return _report(n, prev, problem)
        n += 1
        prev = r
        if anchor is not None and seq == anchor.seq:
            anchored = str(r["row_hash"])
    last_seq = int(prev["seq"]) if prev is not None else 0
    last_hash = str(prev["row_hash"]) if prev is not None else GENESIS
    for name, mark in (("the ledger's head record", head),
                       ("the anchor", (anchor.seq, anchor.row_hash) if anchor else None)):
        if mark is None:
            continue
        mseq, mhash = mark
        if mseq > last_seq:
            return _report(n, prev, ChainBreak(
                kind="truncated", seq=last_seq + 1,
                reason=f"{name} names row {mseq} but the ledger ends at row {last_seq}"))
        if name == "the ledger's head record" and mseq < last_seq:
            return _report(n, prev, ChainBreak(
                kind="inserted", seq=mseq + 1,
                reason=f"rows after {mseq} were added without updating the head record"))
        seen = last_hash if mseq == last_seq else anchored if name == "the anchor" else None
        if mseq > 0 and seen is not None and seen != mhash:
            return _report(n, prev, ChainBreak(
                kind="edited", seq=mseq, reason=f"row {mseq} does not carry the hash {name} "
                "recorded: the chain was rewritten"))
    return _report(n, prev, None)


def _report(n: int, prev: Mapping[str, Any] | None, problem: ChainBreak | None) -> ChainReport:
    return ChainReport(
        ok=problem is None, rows=n, problem=problem,
        head_seq=int(prev["seq"]) if prev is not None else 0,
        head_hash=str(prev["row_hash"]) if prev is not None else GENESIS,
    )
