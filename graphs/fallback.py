"""Model calls that fall back to another model on provider errors.

    outcome = call_with_fallback(
        [Candidate(model_id="openai:gpt-4o", model=primary), Candidate(model_id="openai:gpt-4.1", model=backup)],
        convo, tools, usage=usage, budgets=policy.budgets, prices=prices, on_fallback=record)

A provider error is a timeout, an HTTP 5xx, a 429 rate limit or a dropped connection
(``provider_error_kind``). On one, the next candidate is tried and ``on_fallback`` is told
(the workflow writes a ``model_fallback`` ledger row: from, to, error kind). Any other error
(a bug, a refused request) stops at once: falling back would hide it (with ``raise_other``
it is raised, else it ends the calls as a failure of kind ``error``).

Every attempt counts: the spend cap is checked before each one with its worst case, and a
failed attempt is charged the input it sent (a provider may bill a request it did not
finish), so falling back can never spend past the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from tether.guards.budgets import BudgetExceeded, Budgets, Usage
from tether.models import ModelPrice, estimate_tokens, price_for

__all__ = [
    "CallOutcome",
    "Candidate",
    "ModelFailure",
    "ProviderErrorKind",
    "call_with_fallback",
    "provider_error_kind",
]

ProviderErrorKind = Literal["timeout", "rate_limit", "server_error", "connection"]
_TIMEOUT_NAMES = frozenset({"APITimeoutError", "TimeoutException", "ReadTimeout", "ConnectTimeout",
                            "WriteTimeout", "PoolTimeout", "Timeout"})
_CONNECTION_NAMES = frozenset({"APIConnectionError", "ConnectError", "RemoteProtocolError", "ReadError"})


def provider_error_kind(exc: BaseException) -> ProviderErrorKind | None:
    """What kind of provider error ``exc`` is, or ``None`` if it is not one (no fallback then).

    Reads the exception's class names and ``status_code`` (the ``openai`` and ``httpx``
    errors carry them), so no provider library has to be imported.
    """
    names = {c.__name__ for c in type(exc).__mro__}
    if names & _TIMEOUT_NAMES or isinstance(exc, TimeoutError):
        return "timeout"
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        if status == 429:
            return "rate_limit"
        if 500 <= status <= 599:
            return "server_error"
        return None
    if names & _CONNECTION_NAMES or isinstance(exc, ConnectionError):
        return "connection"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """A model to try, by its pinned id (the id prices it)."""

    model_id: str
    model: BaseChatModel


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelFailure:
    """One failed attempt."""

    model_id: str
    kind: ProviderErrorKind | Literal["error"]
    """The provider error kind, or ``error`` for anything else (which is not retried)."""
    message: str
    """Exception type and the start of its message."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CallOutcome:
    """What the calls produced: a reply, or why there is none."""

    usage: Usage
    """Usage with every attempt added (calls and spend)."""
    reply: AIMessage | None = None
    model_id: str | None = None
    """The model that answered."""
    failures: tuple[ModelFailure, ...] = ()
    over: BudgetExceeded | None = None
    """The spend cap refused the next attempt."""

    @property
    def failed(self) -> ModelFailure | None:
        """The failure that ended the calls without a reply (``None`` if one answered)."""
        return self.failures[-1] if self.reply is None and self.failures else None


def call_with_fallback(
    candidates: Sequence[Candidate],
    convo: Sequence[BaseMessage],
    tools: Sequence[Any],
    *,
    usage: Usage,
    budgets: Budgets,
    prices: Mapping[str, ModelPrice] | None = None,
    on_fallback: Callable[[ModelFailure, str], None] | None = None,
    raise_other: bool = False,
) -> CallOutcome:
    """Try ``candidates`` in order until one answers; see the module docstring."""
    failures: list[ModelFailure] = []
    n_in = estimate_tokens(convo)
    for i, cand in enumerate(candidates):
        price = price_for(cand.model_id, prices)
        over = budgets.check_before_model_call(usage, worst_case_usd=price.worst_case(input_tokens=n_in))
        if over is not None:
            return CallOutcome(usage=usage, failures=tuple(failures), over=over)
        try:
            raw = cand.model.bind_tools(list(tools)).invoke(list(convo))
        except Exception as exc:
            kind = provider_error_kind(exc)
            if kind is None and raise_other:
                raise
            usage = usage.add(model_calls=1, spend_usd=price.cost(input_tokens=n_in, output_tokens=0))
            failures.append(ModelFailure(model_id=cand.model_id, kind=kind or "error",
                                         message=f"{type(exc).__name__}: {str(exc)[:200]}"))
            if kind is None or i + 1 == len(candidates):
                break
            if on_fallback is not None:
                on_fallback(failures[-1], candidates[i + 1].model_id)
            continue
        reply = raw if isinstance(raw, AIMessage) else AIMessage(content=str(getattr(raw, "content", raw)))
        meta = reply.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        spend = price.cost(input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"])
        return CallOutcome(usage=usage.add(model_calls=1, spend_usd=spend), reply=reply,
                           model_id=cand.model_id, failures=tuple(failures))
    return CallOutcome(usage=usage, failures=tuple(failures))
