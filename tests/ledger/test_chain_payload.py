"""The hashed payload is built by hand for speed; it must be exactly the canonical JSON."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.checkpoints import chain, records
from tether.checkpoints.records import COLUMNS, dumps

_VALUE = {
    "text": st.one_of(st.none(), st.text(), st.integers(), st.floats()),
    "int": st.one_of(st.none(), st.integers(-(2**70), 2**70), st.booleans()),
    "real": st.one_of(st.none(), st.floats(), st.integers(-(2**40), 2**40)),
}


@settings(max_examples=400, deadline=None)
@given(values=st.tuples(*(_VALUE[kind] for _, kind in COLUMNS)), seq=st.integers(0, 2**62),
       prev=st.text(max_size=80))
def test_payload_is_the_canonical_json(values: tuple[Any, ...], seq: int, prev: str) -> None:
    expected = dumps({"v": 1, "seq": seq, "prev_hash": prev, "row": chain._canonical(values)})
    assert chain._payload(values, seq, prev) == expected


def test_row_hash_reads_renamed_columns_under_their_old_name() -> None:
    cols: dict[str, Any] = {name: None for name, _ in COLUMNS}
    cols.update(event_id="e", thread_id="t", event="proposed", spend_usd=1.5)
    old = {("customer_id" if k == "subject_id" else k): v for k, v in cols.items()}
    cols["subject_id"] = old["customer_id"] = "C-1"
    assert chain.row_hash(cols, seq=3, prev_hash=chain.GENESIS) == \
        chain.row_hash(old, seq=3, prev_hash=chain.GENESIS)
    assert chain.row_hash(cols, seq=3, prev_hash=chain.GENESIS) != \
        chain.row_hash({**cols, "subject_id": "C-2"}, seq=3, prev_hash=chain.GENESIS)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(value=_JSON)
def test_dumps_is_the_reference_encoder(value: Any) -> None:
    assert dumps(value) == records._REFERENCE.encode(value)


def _typed_value(kind: str) -> st.SearchStrategy[Any]:
    return {"text": st.one_of(st.none(), st.text()), "int": st.one_of(st.none(), st.integers(-(2**62), 2**62)),
            "real": st.one_of(st.none(), st.floats())}[kind]


_ROWS = st.lists(st.tuples(st.tuples(*(_typed_value(kind) for _, kind in COLUMNS)), st.sampled_from([1, 2])),
                 min_size=1, max_size=6)


def _chain(rows: list[tuple[tuple[Any, ...], int]]) -> list[tuple[Any, ...]]:
    out, prev = [], chain.GENESIS
    for seq, (values, version) in enumerate(rows, start=1):
        cols = dict(zip((name for name, _ in COLUMNS), values, strict=True))
        h = chain.row_hash(cols, seq=seq, prev_hash=prev, version=version)  # type: ignore[arg-type]
        out.append((seq, prev, h, *values))
        prev = h
    return out


@settings(max_examples=200, deadline=None)
@given(rows=_ROWS, data=st.data())
def test_rows_of_either_form_verify_and_any_changed_value_is_named(
        rows: list[tuple[tuple[Any, ...], int]], data: st.DataObject) -> None:
    stored = _chain(rows)
    report = chain.verify_chain(stored, find_seq=lambda h: None, head=(len(stored), stored[-1][2]))
    assert report.ok and report.rows == len(stored)
    victim = data.draw(st.integers(0, len(stored) - 1))
    column = data.draw(st.integers(3, len(chain.CHAIN_COLUMNS) - 1))
    old = stored[victim][column]
    new = data.draw(_typed_value(COLUMNS[column - 3][1]).filter(lambda v: v != old and repr(v) != repr(old)))
    edited = list(stored)
    edited[victim] = (*stored[victim][:column], new, *stored[victim][column + 1:])
    report = chain.verify_chain(edited, find_seq=lambda h: None, head=(len(stored), stored[-1][2]))
    assert not report.ok and report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("edited", victim + 1)


def test_new_rows_are_hashed_in_the_array_form() -> None:
    cols: dict[str, Any] = {name: None for name, _ in COLUMNS}
    cols.update(event_id="e", thread_id="t", event="proposed", spend_usd=1.5, step=2)
    values = [cols[name] for name, _ in COLUMNS]
    expected = "sha256:" + hashlib.sha256(dumps([2, 7, chain.GENESIS, *values]).encode()).hexdigest()
    assert chain.values_hash(values, seq=7, prev_hash=chain.GENESIS) == expected
    assert chain.row_hash(cols, seq=7, prev_hash=chain.GENESIS) == expected
    assert chain.row_hash(cols, seq=7, prev_hash=chain.GENESIS, version=1) != expected


def test_event_ids_are_unique_and_grow_with_the_clock() -> None:
    ids = [records.new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[-1][:16] >= ids[0][:16]


def test_a_batch_of_event_ids_is_unique_ordered_and_distinct_from_the_next() -> None:
    first, second = records.new_event_ids(500), records.new_event_ids(500)
    ids = first + second
    assert len(set(ids)) == len(ids) and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert [i[:16] for i in first] == sorted(i[:16] for i in first) and second[0][:16] > first[0][:16]
    assert records.new_event_ids(0) == []


TEXT_FIELDS = ["thread_id", "run_id", "tool_call_id", "tool", "tool_schema_version", "decision", "rule_id",
               "policy_version", "approval_id", "approver", "error", "detail", "model_id", "principal",
               "subject_id", "idempotency_key"]


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_a_nul_in_any_text_field_is_stored_as_the_replacement_character(field: str) -> None:
    ev = records.LedgerEvent(**{"thread_id": "t", "run_id": "r", "event": "proposed", field: "a\x00b"},
                             args={"k": "x\x00y"})
    values = dict(zip([n for n, _ in records.COLUMNS], records.to_values(ev, event_id="e", ts="s"), strict=True))
    assert values[field] == "a\ufffdb"
    assert values["args_json"] == '{"k":"x\\u0000y"}'  # JSON columns keep it, escaped
    assert not any(type(v) is str and "\x00" in v for v in values.values())
