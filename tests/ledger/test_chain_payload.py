"""The hashed payload is built by hand for speed; it must be exactly the canonical JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.checkpoints import chain
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
