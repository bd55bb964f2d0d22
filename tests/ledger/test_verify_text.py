"""``verify`` hashes the text the database writes for a row (SQLite: in Python; PostgreSQL: on the
server); that fast path must accept exactly the rows the full check accepts, and re-read a row
whenever its text does not match."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgschema import fresh_schema

from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.checkpoints.records import COLUMNS

TRICKY = ["plain", "é ü 日本 🙂", 'quote " backslash \\ slash /', "ctl \x00\x01\x1f\x7f \n\r\t\b\f",
          "\u2028\u2029 line separators", "<!-- html --> & 'single'", ""]

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
_EVENT = st.builds(
    LedgerEvent, thread_id=_TEXT.filter(bool), run_id=_TEXT, event=st.sampled_from(["proposed", "executed"]),
    step=st.none() | st.integers(-(2**62), 2**62), tool=st.none() | _TEXT, detail=st.none() | _TEXT,
    args=st.none() | st.dictionaries(_TEXT, _TEXT | st.integers() | st.floats(allow_nan=False), max_size=3),
    spend_usd=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    evidence=st.lists(_TEXT, max_size=2).map(tuple))


def _loads(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Seqs ``verify`` re-reads in full."""
    seen: list[int] = []
    original = ledger._chain_row

    def counted(seq: int) -> tuple[Any, ...] | None:
        seen.append(seq)
        return original(seq)

    monkeypatch.setattr(ledger, "_chain_row", counted)
    return seen


def test_an_edited_row_is_named_on_either_backend(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger.append_many([LedgerEvent(thread_id="T", run_id="r", event="proposed", detail=t) for t in TRICKY])
    loads = _loads(ledger, monkeypatch)
    with ledger._tx() as q:
        q("UPDATE ledger_events SET detail=? WHERE seq=2", ("é ü 日本 🙂!",))
    report = ledger.verify()
    assert loads == [2]  # only the row whose text does not match is read again in full
    assert report.problem is not None and (report.problem.kind, report.problem.seq) == ("edited", 2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_EVENT, min_size=1, max_size=8), data=st.data())
def test_the_database_text_is_the_hashed_text(events: list[LedgerEvent], data: st.DataObject,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.sqlite") as ledger:
        ledger.append_many(events)
        with monkeypatch.context() as m:
            loads = _loads(ledger, m)
            report = ledger.verify()
        assert report.ok and report.rows == len(events), report.describe()
        assert loads == []  # every row checked on the fast path
        victim = data.draw(st.integers(1, len(events)))
        column = data.draw(st.sampled_from(["thread_id", "detail", "args_json", "step", "spend_usd", "evidence"]))
        ledger._db.execute(f"UPDATE ledger_events SET {column} = ? WHERE seq = ?",
                           ("tampered" if column not in ("step", "spend_usd") else 1234567, victim))
        report = ledger.verify()
        assert not report.ok and report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("edited", victim)


@pytest.mark.parametrize("value", [7, 7.5, b"blob", "7"])
def test_a_value_of_another_type_is_rechecked_in_full(tmp_path: Path, value: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.append_many([LedgerEvent(thread_id="T", run_id="r", event="proposed", tool="t", detail=d)
                            for d in TRICKY])
        ledger._db.execute("UPDATE ledger_events SET tool = ? WHERE seq = 3", (value,))
        loads = _loads(ledger, monkeypatch)
        report = ledger.verify()
        assert 3 in loads or isinstance(value, bytes)  # json_array refuses a BLOB: the batch is read in full
        assert not report.ok and report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("edited", 3)


def test_tricky_text_round_trips_and_verifies_on_the_fast_path(ledger: Ledger,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    evs = [LedgerEvent(thread_id=f"T{i}", run_id="r", event="proposed", tool=t, detail=t, args={t: t},
                       spend_usd=0.1 + 0.2 * i, step=i - 3) for i, t in enumerate(TRICKY)]
    ledger.append_many(evs)
    ledger.append(LedgerEvent(thread_id="T", run_id="r", event="executed", result={"x": TRICKY}))
    loads = _loads(ledger, monkeypatch)
    assert ledger.verify().ok and loads == []
    rows = ledger.events()
    stored = [t.replace("\x00", "\ufffd") for t in TRICKY]  # PostgreSQL cannot store NUL: no backend does
    assert [r.detail for r in rows[:-1]] == stored and rows[-1].result == {"x": TRICKY}
    assert rows[0].args == {"plain": "plain"} and rows[3].args == {TRICKY[3]: TRICKY[3]}  # JSON escapes it
    assert len(COLUMNS) == 28  # a new column needs a new hashed form (chain.py)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_EVENT, min_size=1, max_size=6), data=st.data())
def test_the_server_checks_what_python_checks_on_postgresql(events: list[LedgerEvent], data: st.DataObject,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_schema() as url, Ledger.open(url) as ledger:
        ledger.append_many(events)
        with monkeypatch.context() as m:
            loads = _loads(ledger, m)
            report = ledger.verify()
        assert report.ok and report.rows == len(events), report.describe()
        big = {i + 1 for i, e in enumerate(events) if e.spend_usd is not None and abs(e.spend_usd) >= 1e15}
        assert set(loads) == big  # only magnitudes the two float writers print differently are re-read
        victim = data.draw(st.integers(1, len(events)))
        column = data.draw(st.sampled_from(["thread_id", "detail", "args_json", "step", "spend_usd", "evidence"]))
        value: Any = "tampered" if column not in ("step", "spend_usd") else 1234567
        with ledger._tx() as q:
            q(f"UPDATE ledger_events SET {column} = ? WHERE seq = ?", (value, victim))
        report = ledger.verify()
        assert not report.ok and report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("edited", victim)


@pytest.mark.parametrize("victim", [None, 3, 4, 5, 9])
def test_batches_on_the_server_join_up(pg_url: str, victim: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.checkpoints import ledger_postgres

    monkeypatch.setattr(ledger_postgres, "_CHECK_BATCH", 4)  # rows 1-4, 5-8, 9-10
    with Ledger.open(pg_url) as ledger:
        ledger.append_many([LedgerEvent(thread_id="T", run_id="r", event="proposed", step=i) for i in range(10)])
        anchor = ledger.head()
        if victim is not None:
            with ledger._tx() as q:
                q("UPDATE ledger_events SET step = 99 WHERE seq = ?", (victim,))
        loads = _loads(ledger, monkeypatch)
        report = ledger.verify(anchor=dataclasses.replace(anchor, seq=6, row_hash=ledger.events()[5].row_hash))
        if victim is None:
            assert report.ok and report.rows == 10 and loads == [6]  # the anchor's row, inside a checked run
        else:
            assert report.problem is not None and (report.problem.kind, report.problem.seq) == ("edited", victim)
            assert report.rows == victim - 1 and victim in loads
