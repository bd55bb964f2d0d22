"""The public surface itself: exported names exist and belong to tether, value objects are
frozen (dataclasses kw-only too), and decisions are a discriminated union on ``kind``."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import typing
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import tether
from tether.graphs.state import Approve, Edit, Escalated, HumanDecision, Outcome, Reject, Resolved
from tether.guards.decisions import (
    Allow,
    Decision,
    Deny,
    Escalate,
    EscalationAction,
    RequireApproval,
    RuleMatch,
)

MODULES = ["tether", *sorted(m.name for m in pkgutil.walk_packages(tether.__path__, "tether."))]
VALUE_MODULES = ("tether.guards", "tether.graphs.state", "tether.checkpoints.ledger")


def module(name: str) -> ModuleType:
    return importlib.import_module(name)


def exported(name: str) -> list[tuple[str, Any]]:
    mod = module(name)
    return [(n, getattr(mod, n)) for n in getattr(mod, "__all__", ())]


# ---------------------------------------------------------------- exported names


def test_modules_were_found() -> None:
    for expected in ("tether.guards.policy", "tether.tools.base", "tether.cli", *VALUE_MODULES):
        assert expected in MODULES


@pytest.mark.parametrize("name", [m for m in MODULES if hasattr(module(m), "__all__")])
def test_every_exported_name_exists_and_belongs_to_tether(name: str) -> None:
    mod = module(name)
    names = mod.__all__
    assert isinstance(names, list | tuple)
    assert len(set(names)) == len(names), f"duplicates in {name}.__all__"
    for n in names:
        assert isinstance(n, str) and n.isidentifier(), n
        assert hasattr(mod, n), f"{name}.__all__ names {n!r}, which does not exist"
        obj = getattr(mod, n)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("tether."), (
                f"{name}.{n} is {obj.__module__}.{obj.__qualname__}, not tether's own"
            )


@pytest.mark.parametrize("name", [m for m in MODULES if not hasattr(module(m), "__path__")])
def test_every_module_declares_its_surface(name: str) -> None:
    assert isinstance(getattr(module(name), "__all__", None), list | tuple), name


def test_root_exports_resolve_lazily_to_the_same_objects() -> None:
    for n in tether.__all__:
        obj = getattr(tether, n)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert getattr(module(obj.__module__), n) is obj
    with pytest.raises(AttributeError):
        tether.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_import_tether_is_light() -> None:
    code = "import sys, tether; print(sorted(m for m in ('langgraph', 'llama_index', 'chromadb') if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONSAFEPATH": "1"}, cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------- value objects


def _tether_classes(tp: Any) -> set[type]:
    """tether classes mentioned anywhere in a type annotation."""
    out: set[type] = set()
    if inspect.isclass(tp) and getattr(tp, "__module__", "").startswith("tether."):
        out.add(tp)
    for arg in typing.get_args(tp):
        out |= _tether_classes(arg)
    return out


def _is_typeddict(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, dict) and hasattr(cls, "__total__")


def walk_values(roots: list[type]) -> set[type]:
    """The pydantic models and dataclasses reachable from ``roots`` through their fields."""
    seen: set[type] = set()
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if issubclass(cls, BaseModel):
            hints = [f.annotation for f in cls.model_fields.values()]
        elif dataclasses.is_dataclass(cls) or _is_typeddict(cls):
            hints = list(typing.get_type_hints(cls).values())
        else:
            continue
        for h in hints:
            todo.extend(_tether_classes(h) - seen)
    return {
        c for c in seen if (issubclass(c, BaseModel) or dataclasses.is_dataclass(c))
        and not issubclass(c, enum.Enum)
    }


def _roots(mod: str) -> list[type]:
    return [obj for _, obj in exported(mod) if inspect.isclass(obj)] + [
        c for _, obj in exported(mod) if not inspect.isclass(obj) for c in _tether_classes(obj)
    ]


VALUES = sorted(
    walk_values([c for m in VALUE_MODULES for c in _roots(m)]), key=lambda c: c.__qualname__
)


def test_the_walk_reaches_nested_values() -> None:
    names = {c.__name__ for c in VALUES}
    # exported directly, reached through a union alias, and reached only through fields
    assert {"ActionRequest", "RuleMatch", "LedgerRow", "Approval", "ApprovalRequest"} <= names
    assert {"Allow", "Deny", "RequireApproval", "Escalate"} <= names
    assert {"Evidence", "ArgumentProblem", "Halt", "BudgetExceeded"} <= names


@pytest.mark.parametrize("cls", VALUES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_value_objects_are_frozen(cls: type) -> None:
    if issubclass(cls, BaseModel):
        assert cls.model_config.get("frozen") is True, f"{cls.__qualname__} is not frozen"
    else:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, f"{cls.__qualname__} is not frozen"
        assert all(f.kw_only for f in dataclasses.fields(cls) if f.init), cls


def test_frozen_values_refuse_mutation() -> None:
    d = Deny(rule_id="r", reason="why", matched=(RuleMatch(rule_id="r", effect="deny", reason="why"),))
    with pytest.raises(ValidationError):
        d.rule_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        d.matched[0].effect = "allow"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        d.matched.append(d.matched[0])  # type: ignore[attr-defined]


def _all_dataclasses() -> list[type]:
    out: set[type] = set()
    for m in MODULES:
        for _, obj in exported(m):
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
                out.add(obj)
    return sorted(out, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _kw_only_case(cls: type) -> Any:
    return cls


@pytest.mark.parametrize(
    "cls", [_kw_only_case(c) for c in _all_dataclasses()], ids=lambda c: c.__qualname__
)
def test_every_exported_dataclass_is_kw_only(cls: type) -> None:
    # frozen is required of value objects (above); a service object may keep state
    positional = [f.name for f in dataclasses.fields(cls) if f.init and not f.kw_only]
    assert positional == [], f"{cls.__qualname__} accepts {positional} positionally"


# ---------------------------------------------------------------- discriminated unions

MATCH = RuleMatch(rule_id="tools.issue_refund.max_amount_usd", effect="deny", reason="$80 > $50")
DECISIONS = [
    Allow(rule_id="tools.lookup_order.allowed", reason="ok"),
    Deny(rule_id=MATCH.rule_id, reason=MATCH.reason, matched=(MATCH,)),
    RequireApproval(rule_id="tools.issue_refund.require_approval_over_usd", reason="$40 > $25"),
    Escalate(rule_id="agent.max_tool_calls", reason="cap", action=EscalationAction.HALT),
]


@pytest.mark.parametrize("decision", DECISIONS, ids=lambda d: d.kind)
def test_decision_round_trips_through_json_by_kind(decision: Any) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Decision)
    back = adapter.validate_json(decision.model_dump_json())
    assert type(back) is type(decision)
    assert back == decision
    raw = json.loads(decision.model_dump_json())
    assert raw["kind"] == decision.kind
    assert type(adapter.validate_python(raw)) is type(decision)
    assert adapter.dump_json(back) == decision.model_dump_json().encode()


def test_decision_kinds_are_distinct_and_complete() -> None:
    kinds = [d.kind for d in DECISIONS]
    assert sorted(kinds) == ["allow", "deny", "escalate", "require_approval"]
    members = typing.get_args(typing.get_args(Decision)[0])
    assert {m.model_fields["kind"].default for m in members} == set(kinds)


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "maybe", "rule_id": "r", "reason": "x"},
        {"rule_id": "r", "reason": "x"},
        {"kind": "allow", "rule_id": "r"},
        {"kind": "allow", "rule_id": "r", "reason": "x", "extra": 1},
        {"kind": "escalate", "rule_id": "r", "reason": "x", "action": "panic"},
        {"kind": "deny", "rule_id": "r", "reason": "x", "matched": [{"rule_id": "r", "effect": "nope", "reason": "x"}]},
    ],
)
def test_malformed_decisions_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Decision).validate_python(raw)


def test_escalate_kind_alone_does_not_change_the_type() -> None:
    # the discriminator decides the type, not the fields present
    d = TypeAdapter(Decision).validate_python({"kind": "deny", "rule_id": "r", "reason": "x"})
    assert isinstance(d, Deny) and not isinstance(d, Allow)


@pytest.mark.parametrize(
    ("union", "value"),
    [
        (HumanDecision, Approve(approver="lead", comment="ok")),
        (HumanDecision, Reject(approver="lead", reason="no")),
        (HumanDecision, Edit(approver="lead", args={"amount_usd": 20})),
        (Outcome, Resolved(answer="done")),
        (
            Outcome,
            Escalated(
                action=EscalationAction.HANDOFF_TO_HUMAN, rule_id="r", reason="x", summary="s",
                ticket_id="T-5001",
            ),
        ),
    ],
    ids=lambda v: getattr(v, "kind", "union"),
)
def test_other_unions_round_trip_by_kind(union: Any, value: Any) -> None:
    back = TypeAdapter(union).validate_json(value.model_dump_json())
    assert type(back) is type(value) and back == value
