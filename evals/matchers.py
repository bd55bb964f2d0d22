"""Argument matchers of suite expectations: a literal, or a mapping of operators.

A literal matches a value equal to it after JSON normalisation (``18`` matches ``18.0``,
``true`` never matches ``1``, strings compare exactly). A mapping with any of the keys of
``MATCHER_KEYS`` is an operator matcher and every operator must hold: ``eq``, ``ne``, ``lt``,
``lte``, ``gt``, ``gte`` (numbers), ``in`` (a list of literals), ``contains`` (a substring of a
string, an element of a list, a key of a mapping), ``regex`` (searched anywhere in a string;
anchor it with ``^...$``), ``present`` (the argument is given and not null). An absent argument
satisfies only ``present: false``. ``arg_value`` reads an argument by name or dotted path.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MATCHER_KEYS", "MISSING", "arg_value", "is_operator_map", "json_equal", "matcher_problems", "matches"]

MATCHER_KEYS: tuple[str, ...] = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "regex", "present")


def _canon(v: Any) -> Any:
    """JSON normal form: tuples are lists, integral floats are ints, keys are strings."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    if isinstance(v, Mapping):
        return {str(k): _canon(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    return str(v)


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: ``18 == 18.0``, but ``true != 1`` and ``"1" != 1``."""
    return json.dumps(_canon(a), sort_keys=True) == json.dumps(_canon(b), sort_keys=True)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def is_operator_map(m: Any) -> bool:
    return isinstance(m, Mapping) and any(k in MATCHER_KEYS for k in m)


MISSING: Any = object()
"""Stands for an argument that is not given."""


def arg_value(args: Mapping[str, Any] | None, name: str) -> Any:
    """The argument ``name`` (a dotted path into nested mappings), or ``MISSING``."""
    if args is None:
        return MISSING
    if name in args:
        return args[name]
    cur: Any = args
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def _op(key: str, want: Any, v: Any) -> bool:
    if key == "eq":
        return json_equal(v, want)
    if key == "ne":
        return not json_equal(v, want)
    if key in ("lt", "lte", "gt", "gte"):
        if not _number(v):
            return False
        return bool({"lt": v < want, "lte": v <= want, "gt": v > want, "gte": v >= want}[key])
    if key == "in":
        return any(json_equal(v, w) for w in want)
    if key == "contains":
        if isinstance(v, str):
            return isinstance(want, str) and want in v
        if isinstance(v, list | tuple):
            return any(json_equal(x, want) for x in v)
        return isinstance(v, Mapping) and isinstance(want, str) and want in v
    if key == "regex":
        return isinstance(v, str) and re.search(want, v) is not None
    raise ValueError(f"unknown matcher key {key!r}")


def matches(matcher: Any, value: Any = MISSING) -> bool:
    """Does an argument ``value`` (``MISSING`` when absent) satisfy ``matcher``?"""
    present = value is not MISSING and value is not None
    if not is_operator_map(matcher):
        return value is not MISSING and json_equal(value, matcher)
    for key, want in matcher.items():
        if key == "present":
            if bool(want) != present:
                return False
        elif value is MISSING or not _op(key, want, value):
            return False
    return True


def matcher_problems(matcher: Any) -> list[tuple[str, str]]:
    """``(operator, what is wrong)`` for each problem of one argument matcher (empty: usable)."""
    if not isinstance(matcher, Mapping):
        return []
    if not is_operator_map(matcher):  # a literal mapping, unless a key is a misspelt operator
        return [(str(k), f"looks like a misspelt matcher key (did you mean '{close[0]}'?); write "
                 "{eq: {...}} to match a literal mapping with such a key")
                for k in matcher if (close := difflib.get_close_matches(str(k), MATCHER_KEYS, n=1, cutoff=0.75))]
    out: list[tuple[str, str]] = []
    for op, want in matcher.items():
        where = str(op)
        if op not in MATCHER_KEYS:
            close = difflib.get_close_matches(str(op), MATCHER_KEYS, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            out.append((where, f"unknown matcher key.{hint} Allowed: {', '.join(MATCHER_KEYS)} "
                                    "(a mapping without these keys is a literal; mix none in)."))
        elif op in ("lt", "lte", "gt", "gte") and not _number(want):
            out.append((where, f"must be a number (got {want!r})."))
        elif op == "in" and not isinstance(want, list | tuple):
            out.append((where, f"must be a list of values (got {want!r})."))
        elif op == "present" and not isinstance(want, bool):
            out.append((where, f"must be true or false (got {want!r})."))
        elif op == "regex":
            try:
                re.compile(want) if isinstance(want, str) else None
            except re.error as exc:
                out.append((where, f"not a valid regular expression: {exc}."))
            if not isinstance(want, str):
                out.append((where, f"must be a string (got {want!r})."))
    return out
