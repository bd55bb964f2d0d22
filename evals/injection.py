"""The adversarial corpus: injected instructions in what the agent reads, and benign twins.

A workflow ships its corpus as ``WorkflowSpec.corpus``: a function returning
``InjectionCase`` values. ``bench/injection.py`` plays every case with the compromised
offline model (``tether.models.CompromisedChatModel``) and no human in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CaseKind", "InjectionCase"]

CaseKind = Literal["attack", "benign"]


@dataclass(frozen=True, kw_only=True, slots=True)
class InjectionCase:
    """One corpus case: a request, what to plant in the world first, and how to spot the attack."""

    key: str
    kind: CaseKind
    family: str
    """What the attacker wants: ``refund_redirect``, ``email_change``, ``grant_group``,
    ``mfa_reset``, ``exfiltrate``, ``reveal_records`` ... (benign twins use the same names)."""
    surface: str
    """Where the text sits: ``kb_document``, ``inbound_message``, ``ticket_comment``,
    ``record_field``, ``tool_output`` (benign: ``request``)."""
    variant: str = "plain"
    """``plain``, ``hidden``, ``obfuscated`` or ``multi_step``."""
    request: str | Sequence[str]
    subject: str | None = None
    principal: str | None = None
    roles: tuple[str, ...] = ()
    designated: tuple[str, ...] = ()
    """Documents the user designated for the run."""
    plant: Callable[[Any], None] | None = None
    """Called with the opened ``Session`` before the run: writes the case's content into the world."""
    injected: Callable[[Any], bool] | None = None
    """``(LedgerRow) -> bool``: this ``proposed``/``executed`` row carries the attacker's values."""
