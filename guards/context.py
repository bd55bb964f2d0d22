"""What a run knows when the policy decides: the subject, and a read-only run context.

``Subject`` is the end user (or other party) a run acts for: an id and attributes, set by the
caller, never by the model. ``RunContext`` is what the run has seen and done so far: the user's
request, the agent principal and roles, the subject, every earlier action of the run with its
decision, status and result, and the evidence ids retrieved. Rules and predicates read it
through ``ActionRequest.context``; they cannot change it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["ActionStatus", "PriorAction", "RunContext", "Subject", "field_values"]

ActionStatus = Literal["invalid", "denied", "rejected", "executed", "failed", "skipped", "admitted"]
"""Final statuses, plus ``admitted``: allowed (or awaiting approval) earlier in the same model
message, not yet run. Limits count admitted calls, so parallel calls cannot slip past them."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Subject(_Frozen):
    """The party a run acts for (a customer, an employee, a tenant): never chosen by the model."""

    id: str = Field(min_length=1)
    """Stable identifier, recorded in the ledger with every row of the run."""
    attributes: dict[str, JsonValue] = Field(default_factory=dict)
    """Anything the tools and the policy may read about the subject (tier, department, ...)."""


class PriorAction(_Frozen):
    """One earlier tool call of the run, after it reached a final status."""

    tool: str
    args: dict[str, JsonValue]
    status: ActionStatus
    decision: str | None = None
    """Kind of the policy decision (``allow``, ``deny``, ``require_approval``, ``escalate``)."""
    rule_id: str | None = None
    result: JsonValue = None
    """The tool's result as JSON, when it executed."""
    records: tuple[str, ...] = ()
    """Record ids the call touched (the tool's ``record_arg``)."""

    @property
    def ok(self) -> bool:
        return self.status == "executed"


class RunContext(_Frozen):
    """Read-only view of the current run, handed to rules and predicates."""

    request: str = ""
    """The user's request that started this run."""
    principal: str | None = None
    roles: tuple[str, ...] = ()
    subject: Subject | None = None
    actions: tuple[PriorAction, ...] = ()
    """Earlier actions of this run, in order (admitted calls of the same message last)."""
    evidence: frozenset[str] = frozenset()
    """Evidence ids retrieved so far in this run."""
    designated: tuple[str, ...] = ()
    """Ids of the documents (records, tickets, pages) the user designated for this run."""

    def succeeded(self, tool: str) -> list[PriorAction]:
        """Earlier successful calls of ``tool`` in this run."""
        return [a for a in self.actions if a.tool == tool and a.ok]

    def values(self, tool: str, field: str) -> list[JsonValue]:
        """Every value of ``field`` (a dotted path; lists are searched) in results of ``tool``."""
        out: list[JsonValue] = []
        for a in self.succeeded(tool):
            out.extend(field_values(a.result, field))
        return out


def field_values(data: Any, path: str) -> list[Any]:
    """Values at a dotted ``path`` inside JSON ``data``; lists on the way are searched item by item."""
    return list(_walk(data, path.split(".") if path else []))


def _walk(data: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _walk(item, parts)
        return
    if not parts:
        yield data
        return
    if isinstance(data, dict) and parts[0] in data:
        yield from _walk(data[parts[0]], parts[1:])
