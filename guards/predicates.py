"""Named custom predicates a policy file can reference (``predicates: [name]``).

A predicate is a plain function of the ``ActionRequest`` returning ``None`` when the call is
fine, or a reason (str) when it must be denied. Register it in a registry:

    @policy_predicate("order_id_format")
    def order_id_format(action: ActionRequest) -> str | None:
        ...

Names are resolved when the policy loads: an unknown name is a ``PolicyFileError`` with a
did-you-mean. Pass ``predicates=PredicateRegistry()`` to ``Policy.from_yaml`` to keep tests and
tenants apart; without it the process-wide ``DEFAULT_PREDICATES`` is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.guards.policy import ActionRequest

__all__ = ["DEFAULT_PREDICATES", "PredicateFn", "PredicateRegistry", "policy_predicate"]

PredicateFn = Callable[["ActionRequest"], "str | None"]


class PredicateRegistry:
    """Name -> predicate function. Registering a name twice is an error."""

    __slots__ = ("_fns",)

    def __init__(self) -> None:
        self._fns: dict[str, PredicateFn] = {}

    def register(self, name: str) -> Callable[[PredicateFn], PredicateFn]:
        def wrap(fn: PredicateFn) -> PredicateFn:
            if name in self._fns and self._fns[name] is not fn:
                raise ValueError(f"predicate {name!r} is already registered")
            self._fns[name] = fn
            return fn

        return wrap

    def get(self, name: str) -> PredicateFn | None:
        return self._fns.get(name)

    def names(self) -> list[str]:
        return sorted(self._fns)

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


DEFAULT_PREDICATES = PredicateRegistry()
"""Used when a policy is loaded without an explicit registry."""


def policy_predicate(
    name: str, *, registry: PredicateRegistry | None = None
) -> Callable[[PredicateFn], PredicateFn]:
    """Decorator: register ``fn`` under ``name`` (in ``DEFAULT_PREDICATES`` unless given)."""
    return (registry or DEFAULT_PREDICATES).register(name)
