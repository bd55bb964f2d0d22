"""Secret references for tool credentials, and redaction of what must not be logged.

Configuration names a secret, never holds it: ``{secret: "env:NAME"}`` or
``{secret: "file:/run/secrets/crm_token"}``. ``SecretResolver`` resolves references and
remembers the values it handed out, so ``redact`` can mask them wherever they show up.
``redact`` also masks the fields a tool rule lists in ``sensitive_fields``, in mappings
(at any depth) and in text (``field=value``, ``"field": "value"``).

    SecretError (ConfigError)   a reference is malformed, or its variable/file is missing
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.guards.policy import Policy

__all__ = ["MASK", "SecretError", "SecretRef", "SecretResolver", "redact", "redact_tool_data"]

MASK = "***"


class SecretError(ConfigError):
    """A secret reference cannot be resolved. The message never contains a secret value."""

    def __init__(self, *, ref: str, reason: str) -> None:
        self.ref = ref
        super().__init__(setting=ref, reason=reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class SecretRef:
    """Where a secret lives."""

    scheme: Literal["env", "file"]
    """``env``: an environment variable; ``file``: a file whose content (stripped) is the secret."""
    name: str
    """Variable name or file path."""

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any]) -> SecretRef:
        text = raw.get("secret") if isinstance(raw, Mapping) else raw
        if not isinstance(text, str) or ":" not in text:
            raise SecretError(ref=str(text), reason="expected {secret: 'env:NAME'} or {secret: 'file:PATH'}")
        scheme, _, name = text.partition(":")
        if scheme not in ("env", "file") or not name:
            raise SecretError(ref=text, reason="the scheme must be env: or file: followed by a name")
        return cls(scheme=scheme, name=name)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}"


@dataclass(kw_only=True)
class SecretResolver:
    """Resolves references; keeps the values it returned for ``redact``. Not frozen: it learns."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    resolved: set[str] = field(default_factory=set, repr=False)

    def resolve(self, ref: SecretRef | str | Mapping[str, Any]) -> str:
        r = ref if isinstance(ref, SecretRef) else SecretRef.parse(ref)
        if r.scheme == "env":
            value = self.env.get(r.name)
            if value is None:
                raise SecretError(ref=str(r), reason=f"environment variable {r.name} is not set")
        else:
            try:
                value = Path(r.name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretError(ref=str(r), reason=f"cannot read: {exc.strerror}") from None
        if not value:
            raise SecretError(ref=str(r), reason="the secret is empty")
        self.resolved.add(value)
        return value

    def resolve_all(self, refs: Mapping[str, Any]) -> dict[str, str]:
        """``{name: ref}`` (e.g. a tool rule's ``credentials``) -> ``{name: value}``."""
        return {
            k: self.resolve(v if isinstance(v, SecretRef | str | Mapping) else v.model_dump())
            for k, v in refs.items()
        }


def _text(s: str, fields: Iterable[str], secrets: Iterable[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            s = s.replace(value, MASK)
    for f in fields:
        pattern = rf"""(["']?\b{re.escape(f)}\b["']?\s*[:=]\s*)(["']?)([^"',\s&}}]+|(?<=")[^"]*(?=")|(?<=')[^']*(?='))"""
        s = re.sub(pattern, lambda m: m.group(1) + m.group(2) + MASK, s)
    return s


def redact(value: Any, *, fields: Iterable[str] = (), secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with sensitive fields and secret values masked.

    Mappings are walked at any depth (a listed key's value becomes ``***``); lists and tuples
    are walked; strings have every secret value and every ``field=value`` / ``"field": value``
    masked. Other values are returned unchanged.
    """
    names, known = tuple(fields), tuple(s for s in secrets if s)
    if isinstance(value, Mapping):
        return {k: MASK if k in names else redact(v, fields=names, secrets=known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, fields=names, secrets=known) for v in value)
    if isinstance(value, str):
        return _text(value, names, known)
    return value


def redact_tool_data(policy: Policy, tool: str, value: Any, *, resolver: SecretResolver | None = None) -> Any:
    """``redact`` with the tool rule's ``sensitive_fields`` and every secret ``resolver`` resolved."""
    rule = policy.tools.get(tool)
    fields = rule.sensitive_fields if rule is not None else ()
    secrets = resolver.resolved if resolver else ()
    if not fields and not any(secrets):
        return value  # nothing to mask: the walk would rebuild the same value
    return redact(value, fields=fields, secrets=secrets)
