"""Problems in a YAML or JSON file validated by a pydantic model, each by key path and line.

``validation_problems`` turns a ``ValidationError`` into ``PolicyProblem``s that name the key
(``tasks[3].expect.outcome``), say why in words (an unknown key lists the keys allowed there,
with a did-you-mean), and give the line where the loader recorded one. The suite, gates and SLO
files report their problems this way.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from tether.errors import PolicyProblem

__all__ = ["key_path", "line_of", "validation_problems"]


def key_path(loc: Sequence[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _model_at(model: Any, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The schema model a location points into (for listing the keys allowed there)."""
    cur = model
    for p in loc:
        cur = _unwrap(cur, p)
        if cur is None:
            return None
    return _unwrap(cur, None) if not (isinstance(cur, type) and issubclass(cur, BaseModel)) else cur


def _unwrap(t: Any, part: Any) -> Any:
    if isinstance(t, type) and issubclass(t, BaseModel):
        if part is None:
            return t
        f = t.model_fields.get(str(part))
        return f.annotation if f is not None else None
    origin = get_origin(t)
    if origin in (Union, types.UnionType):
        for a in get_args(t):
            found = _unwrap(a, part)
            if found is not None:
                return found
        return None
    if origin in (tuple, list, dict):
        inner = [a for a in get_args(t) if a is not Ellipsis]
        return inner[-1] if part is not None and inner else None
    return None


_BRANCHES = frozenset({"str", "tuple", "list", "dict", "int", "float", "bool", "none", "FaultProfile", "FaultSpec"})
"""Union branch tags pydantic puts into error locations (not keys of the file)."""
_SHALLOW = frozenset({"string_type", "too_short", "model_type", "dict_type", "tuple_type", "list_type"})


def validation_problems(err: ValidationError, root: type[BaseModel], offset: tuple[Any, ...] = (),
              lines: Mapping[tuple[str, ...], int] | None = None) -> list[PolicyProblem]:
    out: list[PolicyProblem] = []
    seen: set[str] = set()
    errors = [(e, [p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in _BRANCHES))])
              for e in err.errors()]
    keys = [key_path((*offset, *loc)) for _, loc in errors]
    for (e, loc), key in zip(errors, keys, strict=True):
        full = (*offset, *loc)
        if e["type"] in _SHALLOW and any(k.startswith((key + ".", key + "[")) for k in keys):
            continue  # the deeper problem says what is wrong; the branch that did not fit is noise
        line = None
        for i in range(len(full), 0, -1):
            line = (lines or {}).get(tuple(str(p) for p in full[:i]))
            if line:
                break
        if e["type"] == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            allowed = list(model.model_fields) if model is not None else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            reason = ("unknown key." + (f" Did you mean '{close[0]}'?" if close else "")
                      + (f" Allowed here: {', '.join(allowed)}." if allowed else ""))
        elif e["type"] == "missing":
            reason = "required key is missing."
        elif e["type"] == "value_error":
            reason = str(e["msg"]).removeprefix("Value error, ")
        else:
            reason = f"{e['msg']} (got {e.get('input')!r})."
        if key + reason not in seen:  # a union reports each branch; say it once
            seen.add(key + reason)
            out.append(PolicyProblem(key=key, reason=reason, line=line))
    return out


def line_of(lines: Mapping[tuple[str, ...], int], key: str) -> int | None:
    """The line of ``key`` (``tasks[3].expect.calls[0]``), or of its nearest parent that has one."""
    parts = tuple(re.findall(r"[^.\[\]]+", key))
    return next((lines[parts[:i]] for i in range(len(parts), 0, -1) if parts[:i] in lines), None)
