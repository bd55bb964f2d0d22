"""System prompts kept in files, each with a version.

    ---
    version: support-v1
    ---
    You are a customer-support agent ...

``load_prompt(path)`` reads one: the front matter between the two ``---`` lines must name a
``version`` (a string); the text is everything after the closing ``---`` line, without the file's
final line ending. ``Prompt.sha256`` is the hex SHA-256 of that text, the value eval results and
``tether versions`` record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from tether.errors import ConfigError

__all__ = ["Prompt", "PromptFileError", "load_prompt"]

_KEYS = {"version", "description"}


class PromptFileError(ConfigError):
    """A prompt file cannot be used. Nothing was loaded from it."""

    def __init__(self, *, path: str, reason: str) -> None:
        self.path = path
        super().__init__(setting=f"prompt file {path}", reason=reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class Prompt:
    """A system prompt, its declared version and the hash of its exact text."""

    text: str
    version: str
    sha256: str
    path: str


def load_prompt(path: str | Path) -> Prompt:
    """Read a prompt file with ``version:`` front matter (see the module docstring)."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptFileError(path=str(p), reason=f"cannot read it: {exc.strerror or exc}") from None
    head, sep, body = raw.partition("\n---\n")
    if not raw.startswith("---\n") or not sep:
        raise PromptFileError(path=str(p), reason="no front matter: start the file with '---', a line "
                              "'version: NAME', and a closing '---' line before the prompt text")
    try:
        meta = yaml.safe_load(head[4:]) or {}
    except yaml.YAMLError as exc:
        raise PromptFileError(path=str(p), reason=f"front matter is not YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise PromptFileError(path=str(p), reason="front matter must be a mapping like 'version: support-v1'")
    unknown = sorted(str(k) for k in meta if k not in _KEYS)
    if unknown:
        raise PromptFileError(path=str(p), reason=f"unknown front matter keys {unknown}; allowed: "
                              + ", ".join(sorted(_KEYS)))
    version = meta.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PromptFileError(path=str(p), reason="front matter has no 'version' (a non-empty string, "
                              "e.g. version: support-v1); quote numbers: version: \"2\"")
    text = body[:-1] if body.endswith("\n") else body
    if not text.strip():
        raise PromptFileError(path=str(p), reason="the prompt text after the front matter is empty")
    return Prompt(text=text, version=version, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  path=str(p))
