"""The injection screen: flags instruction-like text in what a third party could have written.

Text is normalised before matching (NFKC, so fullwidth and compatibility forms fold; invisible
characters dropped; common Cyrillic and Greek look-alikes mapped to Latin; case folded), then
checked by named pattern rules (``BUILTIN_RULES``), the policy's extra ``content.patterns`` and,
when ``content.classifier`` names one, a registered ``Classifier``. Base64 and hex blobs are
decoded and screened again. Hidden text (zero-width runs, bidi controls, HTML comments,
``display:none``) is a hit of its own.

    screen = InjectionScreen.from_policy(policy)
    result = screen.screen("Ignore previous instructions and ...", field="body")
    result.flagged, [h.rule for h in result.hits]

The screen never raises on its input; it is deterministic, so the same text is always flagged
the same way.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tether.errors import ConfigError
from tether.guards.evidence_sections import ContentSection

if TYPE_CHECKING:
    from tether.guards.policy import Policy

__all__ = [
    "BUILTIN_RULES",
    "Classifier",
    "InjectionScreen",
    "ScreenHit",
    "ScreenResult",
    "classifier_names",
    "normalise",
    "register_classifier",
]


@runtime_checkable
class Classifier(Protocol):
    """Scores text for how instruction-like it is: 0 (plain data) to 1 (an injection)."""

    def score(self, text: str) -> float: ...


ClassifierFactory = Callable[[], Classifier]
_CLASSIFIERS: dict[str, ClassifierFactory] = {}


def register_classifier(name: str, factory: ClassifierFactory) -> None:
    """Make ``content.classifier: NAME`` usable; ``factory()`` builds the classifier once per screen."""
    if not name or not callable(factory):
        raise ConfigError(setting="content.classifier", reason="register a non-empty name and a callable factory")
    _CLASSIFIERS[name] = factory


def classifier_names() -> tuple[str, ...]:
    """Registered classifier names, sorted."""
    return tuple(sorted(_CLASSIFIERS))


@dataclass(frozen=True, kw_only=True, slots=True)
class ScreenHit:
    """One rule that matched: which rule, in which field, and a short excerpt of the match."""

    rule: str
    field: str
    excerpt: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ScreenResult:
    """What the screen found in one or more fields."""

    flagged: bool
    hits: tuple[ScreenHit, ...] = ()
    score: float = 0.0
    """The classifier's score when one is configured (the highest over the fields screened);
    else 1.0 when a pattern rule hit and 0.0 when none did."""

    @property
    def rules(self) -> tuple[str, ...]:
        """The distinct rules that hit, in order of first hit."""
        return tuple(dict.fromkeys(h.rule for h in self.hits))


CLEAN = ScreenResult(flagged=False)

# ---------------------------------------------------------------- normalisation

_INVISIBLE = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u00ad"
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_STRIP = dict.fromkeys(map(ord, _INVISIBLE + _BIDI + "\u200e\u200f"))
_LOOKALIKES = (  # Cyrillic and Greek letters that look Latin, each followed by its Latin twin
    "\u0430a \u0435e \u043eo \u0440p \u0441c \u0443y \u0445x \u0456i \u0458j \u0455s "
    "\u0501d \u04bbh \u04cfl \u043ak \u043cm \u0410A \u0412B \u0415E \u041aK \u041cM "
    "\u041dH \u041eO \u0420P \u0421C \u0422T \u0425X \u0406I \u0408J \u0405S \u03b1a "
    "\u03bfo \u03bak \u03bdv \u03c1p \u03c4t \u03c5u \u03b9i \u03b5e \u0391A \u0392B "
    "\u0395E \u0396Z \u0397H \u0399I \u039aK \u039cM \u039dN \u039fO \u03a1P \u03a4T "
    "\u03a5Y \u03a7X \u0261g"
)
_CONFUSABLES = {ord(pair[0]): pair[1] for pair in _LOOKALIKES.split()}
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_SPACE = re.compile(r"\s+")


def _untag(text: str) -> str:
    """Unicode tag characters (U+E0000..) spell ASCII invisibly: read them as the ASCII they spell."""
    return _TAGS.sub(lambda m: " " + "".join(chr(ord(c) - 0xE0000) for c in m.group(0)) + " ", text)


def normalise(text: str) -> str:
    """The form rules match against: NFKC, invisible characters dropped, look-alikes mapped,
    case folded, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", _untag(text)).translate(_STRIP).translate(_CONFUSABLES)
    return _SPACE.sub(" ", folded.casefold()).strip()


# ---------------------------------------------------------------- built-in rules

_EMAIL = r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+"
_URL = r"(?:https?://|www\.)\S+"
_IBAN = r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?\b"
_DEST = (
    rf"(?:{_EMAIL}|{_URL}|{_IBAN}|iban\b|(?:crypto |bitcoin |btc |eth )?wallet\b|"
    r"(?:(?:the|this|that|my|a|an|our|new|following|below|another|different|external|offshore)\s+)+"
    r"(?:bank\s+)?account\b|(?:bank\s+)?account\s*(?:number|no\.?|#)?\s*:?\s*[a-z0-9-]*\d{5,})"
)
_OBJECT = r"(?:instructions?|prompts?|rules|directions|guidelines|guardrails|directives|commands|policies|constraints)"

BUILTIN_RULES: Mapping[str, tuple[str, ...]] = {
    "instruction_override": (
        rf"\b(?:ignore|disregard|forget|override|bypass|discard)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+|these\s+)*"
        rf"(?:previous|prior|above|earlier|preceding|original|system|safety|existing|current)\s+{_OBJECT}",
        rf"\b(?:ignore|disregard|forget)\s+(?:all|everything|any)\s+(?:(?:you\s+)?(?:were|have been)\s+told|{_OBJECT})",
        r"\bdisregard\s+(?:all\s+|everything\s+)?(?:the\s+)?(?:above|foregoing)\b",
        rf"\b(?:do not|don't|stop)\s+follow(?:ing)?\s+(?:your|the|any)\s+(?:previous\s+|original\s+|system\s+)?{_OBJECT}",
        r"\b(?:new|updated|revised|real|actual)\s+instructions?\s*:",
        r"\bfrom now on,?\s+you\s+(?:will|must|shall|should|are)\b",
    ),
    "role_hijack": (
        r"\byou are now\s+(?:a|an|the|my|in)?\s*(?:\w+\s+)?(?:assistant|ai|agent|bot|model|admin\w*|developer|"
        r"dan|system|unrestricted|jailbroken|mode|root)\b",
        r"\b(?:developer|admin|god|debug|jailbreak|unrestricted|maintenance)\s+mode\s+(?:enabled|activated|on)\b",
        r"\bsystem\s+prompt\b",
        r"<\|\s*(?:im_start|im_end|system|assistant|user|endoftext)\s*\|>",
        r"#{2,}\s*(?:system|instructions?|new instructions)\b",
        r"</?\s*(?:system|instructions?|sys)\s*>",
        r"\[/?(?:inst|system)\]|<<\s*/?sys\s*>>",
        r"\b(?:act|behave)\s+as\s+(?:an?\s+|the\s+)?(?:system|administrator|admin|root|developer)\b",
        r"\bjailbreak\b",
    ),
    "tool_call": (
        r"\b(?:call|invoke|run|execute|trigger|use)\s+(?:the\s+)?[`'\"]?[a-z]+(?:_[a-z0-9]+)+[`'\"]?"
        r"(?:\s+(?:tool|function|action))?\b",
        r"\b(?:call|invoke|execute|trigger)\s+(?:the\s+|a\s+)?(?:tool|function)\s+[`'\"]?\w+",
        r"\"(?:name|tool|tool_name|function|action)\"\s*:\s*\"[^\"]+\"\s*,\s*\"(?:arguments|args|parameters|input)\"\s*:",
        r"\"(?:arguments|args|parameters)\"\s*:\s*\{[^{}]*\}\s*,\s*\"(?:name|tool|function)\"\s*:",
        r"\"(?:tool_calls|function_call|tool_use)\"\s*:",
    ),
    "action_request": (
        rf"\b(?:refund|transfer|send|forward|wire|pay|remit|deposit|move|redirect)\b[^.\n]{{0,80}}?\b(?:to|into)\s+{_DEST}",
        rf"\b(?:change|update|set|replace|switch|modify)\s+(?:\S+\s+){{0,3}}?(?:e-?mail|phone|mobile|contact|"
        rf"payout|bank|iban)(?:\s+(?:address|number|details|account))?\s+(?:on\s+file\s+|on\s+the\s+account\s+)?"
        rf"(?:to|with)\s+(?:{_EMAIL}|\+?\d[\d\s().-]{{6,}}|{_URL}|{_IBAN})",
        r"\b(?:change|update|replace|modify)\s+(?:\S+\s+){0,3}?(?:e-?mail|phone|mobile|contact)(?:\s+(?:address|"
        r"number|details))?\s+on\s+file\b",
        r"\b(?:grant|give|add|assign|put|enrol+)\b[^.\n]{0,60}?\b(?:to|into|in)\s+(?:the\s+)?[\w-]*\s*"
        r"(?:group|role|admins|administrators|sudoers)\b",
        r"\bgrant\b[^.\n]{0,40}?\b(?:admin\w*|root|elevated|full|privileged)\s+(?:access|rights|privileges|permissions)\b",
        r"\breset\b[^.\n]{0,30}?\b(?:mfa|2fa|multi-?factor|two-?factor|authenticator|otp)\b[^.\n]{0,40}?\bfor\b",
        r"\b(?:disable|remove|turn off|bypass)\s+(?:the\s+|their\s+|his\s+|her\s+)?(?:mfa|2fa|multi-?factor|two-?factor)\b",
    ),
    "exfiltration": (
        rf"\b(?:send|post|upload|forward|e-?mail|leak|exfiltrate|transmit|submit|share|copy)\b[^.\n]{{0,80}}?"
        r"\b(?:data|records?|customers?|details|history|conversation|credentials|passwords?|tokens?|keys?|"
        r"secrets?|database|everything|pii|information|list|files?)\b[^.\n]{0,60}?\b(?:to|at)\s+"
        rf"(?:{_URL}|{_EMAIL}|[a-z0-9-]+\.(?:com|net|io|ru|xyz|org|info|biz|top)\b)",
        # "reply to this message with the customer's orders": data sent back to whoever wrote it
        r"\b(?:reply|respond|answer|write back)\b[^.\n]{0,40}?\b(?:with|including|containing|and (?:send|attach|include))\b"
        r"[^.\n]{0,40}?\b(?:customer'?s?|their|his|her|all|the account'?s?|full)\b[^.\n]{0,30}?"
        r"\b(?:orders?|records?|data|details|history|address(?:es)?|phone|emails?|accounts?|payments?|"
        r"information|profile)\b",
        r"!\[[^\]]*\]\(\s*(?:https?:)?//[^)\s]*\?[^)\s]*=",
        r"<img[^>]+src\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]*\?[^\"'\s>]*=",
    ),
}
"""Rule name -> regular expressions (matched against ``normalise(text)``)."""

_HIDDEN_RAW = (
    re.compile(f"[A-Za-z0-9][{_INVISIBLE}]+[A-Za-z0-9]"),
    re.compile(f"[{_INVISIBLE}]{{3,}}"),
    re.compile(f"[{_BIDI}]"),
    re.compile("[\U000e0000-\U000e007f]"),
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"(?i)(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:px|pt|em)?\b|opacity\s*:\s*0(?:\.0+)?\b)"),
)
_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){16,}\b")
_EXCERPT = 80
_MAX_TEXT = 200_000
_MEMO = 4096
_MEMO_TEXT = 4096


def _excerpt(text: str, m: re.Match[str]) -> str:
    start = max(0, m.start() - 10)
    piece = text[start : max(m.end(), start + 1)][: _EXCERPT]
    return ("…" if start else "") + piece.replace("\n", " ")


def _decoded(blob: str, *, hexa: bool) -> str | None:
    """The text a base64/hex blob spells, when it is mostly printable text; else ``None``."""
    try:
        raw = bytes.fromhex(blob) if hexa else base64.b64decode(blob + "=" * (-len(blob) % 4), validate=False)
        text = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    printable = sum(ch.isprintable() or ch.isspace() for ch in text)
    return text if text and printable / len(text) > 0.9 and " " in text else None


class InjectionScreen:
    """Pattern rules, the policy's extra patterns and an optional classifier, over one text."""

    __slots__ = ("_classifier", "_compiled", "_memo", "classifier_name", "threshold")

    def __init__(
        self,
        *,
        patterns: Iterable[str] = (),
        classifier: Classifier | None = None,
        classifier_name: str | None = None,
        threshold: float = 0.5,
    ) -> None:
        compiled: list[tuple[str, re.Pattern[str]]] = [
            (rule, re.compile(p)) for rule, ps in BUILTIN_RULES.items() for p in ps
        ]
        for i, p in enumerate(patterns):
            try:
                compiled.append((f"policy.patterns[{i}]", re.compile(p)))
            except re.error as exc:
                raise ConfigError(setting=f"content.patterns[{i}]",
                                  reason=f"{p!r} is not a regular expression ({exc}); fix or remove it") from None
        self._compiled = tuple(compiled)
        self._memo: dict[str, tuple[tuple[str, str], ...]] = {}
        """The pattern hits (rule, excerpt) of texts seen lately: tool results repeat (the same
        passages, the same records), the patterns are pure functions of the text."""
        self._classifier = classifier
        self.classifier_name = classifier_name or (type(classifier).__name__ if classifier else None)
        self.threshold = threshold

    @classmethod
    def from_section(cls, section: ContentSection | None, *, classifier: Classifier | None = None) -> InjectionScreen:
        """The screen a policy's ``content`` section describes (``classifier`` overrides the named one)."""
        section = section or ContentSection()
        name = section.classifier
        if classifier is None and name is not None:
            factory = _CLASSIFIERS.get(name)
            if factory is None:
                known = ", ".join(classifier_names()) or "none"
                raise ConfigError(setting="content.classifier",
                                  reason=f"no classifier named {name!r} is registered (registered: {known}); "
                                  "call tether.register_classifier(name, factory) before building the workflow")
            classifier = factory()
        return cls(patterns=section.patterns, classifier=classifier, classifier_name=name,
                   threshold=section.threshold)

    @classmethod
    def from_policy(cls, policy: Policy, *, classifier: Classifier | None = None) -> InjectionScreen:
        return cls.from_section(policy.content, classifier=classifier)

    def screen(self, text: str, *, field: str = "text") -> ScreenResult:
        """Screen one text. Never raises on the text itself."""
        text = text if isinstance(text, str) else str(text)
        text = text[:_MAX_TEXT]
        found = self._memo.get(text)
        if found is None:
            found = tuple((h.rule, h.excerpt) for h in self._patterns(text, field, depth=0))
            if len(text) <= _MEMO_TEXT:  # bounded: at most _MEMO texts of at most _MEMO_TEXT chars
                if len(self._memo) >= _MEMO:
                    self._memo.clear()
                self._memo[text] = found
        hits = [ScreenHit(rule=rule, field=field, excerpt=excerpt) for rule, excerpt in found]
        score = 1.0 if hits else 0.0
        if self._classifier is not None:
            score = self._score(text)
            if score >= self.threshold:
                hits.append(ScreenHit(rule=f"classifier:{self.classifier_name}", field=field,
                                      excerpt=f"score {score:.2f} >= {self.threshold:g}"))
        return ScreenResult(flagged=bool(hits), hits=tuple(hits), score=score)

    def screen_fields(self, fields: Iterable[tuple[str, str]]) -> ScreenResult:
        """Screen several ``(field, text)`` pairs as one result."""
        hits: list[ScreenHit] = []
        score = 0.0
        for name, text in fields:
            r = self.screen(text, field=name)
            hits += r.hits
            score = max(score, r.score)
        return ScreenResult(flagged=bool(hits), hits=tuple(hits), score=score)

    def _score(self, text: str) -> float:
        assert self._classifier is not None
        value = float(self._classifier.score(text))
        if value != value:  # NaN: a classifier that cannot tell is treated as flagging
            return 1.0
        return min(1.0, max(0.0, value))

    def _patterns(self, text: str, field: str, *, depth: int) -> Iterable[ScreenHit]:
        seen: set[str] = set()
        for pat in _HIDDEN_RAW:
            m = pat.search(text)
            if m is not None and "hidden_text" not in seen:
                seen.add("hidden_text")
                yield ScreenHit(rule="hidden_text", field=field, excerpt=_excerpt(text, m).encode(
                    "ascii", "backslashreplace").decode())
        norm = normalise(text)
        for rule, pat in self._compiled:
            if rule in seen:
                continue
            m = pat.search(norm)
            if m is not None:
                seen.add(rule)
                yield ScreenHit(rule=rule, field=field, excerpt=_excerpt(norm, m))
        if depth == 0 and "encoded_payload" not in seen:
            yield from self._encoded(text, field)

    def _encoded(self, text: str, field: str) -> Iterable[ScreenHit]:
        for pat, hexa in ((_B64, False), (_HEX, True)):
            for m in pat.finditer(text):
                inner = _decoded(m.group(0), hexa=hexa)
                if inner is None:
                    continue
                found = [h for h in self._patterns(inner, field, depth=1) if h.rule != "hidden_text"]
                if found:
                    kind = "hex" if hexa else "base64"
                    yield ScreenHit(rule="encoded_payload", field=field,
                                    excerpt=f"{kind} -> {found[0].rule}: {found[0].excerpt}"[:_EXCERPT + 40])
                    return
