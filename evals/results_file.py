"""Reading the results files ``tether eval run`` writes (``tether.eval-results/1``), validated
enough for ``evals.compare`` to compare two of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import TetherError
from tether.evals.metrics import METRICS

__all__ = ["SCHEMA_VERSION", "Results", "ResultsFileError", "load_results"]

SCHEMA_VERSION = "tether.eval-results/1"


class ResultsFileError(TetherError):
    """A results file is unreadable or not a ``tether eval run`` results file."""

    def __init__(self, *, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"results file {path}: {reason}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Results:
    """A results file of ``tether eval run``, validated enough to compare."""

    path: str
    suite: str
    suite_version: str
    run_id: str
    profiles: tuple[str, ...]
    tasks: tuple[Mapping[str, Any], ...]
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]]
    versions: Mapping[str, Any]
    run: Mapping[str, Any]

    def task_keys(self) -> set[tuple[str, str]]:
        return {(str(t["id"]), str(t["profile"])) for t in self.tasks}


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    if key not in data:
        raise ResultsFileError(path=path, reason=f"missing key {key!r}; write it with `tether eval run`")
    if not isinstance(data[key], kind):
        raise ResultsFileError(path=path, reason=f"{key!r} has the wrong type ({type(data[key]).__name__})")
    return data[key]


def load_results(path: str | Path) -> Results:
    """Read a results file; raises ``ResultsFileError`` for anything but ``tether.eval-results/1``."""
    p = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultsFileError(path=p, reason=f"cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsFileError(path=p, reason=f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ResultsFileError(path=p, reason="expected a JSON object written by `tether eval run`")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsFileError(path=p, reason=f"schema_version is {version!r}, expected {SCHEMA_VERSION!r}; "
                                              "re-run the suite with this version of tether")
    suite = _need(data, "suite", dict, p)
    tasks = _need(data, "tasks", list, p)
    metrics = _need(data, "metrics", dict, p)
    for i, t in enumerate(tasks):
        if not isinstance(t, dict) or not {"id", "profile", "success"} <= t.keys():
            raise ResultsFileError(path=p, reason=f"tasks[{i}] needs id, profile and success")
    for prof, ms in metrics.items():
        missing = [m for m in METRICS if not isinstance(ms, dict) or not isinstance(ms.get(m), dict)]
        if missing:
            raise ResultsFileError(path=p, reason=f"metrics.{prof} lacks {', '.join(missing)}")
    return Results(path=p, suite=str(_need(suite, "name", str, p)), suite_version=str(suite.get("version", "")),
                   run_id=str(data.get("run", {}).get("id", "")), profiles=tuple(metrics),
                   tasks=tuple(tasks), metrics=metrics, versions=data.get("versions") or {},
                   run=data.get("run") or {})
