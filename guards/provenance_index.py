"""What a run has seen, indexed field by field for provenance checks (``tether.guards.provenance``).

``HistoryIndex`` reads the earlier successful actions of a ``RunContext`` (the latest
``MAX_ACTIONS``), decides for each read whether it vouches (its selectors trusted, within
``content.provenance_depth``) and classifies every result value by the read tool's
``outputs``: structural, content or undeclared; secret or not; inside a designated document
or not. Tables by value kind are built on first use, once per decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tether.guards.context import RunContext, field_values
from tether.guards.context_rules import in_request
from tether.guards.evidence_sections import OutputsSection
from tether.guards.identifiers import candidates, canonical, compact, mentions, normal_text

if TYPE_CHECKING:
    from tether.guards.policy_file import PolicyFile

__all__ = ["COPY_CHARS", "COPY_WORDS", "MAX_ACTIONS", "MAX_LEAVES", "MAX_SCAN", "MAX_TEXT", "HistoryIndex", "Leaf", "Read",
           "Role", "char_runs", "scalars", "word_runs", "words"]

Role = Literal["structural", "content", "undeclared"]
MAX_ACTIONS = 200
"""Earlier actions searched (the latest ones)."""
MAX_LEAVES = 5000
"""Result values read per earlier action."""
MAX_TEXT = 20_000
"""Characters of one result value searched for embedded values."""
MAX_SCAN = 1_000_000
"""Characters of long text searched per decision, newest first. Older long text is not
searched: a value found only there is *unknown*, never vouched for."""
SHORT = 200
"""Values up to this length are always compared as a whole field."""
COPY_WORDS, COPY_CHARS = 6, 40
"""Verbatim runs that count as copied text."""
_ID_KEYS = ("doc_id", "evidence_id", "id")
_WORD = re.compile(r"\w+")
_EXTRACTED = frozenset({"email", "url", "iban", "account", "phone", "amount", "recipient", "record_id"})
_PHRASED = frozenset({"recipient", "record_id"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Leaf:
    tool: str
    path: str
    field: str
    role: Role
    secret: bool
    designated: bool
    read: Read
    value: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class Read:
    tool: str
    depth: int | None
    """Lookups from a trusted value (``None``: selected by an untrusted value)."""
    vouches: bool
    why: str
    designated: bool
    declared: bool = True
    """The tool has an ``outputs`` section."""


# ---------------------------------------------------------------- per-policy shapes


@dataclass(frozen=True, slots=True)
class _Shape:
    outputs: OutputsSection

    def role(self, field: str) -> Role:
        best, role = -1, "undeclared"
        for entries, name in ((self.outputs.structural, "structural"), (self.outputs.content, "content")):
            for e in entries:
                if (field == e or field.startswith(e + ".")) and len(e) >= best:
                    best, role = len(e), name
        return role  # type: ignore[return-value]

    def secret(self, field: str) -> bool:
        return any(field == e or field.startswith(e + ".") for e in self.outputs.secret)


_SHAPES: dict[int, tuple[PolicyFile, dict[str, _Shape]]] = {}


def _shapes(spec: PolicyFile) -> dict[str, _Shape]:
    """The read tools' output shapes, computed once per policy."""
    hit = _SHAPES.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    shapes = {t: _Shape(r.outputs) for t, r in spec.tools.items() if r.outputs is not None}
    if len(_SHAPES) > 32:
        _SHAPES.clear()
    _SHAPES[id(spec)] = (spec, shapes)
    return shapes


# ---------------------------------------------------------------- the run's history, indexed


def _generic(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = normal_text(str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))
    return text or None


def scalars(values: list[Any]) -> Iterator[Any]:
    for v in values:
        if isinstance(v, list):
            yield from scalars(v)
        elif isinstance(v, dict):
            yield from scalars(list(v.values()))
        elif v is not None and not isinstance(v, bool):
            yield v



class HistoryIndex:
    """What the run has seen, classified field by field (built once per decision)."""

    def __init__(self, spec: PolicyFile, ctx: RunContext) -> None:
        self.ctx = ctx
        self.limit = spec.content.provenance_depth if spec.content is not None else 2
        self.shapes = _shapes(spec)
        self.designated = {g for d in ctx.designated if (g := _generic(d))}
        subj = ctx.subject
        self.subject = [subj.id, *scalars([subj.attributes])] if subj is not None else []
        self._subject_g = {g for v in self.subject if (g := _generic(v))}
        self.leaves: list[Leaf] = []
        self._secrets: dict[str, Leaf] | None = None
        trusted: dict[str, int] = {}
        for a in [a for a in ctx.actions if a.ok][-MAX_ACTIONS:]:
            read = self._read(a.tool, a.args, trusted)
            for leaf in self._walk(read, a.result):
                self.leaves.append(leaf)
                g = _generic(leaf.value)
                if read.depth is not None and leaf.role == "structural" and g:
                    trusted[g] = min(trusted.get(g, read.depth), read.depth)
        self._scan: set[int] = set()  # ids of the long text values within MAX_SCAN, newest first
        budget = MAX_SCAN
        for leaf in reversed(self.leaves):
            if isinstance(leaf.value, str) and len(leaf.value) > SHORT and budget > 0:
                self._scan.add(id(leaf))
                budget -= min(len(leaf.value), MAX_TEXT)

    def searched(self, leaf: Leaf) -> bool:
        """``leaf`` is short, or within the text searched this decision."""
        return not isinstance(leaf.value, str) or len(leaf.value) <= SHORT or id(leaf) in self._scan

    def _seed(self, g: str, value: Any) -> bool:
        return g in self.designated or g in self._subject_g or in_request(value, self.ctx.request)

    def _read(self, tool: str, args: Mapping[str, Any], trusted: Mapping[str, int]) -> Read:
        shape = self.shapes.get(tool)
        if shape is None:
            why = f"'{tool}' declares no outputs, so none of its fields vouch"
            return Read(tool=tool, depth=None, vouches=False, why=why, designated=False, declared=False)
        names = shape.outputs.selectors if shape.outputs.selectors is not None else tuple(args)
        values = [(n, v, g) for n in names for v in scalars(field_values(dict(args), n)) if (g := _generic(v))]
        designated = any(g in self.designated for _, _, g in values)
        depth = 0
        for name, v, g in values:
            if self._seed(g, v):
                continue
            if g not in trusted:
                why = f"that '{tool}' call was selected by {name}={v!r}, which no trusted source vouches for"
                return Read(tool=tool, depth=None, vouches=False, why=why, designated=designated)
            depth = max(depth, trusted[g])
        depth += 1
        if depth > self.limit:
            why = (f"that '{tool}' call is {depth} lookups from the user's request, deeper than the limit "
                   f"of {self.limit} (content.provenance_depth)")
            return Read(tool=tool, depth=depth, vouches=False, why=why, designated=designated)
        return Read(tool=tool, depth=depth, vouches=True, why="", designated=designated)

    def _walk(self, read: Read, data: Any) -> Iterator[Leaf]:
        shape = self.shapes.get(read.tool)
        stack: list[tuple[Any, str, str, bool]] = [(data, read.tool, "", read.designated)]
        n = 0
        while stack and n < MAX_LEAVES:
            node, path, field, desig = stack.pop()
            if isinstance(node, dict):
                desig = desig or any(_generic(node.get(k)) in self.designated for k in _ID_KEYS)
                for k in reversed(list(node)):
                    stack.append((node[k], f"{path}.{k}", f"{field}.{k}" if field else str(k), desig))
            elif isinstance(node, list):
                for i in reversed(range(len(node))):
                    stack.append((node[i], f"{path}.{i}", field, desig))
            elif node is not None and not isinstance(node, bool):
                n += 1
                role: Role = shape.role(field) if shape is not None else "undeclared"
                secret = shape.secret(field) if shape is not None else False
                yield Leaf(tool=read.tool, path=path, field=field, role=role, secret=secret, designated=desig, read=read, value=node)

    def places(self, kind: str, canon: str) -> list[tuple[Leaf, bool]]:
        """Every result value holding the value ``canon``: (leaf, whole field?).

        A cheap probe (a part of the value every spelling of it contains) skips most text
        before any pattern runs.
        """
        probe = _probe(kind, canon)
        out: list[tuple[Leaf, bool]] = []
        for leaf in self.leaves:
            v = leaf.value
            if not self.searched(leaf):
                continue
            text = v[:MAX_TEXT] if isinstance(v, str) else None
            if text is not None and probe and probe not in text.casefold():
                continue
            if canonical(kind, v) == canon:
                out.append((leaf, True))
            elif text is not None and kind in _EXTRACTED and (
                canon in candidates(kind, text) or (kind in _PHRASED and mentions(kind, canon, text))
            ):
                out.append((leaf, False))
        return out

    def secrets(self) -> dict[str, Leaf]:
        """Compact form of each secret field value (four characters or more) -> where it is."""
        if self._secrets is None:
            self._secrets = {c: leaf for leaf in self.leaves
                             if leaf.secret and len(c := compact(str(leaf.value))) >= 4}
        return self._secrets

    def copied(self, text: str) -> tuple[str, Leaf] | None:
        """The longest verbatim run of ``text`` (six words, or forty characters from a word
        start) found in untrusted text and not in the user's request, and where it is."""
        mine = words(text[:MAX_TEXT]).split(" ")
        request = words(self.ctx.request)
        runs = {" ".join(mine[i : i + COPY_WORDS]) for i in range(len(mine) - COPY_WORDS + 1)}
        runs = {r for r in runs if r not in request}
        chars = {w for w in char_runs(" ".join(mine)) if w not in request}
        vocab = set(mine)
        best: tuple[str, Leaf] | None = None
        for leaf in self.leaves:
            if leaf.role == "structural" or not isinstance(leaf.value, str) or len(leaf.value) < 20 \
                    or not self.searched(leaf):
                continue
            theirs = words(leaf.value[:MAX_TEXT]).split(" ")
            i = 0
            while i < len(theirs):
                end = _shared(theirs, i, vocab, runs, chars) if theirs[i] in vocab else None
                if end is None:
                    i += 1
                    continue
                run = " ".join(theirs[i:end]) if end > i else ""
                run = run or " ".join(theirs[i : i + 12])[:COPY_CHARS]
                if best is None or len(run) > len(best[0]):
                    best = (run, leaf)
                i = max(end, i + 1)
        return best


def _shared(theirs: list[str], i: int, vocab: set[str], runs: set[str], chars: set[str]) -> int | None:
    """Where the run of ``theirs`` from word ``i`` that the argument also holds ends (``i``
    itself for a forty-character match), or None when it is too short."""
    if " ".join(theirs[i : i + COPY_WORDS]) in runs:
        j = i + COPY_WORDS  # extend while each next six-word run is the argument's too
        while j < len(theirs) and " ".join(theirs[j - COPY_WORDS + 1 : j + 1]) in runs:
            j += 1
        return j
    window = " ".join(theirs[i : i + 12])[:COPY_CHARS]
    return i if len(window) == COPY_CHARS and window in chars else None


def _probe(kind: str, canon: str) -> str:
    """A casefolded part of ``canon`` that every spelling of the value contains ('' if none)."""
    if kind in ("email", "record_id"):
        return canon.casefold()
    if kind == "url":
        return canon.partition("://")[2].split("/", 1)[0].split(":", 1)[0]
    if kind == "iban":
        return canon[:4].casefold()
    if kind == "recipient":
        return canon.split(" ", 1)[0]
    return ""


def words(text: str) -> str:
    """The words of ``text``, casefolded, one space apart (punctuation and layout ignored)."""
    return " ".join(_WORD.findall(text.casefold()))


def word_runs(text: str) -> Iterator[str]:
    w = text.split(" ")
    for i in range(len(w) - COPY_WORDS + 1):
        yield " ".join(w[i : i + COPY_WORDS])


def char_runs(text: str) -> Iterator[str]:
    """Forty-character windows of ``text`` (words one space apart) starting at each word."""
    i = 0
    while i + COPY_CHARS <= len(text):
        yield text[i : i + COPY_CHARS]
        nxt = text.find(" ", i)
        if nxt < 0:
            break
        i = nxt + 1
