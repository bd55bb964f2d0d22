"""``verify`` checks a large SQLite ledger in ranges, in worker processes: whatever was done to the
tables, it must report exactly what reading every row in one process reports."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.checkpoints import ledger_sqlite, vouch
from tether.checkpoints.chain import ChainReport, row_hash
from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.checkpoints.ledger_sqlite import SqliteLedger


def _sql(ledger: SqliteLedger, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return ledger._db.execute(sql, params).fetchall()


def _edit(ledger: SqliteLedger, v: int, n: int) -> None:
    _sql(ledger, "UPDATE ledger_events SET detail = 'forged' WHERE seq = ?", (v,))


def _recompute(ledger: SqliteLedger, v: int, n: int) -> None:
    [row] = [dict(r) for r in _sql(ledger, "SELECT * FROM ledger_events WHERE seq = ?", (v,))]
    row["detail"] = "forged"
    _sql(ledger, "UPDATE ledger_events SET detail = 'forged', row_hash = ? WHERE seq = ?",
         (row_hash(row, seq=v, prev_hash=row["prev_hash"]), v))


def _delete(ledger: SqliteLedger, v: int, n: int) -> None:
    _sql(ledger, "DELETE FROM ledger_events WHERE seq = ?", (v,))


def _swap(ledger: SqliteLedger, v: int, n: int) -> None:
    w = v + 1 if v < n else v - 1
    if w < 1:
        return
    _sql(ledger, "UPDATE ledger_events SET seq = -1 WHERE seq = ?", (v,))
    _sql(ledger, "UPDATE ledger_events SET seq = ? WHERE seq = ?", (v, w))
    _sql(ledger, "UPDATE ledger_events SET seq = ? WHERE seq = -1", (w,))


def _unlink(ledger: SqliteLedger, v: int, n: int) -> None:
    _sql(ledger, "UPDATE ledger_events SET prev_hash = NULL WHERE seq = ?", (v,))


def _blob(ledger: SqliteLedger, v: int, n: int) -> None:
    _sql(ledger, "UPDATE ledger_events SET tool = ? WHERE seq = ?", (b"\x00blob", v))


def _big_spend(ledger: SqliteLedger, v: int, n: int) -> None:
    _sql(ledger, "UPDATE ledger_events SET spend_usd = ? WHERE seq = ?", ("7", v))


def _truncate(ledger: SqliteLedger, v: int, n: int) -> None:
    _sql(ledger, "DELETE FROM ledger_events WHERE seq >= ?", (v,))


def _zero_row(ledger: SqliteLedger, v: int, n: int) -> None:
    """A row at seq 0, which no range covers, that row 1 is re-linked to."""
    [row] = [dict(r) for r in _sql(ledger, "SELECT * FROM ledger_events WHERE seq = 1")]
    cols = [c for c in row if c != "seq"]
    _sql(ledger, f"INSERT INTO ledger_events (seq, {', '.join(cols)}) VALUES (0, {', '.join('?' * len(cols))})",
         tuple({**row, "event_id": "zero"}[c] for c in cols))
    _sql(ledger, "UPDATE ledger_events SET prev_hash = ? WHERE seq = 1", (row["row_hash"],))


TAMPER: dict[str, Callable[[SqliteLedger, int, int], None]] = {
    "none": lambda ledger, v, n: None, "edit": _edit, "recompute": _recompute, "delete": _delete,
    "swap": _swap, "unlink": _unlink, "blob": _blob, "spend": _big_spend, "truncate": _truncate,
    "zero": _zero_row}


@contextmanager
def _checks(monkeypatch: pytest.MonkeyPatch, *, workers: bool) -> Iterator[list[tuple[int, int]]]:
    """Ranges of 3 rows, checked in worker processes (or here); yields the ranges workers checked."""
    seen: list[tuple[int, int]] = []
    original = vouch._Worker.check

    def counted(self: Any, lo: int, hi: int) -> Any:
        seen.append((lo, hi))
        return original(self, lo, hi)

    with monkeypatch.context() as m:
        m.setattr(ledger_sqlite, "_CHECK_BATCH", 3)
        m.setattr(ledger_sqlite, "_WORKERS", 2)
        m.setattr(ledger_sqlite, "_PARALLEL_FROM", 0 if workers else 10**9)
        m.setattr(vouch._Worker, "check", counted)
        yield seen


def _reports(ledger: SqliteLedger, n: int, monkeypatch: pytest.MonkeyPatch) -> tuple[ChainReport, ...]:
    with monkeypatch.context() as m:  # every row read in full and checked in Python
        m.setattr(ledger, "_verify_rows", lambda upto: ledger._chain_rows(upto))
        full = ledger.verify()
    with _checks(monkeypatch, workers=False):
        here = ledger.verify()
    with _checks(monkeypatch, workers=True) as seen:
        there = ledger.verify()
    assert bool(seen) == (n > 3)  # workers checked the ranges wherever there were two or more
    return full, here, there


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 11), tamper=st.sampled_from(sorted(TAMPER)), data=st.data())
def test_ranges_in_workers_report_what_one_pass_reports(n: int, tamper: str, data: st.DataObject,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    victim = data.draw(st.integers(1, n))
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.sqlite") as ledger:
        assert isinstance(ledger, SqliteLedger)
        ledger.append_many([LedgerEvent(thread_id="T", run_id="r", event="proposed", step=i, detail=f"d{i}",
                                        spend_usd=0.1 * i if i % 3 else None) for i in range(n)])
        TAMPER[tamper](ledger, victim, n)
        full, here, there = _reports(ledger, n, monkeypatch)
        assert here == full and there == full, (tamper, victim, full.describe(), here.describe(), there.describe())
        assert full.ok == (tamper == "none" or (tamper == "swap" and n == 1))


@pytest.mark.parametrize("python", ["/bin/false", "/nonexistent/python"])
def test_a_worker_that_cannot_start_leaves_its_ranges_to_this_process(tmp_path: Path, python: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.append_many([LedgerEvent(thread_id="T", run_id="r", event="proposed", step=i) for i in range(10)])
        ledger._db.execute("UPDATE ledger_events SET step = 99 WHERE seq = 8")
        here: list[tuple[int, int]] = []
        original = vouch.check_range

        def counted(read: Any, json_run: Any, lo: int, hi: int, *, batch: int) -> Any:
            here.append((lo, hi))
            return original(read, json_run, lo, hi, batch=batch)

        with _checks(monkeypatch, workers=True):
            monkeypatch.setattr(vouch.sys, "executable", python)
            monkeypatch.setattr(ledger_sqlite, "check_range", counted)
            report = ledger.verify()
        spans = [(0, 3), (3, 6), (6, 9), (9, 10)]  # up to the break at least, in any order (two threads)
        assert set(spans[:3]) <= set(here) <= set(spans) and len(here) == len(set(here))
        assert report.problem is not None and (report.problem.kind, report.problem.seq) == ("edited", 8)
        with _checks(monkeypatch, workers=True):
            monkeypatch.setattr(vouch.sys, "executable", python)
            assert ledger.verify() == report  # nothing was left behind by the workers that failed
