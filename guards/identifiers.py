"""Canonical forms of identifier values, and whole values of a kind found in free text.

Provenance compares values by kind, never as raw strings: two spellings of one IBAN, one
URL or one address are the same destination, and a value embedded in a longer field is not
that field. ``canonical(kind, value)`` gives the form compared:

- ``email``: trimmed, ``mailto:`` and a ``Display Name <...>`` wrapper removed, casefolded;
- ``iban`` / ``account``: spaces, hyphens and dots dropped, uppercased;
- ``url``: scheme and host lowercased, the default port, the fragment and a trailing slash
  dropped (``www.x.org`` is read as ``http://www.x.org``);
- ``phone``: a leading ``+`` and the digits;
- ``record_id``: trimmed, casefolded; ``recipient``: whitespace collapsed, casefolded;
- ``amount``: the decimal number (``40``, ``40.0`` and ``"40.00"`` are one amount);
- ``free_text``: whitespace collapsed, casefolded.

``candidates(kind, text)`` finds every whole value of a kind in text (the user's request, a
message body) and returns their canonical forms; ``mentions`` also accepts a ``recipient``
or ``record_id`` that appears in the text as a whole phrase. A value inside a longer token
(``P-1`` inside ``P-12``) is never a candidate.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["candidates", "canonical", "compact", "iban_valid", "mentions", "normal_text"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_NAME_ADDR = re.compile(r"^[^<>]*<\s*(?:mailto:)?([^<>\s]+)\s*>$", re.IGNORECASE)
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])")
_ACCOUNT = re.compile(r"(?<![\w.-])[0-9]{2,8}(?:[ -]?[0-9]{2,8}){0,5}(?![\w-]|\.[0-9])")
_DIGITS = re.compile(r"(?<![\w.-])[0-9]{6,34}(?![\w-]|\.[0-9])")
_PHONE = re.compile(r"(?<![\w+])\+?[0-9](?:[ .()-]{0,2}[0-9]){6,14}(?!\w)")
_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_./:#@-]*[A-Za-z0-9])?")
_AMOUNT = re.compile(r"(?<![\w.,])[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?(?![\w])|(?<![\w.,])[0-9]+(?:\.[0-9]+)?(?![\w]|\.[0-9])")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PHRASE_KINDS = frozenset({"recipient", "record_id", "free_text"})


def normal_text(text: str) -> str:
    """Whitespace collapsed to single spaces, casefolded."""
    return " ".join(text.split()).casefold()


def compact(text: str) -> str:
    """Letters and digits only, casefolded: the form secrets are searched in."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float | Decimal):
        text = str(value).strip()
        return text or None
    return None


def _email(text: str) -> str:
    m = _NAME_ADDR.match(text)
    if m is not None:
        text = m.group(1)
    if text[:7].casefold() == "mailto:":
        text = text[7:].split("?", 1)[0]
    return text.strip().casefold()


def _url(text: str) -> str:
    raw = text.strip()
    if raw[:4].casefold() == "www.":
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return raw.casefold()
    scheme, host = parts.scheme.casefold(), (parts.hostname or "").casefold()
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    if parts.username is not None:
        netloc = f"{parts.username}@{netloc}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _amount(text: str) -> str | None:
    try:
        d = Decimal(text.replace(",", "").lstrip("$€£").strip())
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    return format(d.normalize(), "f")


def canonical(kind: str, value: Any) -> str | None:
    """The canonical form of ``value`` as a ``kind`` (``None``: no usable value)."""
    text = _scalar(value)
    if text is None:
        return None
    if kind == "email":
        out: str | None = _email(text)
    elif kind in ("iban", "account"):
        out = re.sub(r"[\s.-]+", "", text).upper()
    elif kind == "url":
        out = _url(text)
    elif kind == "phone":
        digits = re.sub(r"\D", "", text)
        out = ("+" if text.startswith("+") else "") + digits if digits else None
    elif kind == "amount":
        out = _amount(text)
    elif kind == "record_id":
        out = text.casefold()
    else:  # recipient, free_text and anything else: words compared
        out = normal_text(text)
    return out or None


def iban_valid(iban: str) -> bool:
    """The ISO 13616 check digits of a canonical IBAN hold (mod 97 == 1)."""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ibans(text: str) -> set[str]:
    """IBANs in text: where the grouping is ambiguous, the prefixes whose check digits hold
    (else every reading), so a following word glued on cannot hide the value."""
    out: set[str] = set()
    for m in _IBAN.finditer(text):
        groups = m.group(0).split(" ")
        readings = ["".join(groups[:n]).upper() for n in range(len(groups), 0, -1)] if len(groups) > 1 \
            else [m.group(0).upper()]
        readings = [r for r in readings if 15 <= len(r) <= 34] or readings[:1]
        valid = [r for r in readings if iban_valid(r)]
        out.update(valid or readings)
    return out


def _found(kind: str, text: str) -> set[str]:
    if kind == "email":
        return {_email(v) for v in _EMAIL.findall(text)}
    if kind == "url":
        return {_url(v.rstrip(".,;:!?)]}")) for v in _URL.findall(text)}
    if kind == "iban":
        return _ibans(text)
    if kind == "account":
        digits = {re.sub(r"[ -]", "", v) for v in _ACCOUNT.findall(text)}
        digits |= set(_DIGITS.findall(text))
        return {d for d in digits if 6 <= len(d) <= 34} | _ibans(text)
    if kind == "phone":
        return {c for v in _PHONE.findall(text) if (c := canonical("phone", v)) is not None}
    if kind == "amount":
        return {c for v in _AMOUNT.findall(text) if (c := _amount(v)) is not None}
    if kind == "recipient":
        return {_email(v) for v in _EMAIL.findall(text)}
    if kind == "record_id":
        return {v.casefold() for v in _TOKEN.findall(text)}
    return set()


@lru_cache(maxsize=512)
def candidates(kind: str, text: str) -> frozenset[str]:
    """Canonical forms of every whole ``kind`` value found in ``text``."""
    return frozenset(_found(kind, text))


def mentions(kind: str, canon: str, text: str) -> bool:
    """``text`` holds the value whose canonical form is ``canon``, as a whole value.

    Identifier kinds must be one of the ``candidates``; ``recipient``, ``record_id`` and
    ``free_text`` may also appear as a whole phrase (word boundaries on both sides).
    """
    if canon in candidates(kind, text):
        return True
    if kind not in _PHRASE_KINDS or not canon:
        return False
    before = r"(?<!\w)" if re.match(r"\w", canon) else ""
    after = r"(?!\w)" if re.search(r"\w$", canon) else ""
    return re.search(before + re.escape(canon) + after, normal_text(text)) is not None
