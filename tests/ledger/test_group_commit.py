"""Group commit and durability marks, on every backend (``ledger`` fixture: SQLite, PostgreSQL)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.checkpoints.ledger import Ledger, LedgerEvent
from tether.checkpoints.ledger_postgres import PostgresLedger


def ev(i: int, thread: str = "T") -> LedgerEvent:
    return LedgerEvent(thread_id=thread, run_id="r1", event="proposed", args={"i": i})


def test_append_many_chains_like_single_appends(ledger: Ledger) -> None:
    ledger.append(ev(0))
    head = ledger.append_many([ev(i) for i in range(1, 6)])
    ledger.append(ev(6), durable=True)
    stored = ledger.events("T")
    assert [r.args["i"] for r in stored] == list(range(7))
    assert [r.seq for r in stored] == list(range(1, 8))
    assert head == 6
    assert all(b.prev_hash == a.row_hash for a, b in pairwise(stored))
    assert ledger.verify().ok
    assert ledger.head().seq == 7


def test_append_many_of_nothing_changes_nothing(ledger: Ledger) -> None:
    ledger.append(ev(0))
    before = ledger.head()
    assert ledger.append_many([]) == before.seq
    assert (ledger.head().seq, ledger.head().row_hash) == (before.seq, before.row_hash)


def test_a_failing_batch_adds_no_row(ledger: Ledger) -> None:
    ledger.append(ev(0))
    bad: Any = object()  # not an event: to_columns fails inside the transaction
    try:
        ledger.append_many([ev(1), bad])
    except Exception:
        pass
    else:  # pragma: no cover - the contract is all or none
        raise AssertionError("a batch with a bad event was accepted")
    assert [r.args["i"] for r in ledger.events("T")] == [0]
    assert ledger.verify().ok


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=8))
def test_any_mix_of_batches_and_durable_appends_verifies(ledger: Ledger, plan: list[tuple[int, bool]]) -> None:
    start = ledger.head().seq
    n = 0
    for size, durable in plan:
        if size == 0:
            ledger.append(ev(n, "H"), durable=durable)
            n += 1
        else:
            ledger.append_many([ev(n + k, "H") for k in range(size)], durable=durable)
            n += size
        ledger.sync(through=ledger.commit_mark())
    assert ledger.head().seq == start + n
    assert ledger.verify().ok


def test_sync_after_a_durable_commit_is_free(ledger: Ledger) -> None:
    ledger.append(ev(0))
    mark = ledger.commit_mark()
    ledger.append(ev(1), durable=True)  # makes everything before it durable
    commits = ledger.commit_mark()
    ledger.sync(through=mark)
    assert ledger.commit_mark() == commits  # nothing written again
    ledger.append(ev(2))
    ledger.sync()  # a commit after the last durable one: one more (durable) commit on SQLite
    assert ledger.commit_mark() in (commits, commits + 2)
    assert ledger.verify().ok


def _setting(ledger: Ledger, q: Any) -> str:
    if isinstance(ledger, PostgresLedger):
        return str(q("SELECT current_setting('synchronous_commit') AS v")[0][0]["v"])
    return {1: "off", 2: "on", 3: "on"}[q("PRAGMA synchronous")[0][0]["synchronous"]]  # NORMAL, FULL, EXTRA


def test_only_durable_writes_wait_for_the_disk(ledger: Ledger) -> None:
    """A row that need not be durable commits without waiting for the log's flush (SQLite
    ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit`` off for that transaction); a
    durable one waits, and the connection goes back to its default after either."""
    with ledger._write(durable=False) as q:
        ledger._lock_head(q)  # an append takes the head lock first (on PostgreSQL it relaxes the commit too)
        assert _setting(ledger, q) == "off"
        q("UPDATE ledger_head SET seq=seq WHERE id=1")
    with ledger._write(durable=True) as q:
        ledger._lock_head(q)
        assert _setting(ledger, q) == "on"
    with ledger._tx() as q:  # approvals, queue and migrations keep the connection's default
        expected = "on" if isinstance(ledger, PostgresLedger) else "off"
        assert _setting(ledger, q) == expected


def test_sync_makes_a_non_durable_commit_durable_once(ledger: Ledger) -> None:
    ledger.append(ev(0))
    mark = ledger.commit_mark()
    assert mark > 0
    ledger.sync(through=mark)
    after = ledger.commit_mark()
    assert after == mark + 1  # one durable commit
    ledger.sync(through=mark)
    ledger.sync()
    assert ledger.commit_mark() == after  # nothing since the durable one: free
    assert ledger.verify().ok
