"""An explicit seam for fault injection at the points where a crash matters most.

The governed workflow calls ``fault_point(name, tool)`` at ``after_intent`` (the ledger
recorded the intent, the tool has not run), ``after_tool`` (the tool ran, nothing recorded),
``before_completion`` and ``after_approval``. In production no hook is installed and the call
does nothing; crash and fault tests install one with ``install_fault_hook``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FAULT_POINTS", "FaultHook", "fault_point", "install_fault_hook"]

FaultHook = Callable[[str, str], None]
"""Called with ``(point, tool)``; may raise, sleep, or kill the process."""

FAULT_POINTS = ("after_intent", "after_tool", "before_completion", "after_approval")

_hook: list[FaultHook | None] = [None]


def install_fault_hook(hook: FaultHook | None) -> FaultHook | None:
    """Install ``hook`` (``None`` removes it); returns the hook it replaced."""
    previous, _hook[0] = _hook[0], hook
    return previous


def fault_point(point: str, tool: str = "") -> None:
    hook = _hook[0]
    if hook is not None:
        hook(point, tool)
