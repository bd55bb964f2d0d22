"""Tool results as faults leave them (``evals.faults`` decides when a fault fires).

``damage`` removes or nulls dotted result fields, giving an ``Altered`` result whose
``model_dump`` is the damaged data; ``append_text`` plants text in a result's untrusted fields;
``age_evidence`` makes every returned ``Evidence`` claim an old ``updated_at``.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from tether.retrieval.knowledge import Evidence

__all__ = ["Altered", "age_evidence", "append_text", "damage", "default_fields", "json_of"]


class Altered:
    """A tool result with fields removed or nulled: ``model_dump`` gives the altered data."""

    __slots__ = ("_data", "_json", "_original")

    def __init__(self, original: BaseModel, data: dict[str, Any], json_data: dict[str, Any]) -> None:
        self._original, self._data, self._json = original, data, json_data

    def model_dump(self, *, mode: str = "python", **_: Any) -> dict[str, Any]:
        out: dict[str, Any] = copy.deepcopy(self._json) if mode == "json" else _plain(self._data)
        return out

    def __getattr__(self, name: str) -> Any:
        if name in type(self._original).model_fields:
            if name not in self._data:
                raise AttributeError(f"{name} is missing from this result")
            value = self._data[name]
            if name == "evidence" and isinstance(value, list):  # damaged passages: citable if still valid
                return [e for e in (_passage(v) for v in value) if e is not None]
            return value
        return getattr(self._original, name)


def _passage(value: Any) -> Evidence | None:
    if isinstance(value, Evidence):
        return value
    if not isinstance(value, dict):
        return None
    try:
        return Evidence.model_validate(value)
    except ValueError:
        return None


def _edit(data: Any, path: list[str], remove: bool) -> bool:
    """Remove / null ``path`` in ``data`` (lists: in every element); True if anything changed."""
    if isinstance(data, list):
        return any([_edit(item, path, remove) for item in data])
    if not isinstance(data, dict) or path[0] not in data:
        return False
    if len(path) > 1:
        return _edit(data[path[0]], path[1:], remove)
    if remove:
        del data[path[0]]
    else:
        data[path[0]] = None
    return True


def json_of(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as JSON carries it (a value JSON cannot hold becomes its ``str``)."""
    out: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return out


def default_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The result fields a caller must already cope with lacking: those with defaults."""
    return tuple(n for n, f in model.model_fields.items() if not f.is_required())


def damage(result: BaseModel | Altered, fields: tuple[str, ...], *, remove: bool) -> Altered:
    """``result`` with ``fields`` removed / nulled (an already damaged result is damaged further)."""
    if isinstance(result, Altered):
        original, py, js = result._original, dict(result._data), result.model_dump(mode="json")
    else:  # attributes keep their models (evidence stays Evidence) unless a dotted path goes inside
        original, py, js = result, {n: getattr(result, n) for n in type(result).model_fields}, \
            result.model_dump(mode="json")
    for f in fields:
        path = f.split(".")
        if len(path) > 1 and path[0] in py:
            py[path[0]] = _plain(py[path[0]])
        _edit(py, path, remove)
        _edit(js, path, remove)
    return Altered(original, py, js)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def append_text(data: Any, path: list[str], text: str) -> Any:
    """``data`` with `` text`` after the strings at dotted ``path`` (lists: in every element; an
    empty path: every string field except identifiers)."""
    if isinstance(data, list):
        return [append_text(v, path, text) for v in data]
    if isinstance(data, dict):
        if not path:  # every string field except identifiers
            return {k: v if k == "id" or k.endswith("_id") else append_text(v, [], text) for k, v in data.items()}
        return {k: append_text(v, path[1:], text) if k == path[0] else v for k, v in data.items()}
    if isinstance(data, str) and not path:
        return f"{data} {text}"
    return data


def age_evidence(result: BaseModel, days: float) -> BaseModel:
    """``result`` with every returned ``Evidence`` claiming to be updated ``days`` days ago."""
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")  # a full timestamp: cassettes normalise it
    old = [e.model_copy(update={"updated_at": when}) if isinstance(e, Evidence) else e
           for e in getattr(result, "evidence", None) or []]
    return result.model_copy(update={"evidence": old})
