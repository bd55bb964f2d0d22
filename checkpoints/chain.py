"""The ledger's hash chain: row hashes, verification and anchors.

Every event row carries ``seq`` (1, 2, 3, ... without gaps), ``prev_hash`` (the ``row_hash``
of the row before, ``GENESIS`` for the first) and ``row_hash`` (SHA-256 over the row's
columns, ``seq`` and ``prev_hash``). Two hashed forms exist. Version 2, which rows are written
with, is the compact JSON array ``[2, seq, prev_hash, <every column of COLUMNS in order>]``,
UTF-8, only ``"``, ``\\`` and control characters escaped, floats in their shortest round-trip
form; version 1 (rows written before schema 0005) is ``records.dumps`` of
``{"prev_hash", "row": {column: value}, "seq", "v": 1}``. A row is authentic if
its hash is that of either form of its columns: the two cannot collide, one is an array and the
other an object. A column added to ``COLUMNS`` needs a new version.

A backend may compute a row's version-2 text itself (SQLite's ``json_array`` writes exactly
that form for text and integers); ``verify_chain`` then only hashes the text, and re-reads a
row in full whenever the text does not match (never trusting the database's text beyond its
hash: equal texts decode to equal values). ``verify_chain`` walks the rows in ``seq`` order and
names the first row that was edited, deleted, inserted or reordered. The ledger's own head
record and an optional external ``Anchor`` (the head written to a file) make deleting the
tail detectable too.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, Literal, NamedTuple

from tether.checkpoints.columns import COLUMNS, float_text, now

__all__ = [
    "CHAIN_COLUMNS",
    "GENESIS",
    "Anchor",
    "BreakKind",
    "ChainBreak",
    "ChainReport",
    "Checked",
    "real_text",
    "row_hash",
    "text2",
    "values_hash",
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


_PLAN: tuple[tuple[str, str, str, bool], ...] = tuple(
    (name, _HASH_NAME.get(name, name), kind, name in _ADDED) for name, kind in COLUMNS)
"""Per stored column: its name, the name it is hashed under, its kind, whether it is hashed only when set."""
CHAIN_COLUMNS: tuple[str, ...] = ("seq", "prev_hash", "row_hash", *(name for name, _ in COLUMNS))
"""The column order of the rows ``verify_chain`` reads (tuples, not dicts: the fast path)."""


def _canonical(values: Sequence[Any]) -> dict[str, Any]:
    """The hashed form of a row's columns, given in ``COLUMNS`` order: the specification that
    ``_payload`` implements (and is tested against)."""
    out: dict[str, Any] = {}
    for (_, key, kind, added), v in zip(_PLAN, values, strict=True):
        if v is None:
            if added:
                continue
        elif kind == "text":
            if type(v) is not str:
                v = str(v)
        elif kind == "int":
            if type(v) is not int:
                v = int(v)
        elif type(v) is not float:
            v = float(v)
        out[key] = v
    return out


def _values(cols: Mapping[str, Any]) -> list[Any]:
    """A row's columns in ``COLUMNS`` order; a column renamed by a migration is also found
    under its old name (rows read before that migration ran)."""
    out = []
    for name, key, _, _ in _PLAN:
        v = cols.get(name)
        if v is None and key != name:
            v = cols.get(key)
        out.append(v)
    return out


_ORDER: tuple[tuple[int, str, str, bool], ...] = tuple(sorted(
    ((i, ',"' + key + '":', kind, added) for i, (_, key, kind, added) in enumerate(_PLAN)),
    key=lambda item: item[1]))
"""The hashed columns in key order: index in ``COLUMNS``, the JSON text before the value, kind."""


def _number(v: Any, kind: str) -> str:
    if kind == "int":
        return int.__repr__(v if type(v) is int else int(v))
    return float_text(v if type(v) is float else float(v))


def _payload(values: Sequence[Any], seq: int, prev_hash: str) -> str:
    """``dumps({"v": 1, "seq": seq, "prev_hash": prev_hash, "row": _canonical(values)})``, built
    directly (twice as fast as the encoder here): the row's keys are known and sorted once,
    every value is a scalar."""
    parts = []
    for i, head, kind, added in _ORDER:
        v = values[i]
        if v is None:
            if not added:
                parts.append(head + "null")
        elif kind == "text":
            parts.append(head + _quote(v if type(v) is str else str(v)))
        else:
            parts.append(head + _number(v, kind))
    return ('{"prev_hash":' + _quote(prev_hash) + ',"row":{' + "".join(parts)[1:]
            + '},"seq":' + int.__repr__(int(seq)) + ',"v":1}')


def values_hash(values: Sequence[Any], *, seq: int, prev_hash: str) -> str:
    """``row_hash`` (version 2) of a row whose columns are given in ``COLUMNS`` order, each of
    its column's type or ``None``."""
    return _hash2(values, seq, prev_hash)


def _hash(values: Sequence[Any], seq: int, prev_hash: str) -> str:
    return "sha256:" + hashlib.sha256(_payload(values, seq, prev_hash).encode()).hexdigest()


real_text = float_text
"""A float as the hashed forms write it (shortest round trip; NaN, Infinity)."""


_C_ARRAY = getattr(json.encoder, "c_make_encoder", None)
_ARRAY = _C_ARRAY(None, str, json.encoder.encode_basestring, real_text, ":", ",", False, False, True) \
    if _C_ARRAY is not None else None


def text2(values: Sequence[Any], seq: int, prev_hash: str) -> str:
    """The version-2 hashed text of a row (its columns in ``COLUMNS`` order)."""
    row = [2, seq, prev_hash, *values]
    if _ARRAY is None:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
    return "".join(_ARRAY(row, 0))


def _hash2(values: Sequence[Any], seq: int, prev_hash: str) -> str:
    return "sha256:" + hashlib.sha256(text2(values, seq, prev_hash).encode()).hexdigest()


def _typed(values: Sequence[Any]) -> list[Any]:
    """Each value as its column's type (a backend may hand back another numeric type)."""
    canonical = _canonical(values)
    return [canonical.get(key) for _, key, _, _ in _PLAN]


def _authentic(values: Sequence[Any], seq: int, prev_hash: str, h: Any) -> bool:
    """Whether ``h`` is the hash of either form of the row (the fast path is checked first)."""
    return bool(h == _hash2(values, seq, prev_hash) or h == _hash2(_typed(values), seq, prev_hash)
                or h == _hash(values, seq, prev_hash))


def row_hash(cols: Mapping[str, Any], *, seq: int, prev_hash: str, version: Literal[1, 2] = 2) -> str:
    """The hash a row must carry, from its stored columns, its ``seq`` and ``prev_hash``
    (``version`` 1: the form of rows written before schema 0005)."""
    values = _values(cols)
    if version == 1:
        return _hash(values, int(seq), prev_hash)
    return _hash2(_typed(values), int(seq), prev_hash)


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
    self_ok = _authentic(_values(r), seq, str(link), r.get("row_hash"))
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


class Checked(NamedTuple):
    """A row the database checked itself, with every row since the one yielded before it: each
    row's hash is that of its version-2 text and each links to the row before it (the first of
    them to the row yielded before the run)."""

    seq: int
    prev_hash: str
    row_hash: str


def verify_chain(
    rows: Iterable[Sequence[Any]],
    *,
    find_seq: Callable[[str], int | None],
    head: tuple[int, str] | None = None,
    anchor: Anchor | None = None,
    load: Callable[[int], Sequence[Any] | None] | None = None,
) -> ChainReport:
    """Check rows (ascending ``seq``) against each other, the head, an anchor.

    A row is a tuple in ``CHAIN_COLUMNS`` order, or ``(seq, prev_hash, row_hash, text)`` with
    the version-2 text the database computed (``None`` if it could not): such a row is checked
    by hashing the text, and re-read in full with ``load(seq)`` when that does not match; or a
    ``Checked`` row, which stands for itself and the rows before it that the database checked.
    ``find_seq`` maps a row hash to the seq of the row carrying it (used to classify a break).
    ``head`` is the ledger's own record of its last ``(seq, row_hash)``.
    """
    prev: Sequence[Any] | None = None
    n, prev_seq, prev_hash = 0, 0, GENESIS
    anchored: str | None = None
    first = _hash2  # the form the last row matched: a ledger is mostly one form or the other
    sha = hashlib.sha256
    for r in rows:
        seq = int(r[0])
        if type(r) is Checked:
            if seq <= prev_seq:
                raise ValueError(f"checked row {seq} does not follow row {prev_seq}")
            if anchor is not None and prev_seq < anchor.seq <= seq:
                found = r if anchor.seq == seq else load(anchor.seq) if load is not None else None
                anchored = str(found[2]) if found is not None else None
            n += seq - prev_seq
            prev, prev_seq, prev_hash = r, seq, r.row_hash
            continue
        if len(r) == 4:
            text = r[3]
            if seq == prev_seq + 1 and r[1] == prev_hash and text is not None \
                    and r[2] == "sha256:" + sha(text.encode()).hexdigest():
                n += 1
                prev, prev_seq, prev_hash = r, seq, r[2]
                if anchor is not None and seq == anchor.seq:
                    anchored = str(r[2])
                continue
            full = load(seq) if load is not None else None
            if full is None:
                return _report(n, prev, ChainBreak(kind="deleted", seq=seq, reason="the row was removed "
                                                   "while the chain was being verified"))
            r = full
        if not (seq == prev_seq + 1 and r[1] == prev_hash):
            ok = False
        elif r[2] == first(r[3:], seq, prev_hash):
            ok = True
        else:
            ok = _authentic(r[3:], seq, prev_hash, r[2])
            first = _hash if ok and r[2] == _hash(r[3:], seq, prev_hash) else _hash2
        if not ok:
            as_dict = dict(zip(CHAIN_COLUMNS, r, strict=True))
            before = {"seq": prev[0], "prev_hash": prev[1], "row_hash": prev[2]} if prev is not None else None
            problem = _classify(as_dict, expected_seq=prev_seq + 1, prev=before, find_seq=find_seq)
            return _report(n, prev, problem)
        n += 1
        prev, prev_seq, prev_hash = r, seq, r[2]
        if anchor is not None and seq == anchor.seq:
            anchored = str(r[2])
    last_seq, last_hash = prev_seq, str(prev_hash)
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


def _report(n: int, prev: Sequence[Any] | None, problem: ChainBreak | None) -> ChainReport:
    return ChainReport(
        ok=problem is None, rows=n, problem=problem,
        head_seq=int(prev[0]) if prev is not None else 0,
        head_hash=str(prev[2]) if prev is not None else GENESIS,
    )
