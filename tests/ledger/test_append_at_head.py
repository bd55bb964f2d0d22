"""Appends chained to the head a connection last wrote (one statement on PostgreSQL), while other
connections move the head in between: every row lands once, in order, and the chain verifies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.checkpoints.ledger_postgres import PostgresLedger


def ev(writer: int, i: int, tag: str = "") -> LedgerEvent:
    return LedgerEvent(thread_id=f"{tag}W{writer}", run_id="r", event="proposed", args={"i": i})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4), st.booleans()), min_size=1, max_size=14))
def test_interleaved_writers_each_add_their_rows_once_and_in_order(
        ledger_url: str, plan: list[tuple[int, int, bool]]) -> None:
    """Three connections take turns in any order (batches of 1-4, durable or not): a connection
    whose remembered head another one has moved since must still link to the true head."""
    writers = [Ledger.open(ledger_url) for _ in range(3)]
    tag = uuid.uuid4().hex[:8]  # the fixture's ledger outlives one example
    try:
        start = writers[0].head().seq
        sent: dict[int, list[int]] = {0: [], 1: [], 2: []}
        for who, size, durable in plan:
            first = len(sent[who])
            batch = [ev(who, first + k, tag) for k in range(size)]
            if size == 1:
                row = writers[who].append(batch[0], durable=durable)
                assert row.seq == writers[who].head().seq
            else:
                assert writers[who].append_many(batch, durable=durable) == writers[who].head().seq
            sent[who] += range(first, first + size)
        total = sum(len(v) for v in sent.values())
        assert writers[0].head().seq == start + total
        for who, expected in sent.items():
            assert [r.args["i"] for r in writers[0].events(f"{tag}W{who}")] == expected
        assert writers[1].verify().ok
    finally:
        for w in writers:
            w.close()


def _statements(led: PostgresLedger) -> tuple[list[str], Callable[[], None]]:
    seen: list[str] = []
    run = led._run

    def counting(sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return run(sql, params)

    led._run = counting  # type: ignore[method-assign]
    return seen, lambda: setattr(led, "_run", run)


@pytest.mark.postgres
def test_an_append_after_the_first_is_one_statement(pg_url: str) -> None:
    with Ledger.open(pg_url) as led:
        assert isinstance(led, PostgresLedger)
        led.append(ev(0, 0))  # learns the head under its lock
        seen, undo = _statements(led)
        led.append(ev(0, 1))
        led.append_many([ev(0, 2), ev(0, 3)], durable=True)
        undo()
        assert len(seen) == 2, seen
        assert "synchronous_commit" in seen[0] and "synchronous_commit" not in seen[1]
        assert led.verify().ok and led.head().seq == 4


@pytest.mark.postgres
def test_a_moved_head_costs_one_locked_append_then_one_statement_again(pg_url: str) -> None:
    with Ledger.open(pg_url) as a, Ledger.open(pg_url) as b:
        assert isinstance(a, PostgresLedger)
        a.append(ev(0, 0))
        b.append(ev(1, 0))  # a's remembered head is stale now
        seen, undo = _statements(a)
        a.append(ev(0, 1))
        moved = list(seen)
        a.append(ev(0, 2))
        undo()
        assert len(seen) - len(moved) == 1  # back to one statement
        assert any("FOR UPDATE" in s for s in moved)  # the stale try added nothing; the lock did
        assert [r.args["i"] for r in a.events("W0")] == [0, 1, 2] and a.verify().ok


@pytest.mark.postgres
def test_inside_a_callers_transaction_an_append_keeps_its_durability(pg_url: str) -> None:
    """Within an open transaction the append is part of it: it must not relax that
    transaction's commit, nor commit on its own."""
    with Ledger.open(pg_url) as led:
        assert isinstance(led, PostgresLedger)
        led.append(ev(0, 0))
        with pytest.raises(RuntimeError), led._tx() as q:
            led.append(ev(0, 1))
            assert q("SELECT current_setting('synchronous_commit') AS v")[0][0]["v"] == "on"
            raise RuntimeError("roll back")
        assert led.head().seq == 1 and [r.args["i"] for r in led.events("W0")] == [0]
        led.append(ev(0, 2))
        assert led.verify().ok and led.head().seq == 2
