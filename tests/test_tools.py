"""The support desk's tools against a real, generated business database.

Every tool is scoped to ``ToolContext.customer_id`` whatever the arguments say; write tools
honour the idempotency key and their previews write nothing; off-spec arguments come back as
an ``ArgumentProblem`` before any tool runs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from tether.agents.support.tools import SQL_TEMPLATES, SupportResources, build_support_tools
from tether.agents.support.world import AS_OF, WORLD_SEED, connect_world
from tether.errors import ToolError
from tether.guards.context import RunContext, Subject
from tether.guards.policy import Policy
from tether.retrieval.knowledge import KnowledgeBase
from tether.tools.base import ArgumentProblem, ToolContext, Toolset

ME = "C-1042"
KETTLE_ORDER = "O-20417"  # C-1042's order: kettle $89 (damaged) + scale $39, paid $128
SUPPORT_DIR = Path(str(files("tether.agents.support")))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.from_dir(SUPPORT_DIR / "kb")


@pytest.fixture(scope="module")
def tools(kb: KnowledgeBase) -> Toolset:
    return build_support_tools()


_KB = KnowledgeBase.from_dir(SUPPORT_DIR / "kb")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect_world(tmp_path / "world" / "support.sqlite")
    yield conn
    conn.close()


def ctx_for(db: sqlite3.Connection, *, customer: str = ME, key: str = "T1:call_1") -> ToolContext:
    thread, _, call = key.partition(":")
    return ToolContext(
        subject=Subject(id=customer),
        thread_id=thread,
        run_id="run-1",
        tool_call_id=call or "call",
        idempotency_key=key,
        resources=SupportResources(db=db, kb=_KB),
    )


def call(tools: Toolset, name: str, raw: dict[str, Any], ctx: ToolContext) -> Any:
    spec = tools.get(name)
    assert spec is not None, name
    args = spec.parse(raw)
    assert not isinstance(args, ArgumentProblem), args
    return spec.run(args, ctx)


def tool_error(tools: Toolset, name: str, raw: dict[str, Any], ctx: ToolContext) -> ToolError:
    with pytest.raises(ToolError) as info:
        call(tools, name, raw, ctx)
    return info.value


def rows(db: sqlite3.Connection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.execute(sql, params).fetchall()]


def other_customers_order(db: sqlite3.Connection, *, status: str = "delivered") -> tuple[str, str]:
    r = db.execute(
        "SELECT o.id, o.customer_id FROM orders o JOIN payments p ON p.order_id = o.id"
        " WHERE o.customer_id != ? AND o.status = ? ORDER BY o.id LIMIT 1",
        (ME, status),
    ).fetchone()
    assert r is not None
    return r[0], r[1]


def refund(amount: float, order: str = KETTLE_ORDER, **extra: Any) -> dict[str, Any]:
    return {"order_id": order, "amount_usd": amount, "reason": "damaged kettle", **extra}


# ---------------------------------------------------------------- issue_refund


def test_refund_of_a_missing_order(tools: Toolset, db: sqlite3.Connection) -> None:
    err = tool_error(tools, "issue_refund", refund(10, "O-99999"), ctx_for(db))
    assert err.code == "order_not_found"
    assert err.hint
    assert rows(db, "SELECT * FROM refunds WHERE order_id='O-99999'") == []


def test_refund_of_another_customers_order(tools: Toolset, db: sqlite3.Connection) -> None:
    order, owner = other_customers_order(db)
    before = rows(db, "SELECT * FROM refunds")
    err = tool_error(tools, "issue_refund", refund(5, order), ctx_for(db))
    assert err.code == "order_not_found"
    assert owner not in str(err)  # the other customer is not revealed
    assert rows(db, "SELECT * FROM refunds") == before
    # the owner's own run may refund it
    res = call(tools, "issue_refund", refund(5, order), ctx_for(db, customer=owner, key="T9:c"))
    assert res.order_id == order and res.amount_usd == 5


def test_refund_cannot_exceed_paid_minus_refunded(tools: Toolset, db: sqlite3.Connection) -> None:
    paid = db.execute(
        "SELECT SUM(amount_usd) FROM payments WHERE order_id=?", (KETTLE_ORDER,)
    ).fetchone()[0]
    assert paid == 128.0
    err = tool_error(tools, "issue_refund", refund(paid + 0.01), ctx_for(db, key="T1:a"))
    assert err.code == "amount_exceeds_refundable"
    assert "128.00" in err.message

    first = call(tools, "issue_refund", refund(100), ctx_for(db, key="T1:b"))
    assert first.remaining_refundable_usd == pytest.approx(28.0)
    err = tool_error(tools, "issue_refund", refund(28.01), ctx_for(db, key="T1:c"))
    assert err.code == "amount_exceeds_refundable"
    last = call(tools, "issue_refund", refund(28), ctx_for(db, key="T1:d"))
    assert last.remaining_refundable_usd == pytest.approx(0.0)
    err = tool_error(tools, "issue_refund", refund(0.01), ctx_for(db, key="T1:e"))
    assert err.code == "amount_exceeds_refundable"
    total = db.execute(
        "SELECT SUM(amount_usd) FROM refunds WHERE order_id=?", (KETTLE_ORDER,)
    ).fetchone()[0]
    assert total == pytest.approx(paid)
    assert not db.in_transaction  # refusals roll back and leave no transaction open


def test_refund_of_an_unpaid_cancelled_order(tools: Toolset, db: sqlite3.Connection) -> None:
    r = db.execute(
        "SELECT id, customer_id FROM orders WHERE status='cancelled' ORDER BY id LIMIT 1"
    ).fetchone()
    assert r is not None, "the generated world has cancelled orders"
    err = tool_error(tools, "issue_refund", refund(1, r[0]), ctx_for(db, customer=r[1]))
    assert err.code == "not_refundable"
    assert rows(db, "SELECT * FROM refunds WHERE order_id=?", r[0]) == []


def test_refund_honours_the_idempotency_key(tools: Toolset, db: sqlite3.Connection) -> None:
    ctx = ctx_for(db, key="T1:call_003_issue_refund")
    first = call(tools, "issue_refund", refund(18), ctx)
    assert first.replayed is False
    assert first.remaining_refundable_usd == pytest.approx(110.0)
    again = call(tools, "issue_refund", refund(18), ctx)
    assert again.replayed is True
    assert (again.refund_id, again.order_id, again.amount_usd) == (
        first.refund_id,
        first.order_id,
        first.amount_usd,
    )
    assert again.remaining_refundable_usd == pytest.approx(110.0)
    # even different arguments under the same key do not refund again
    other = call(tools, "issue_refund", refund(30, "O-20388"), ctx)
    assert other.replayed is True and other.refund_id == first.refund_id
    stored = rows(
        db, "SELECT id, order_id, amount_usd FROM refunds WHERE idempotency_key=?", ctx.idempotency_key
    )
    assert stored == [(first.refund_id, KETTLE_ORDER, 18.0)]
    assert rows(db, "SELECT * FROM refunds WHERE order_id='O-20388'") == []
    # a new key is a new refund
    second = call(tools, "issue_refund", refund(18), ctx_for(db, key="T1:call_009_issue_refund"))
    assert second.replayed is False and second.refund_id != first.refund_id
    assert len(rows(db, "SELECT * FROM refunds WHERE order_id=?", KETTLE_ORDER)) == 2


def test_refund_records_reason_and_citations(tools: Toolset, db: sqlite3.Connection) -> None:
    cites = ["KB-REFUND@v3#p1", "KB-REFUND@v3#p4"]
    res = call(tools, "issue_refund", refund(12.345, citation_ids=cites), ctx_for(db))
    r = db.execute("SELECT * FROM refunds WHERE id=?", (res.refund_id,)).fetchone()
    assert r["amount_usd"] == 12.35 == res.amount_usd
    assert r["reason"] == "damaged kettle"
    assert r["evidence"].split(",") == cites
    assert r["idempotency_key"] == "T1:call_1"


def test_refund_preview_writes_nothing(tools: Toolset, db: sqlite3.Connection) -> None:
    spec = tools.get("issue_refund")
    assert spec is not None and spec.preview is not None and spec.effect == "write"
    before = db.execute("SELECT COUNT(*), total_changes() FROM refunds").fetchone()
    args = spec.parse(refund(40))
    assert not isinstance(args, ArgumentProblem)
    text = spec.preview(args, ctx_for(db))
    assert "$40.00" in text and KETTLE_ORDER in text and "128.00" in text
    assert db.execute("SELECT COUNT(*), total_changes() FROM refunds").fetchone() == before
    # previewing another customer's order reveals nothing either
    order, _ = other_customers_order(db)
    other = spec.parse(refund(5, order))
    assert not isinstance(other, ArgumentProblem)
    with pytest.raises(ToolError) as info:
        spec.preview(other, ctx_for(db))
    assert info.value.code == "order_not_found"


def test_refund_idempotency_holds_against_a_concurrent_executor(
    tools: Toolset, db: sqlite3.Connection, tmp_path: Path
) -> None:
    key = "T1:call_003_issue_refund"
    other_process = connect_world(tmp_path / "world" / "support.sqlite")

    class RacingConnection:
        """Commits the same keyed refund from another connection just before BEGIN."""

        def __init__(self, inner: sqlite3.Connection) -> None:
            self.inner = inner
            self.raced = False

        def execute(self, sql: str, *params: Any) -> sqlite3.Cursor:
            if sql.startswith("BEGIN") and not self.raced:
                self.raced = True
                call(tools, "issue_refund", refund(18), ctx_for(other_process, key=key))
            return self.inner.execute(sql, *params)

    racing = RacingConnection(db)
    ctx = ctx_for(db, key=key)
    ctx = ToolContext(
        subject=ctx.subject, thread_id=ctx.thread_id, run_id=ctx.run_id,
        tool_call_id=ctx.tool_call_id, idempotency_key=key,
        resources=SupportResources(db=racing, kb=_KB),  # type: ignore[arg-type]
    )
    try:
        res = call(tools, "issue_refund", refund(18), ctx)
        assert res.replayed is True
        assert len(rows(db, "SELECT * FROM refunds WHERE idempotency_key=?", key)) == 1
    finally:
        other_process.close()


# ---------------------------------------------------------------- update_crm_record


def contact(db: sqlite3.Connection, customer: str = ME) -> dict[str, Any]:
    return dict(db.execute("SELECT * FROM crm_contacts WHERE customer_id=?", (customer,)).fetchone())


def test_crm_update_writes_allowed_fields_and_logs_old_values(
    tools: Toolset, db: sqlite3.Connection
) -> None:
    before = contact(db)
    others_before = rows(db, "SELECT * FROM crm_contacts WHERE customer_id != ? ORDER BY 1", ME)
    res = call(
        tools, "update_crm_record",
        {"fields": {"phone": "+1-555-0199", "email": "dana@new.example"}}, ctx_for(db),
    )
    assert res.customer_id == ME and res.replayed is False
    assert res.changed == {"phone": "+1-555-0199", "email": "dana@new.example"}
    after = contact(db)
    assert (after["phone"], after["email"]) == ("+1-555-0199", "dana@new.example")
    assert after["shipping_address"] == before["shipping_address"]
    assert rows(db, "SELECT * FROM crm_contacts WHERE customer_id != ? ORDER BY 1", ME) == others_before
    log = rows(
        db, "SELECT field, old_value, new_value FROM crm_changes WHERE customer_id=? ORDER BY field", ME
    )
    assert log == [
        ("email", before["email"], "dana@new.example"),
        ("phone", before["phone"], "+1-555-0199"),
    ]


def test_crm_update_is_idempotent(tools: Toolset, db: sqlite3.Connection) -> None:
    ctx = ctx_for(db, key="T2:call_002_update_crm_record")
    first = call(tools, "update_crm_record", {"fields": {"phone": "+1-555-0199"}}, ctx)
    again = call(tools, "update_crm_record", {"fields": {"phone": "+1-555-0000"}}, ctx)
    assert again.replayed is True
    assert again.changed == first.changed == {"phone": "+1-555-0199"}
    assert contact(db)["phone"] == "+1-555-0199"
    assert len(rows(db, "SELECT * FROM crm_changes WHERE idempotency_key=?", ctx.idempotency_key)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Mallory"},
        {"phone": "+1", "customer_id": "C-1043"},
        {"phone = 'x', credit_limit_usd": "1"},
        {"updated_at": "2000-01-01"},
        {},
    ],
)
def test_crm_update_rejects_unknown_columns(
    tools: Toolset, db: sqlite3.Connection, fields: dict[str, str]
) -> None:
    before = contact(db)
    err = tool_error(tools, "update_crm_record", {"fields": fields}, ctx_for(db))
    assert err.code == "unknown_field"
    assert "email" in err.hint
    assert contact(db) == before
    assert rows(db, "SELECT * FROM crm_changes") == []


def test_crm_preview_shows_old_and_new_and_writes_nothing(
    tools: Toolset, db: sqlite3.Connection
) -> None:
    spec = tools.get("update_crm_record")
    assert spec is not None and spec.preview is not None
    args = spec.parse({"fields": {"phone": "+1-555-0199"}})
    assert not isinstance(args, ArgumentProblem)
    text = spec.preview(args, ctx_for(db))
    assert "'+1-555-0142' -> '+1-555-0199'" in text
    assert contact(db)["phone"] == "+1-555-0142"
    assert rows(db, "SELECT * FROM crm_changes") == []


# ---------------------------------------------------------------- run_sql_query


def my_order_ids(db: sqlite3.Connection, customer: str = ME) -> set[str]:
    return {r[0] for r in db.execute("SELECT id FROM orders WHERE customer_id=?", (customer,))}


@pytest.mark.parametrize("named", [None, ME, "C-1043", "C-1001", "' OR 1=1 --"])
def test_sql_templates_only_return_the_run_customers_rows(
    tools: Toolset, db: sqlite3.Connection, named: str | None
) -> None:
    raw: dict[str, Any] = {"template": "orders_since", "params": {"since": "2000-01-01"}}
    if named is not None:
        raw["customer_id"] = named
    res = call(tools, "run_sql_query", raw, ctx_for(db))
    assert res.columns == ["id", "placed_at", "status", "total_usd"]
    assert {r[0] for r in res.rows} == my_order_ids(db)
    assert len(res.rows) == 4


def test_sql_order_items_of_another_customers_order_is_empty(
    tools: Toolset, db: sqlite3.Connection
) -> None:
    order, owner = other_customers_order(db)
    raw = {"template": "order_items", "params": {"order_id": order}, "customer_id": owner}
    assert call(tools, "run_sql_query", raw, ctx_for(db)).rows == []
    mine = call(tools, "run_sql_query", {**raw, "params": {"order_id": KETTLE_ORDER}}, ctx_for(db))
    assert sorted(r[0] for r in mine.rows) == ["Brewing scale", "Ceramic pour-over kettle"]
    theirs = call(tools, "run_sql_query", raw, ctx_for(db, customer=owner))
    assert len(theirs.rows) == len(rows(db, "SELECT * FROM order_items WHERE order_id=?", order)) > 0


def test_sql_orders_last_month_uses_the_world_calendar(tools: Toolset, db: sqlite3.Connection) -> None:
    res = call(tools, "run_sql_query", {"template": "orders_last_month"}, ctx_for(db))
    first_this = AS_OF.replace(day=1)
    first_prev = (first_this - timedelta(days=1)).replace(day=1)
    expected = [
        r[0]
        for r in db.execute(
            "SELECT id FROM orders WHERE customer_id=? ORDER BY placed_at", (ME,)
        )
        if first_prev <= date.fromisoformat(
            db.execute("SELECT placed_at FROM orders WHERE id=?", (r[0],)).fetchone()[0]
        ) < first_this
    ]
    assert [r[0] for r in res.rows] == expected
    assert set(expected) == {"O-20417", "O-20431"}


def test_sql_refunds_for_order(tools: Toolset, db: sqlite3.Connection) -> None:
    call(tools, "issue_refund", refund(18), ctx_for(db, key="T1:r"))
    res = call(
        tools, "run_sql_query",
        {"template": "refunds_for_order", "params": {"order_id": KETTLE_ORDER}}, ctx_for(db),
    )
    assert [(r[1], r[2]) for r in res.rows] == [(18.0, "damaged kettle")]


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM orders", "SELECT id FROM orders WHERE customer_id = 'C-1042'", "DROP TABLE refunds"],
)
def test_sql_text_is_refused(tools: Toolset, db: sqlite3.Connection, sql: str) -> None:
    err = tool_error(
        tools, "run_sql_query", {"template": "orders_last_month", "sql": sql}, ctx_for(db)
    )
    assert err.code == "free_sql_refused"
    assert db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0] > 0  # still there


@pytest.mark.parametrize(
    ("template", "params"),
    [
        ("orders_since", {}),
        ("orders_since", {"since": "2026-01-01", "customer": "C-1043"}),
        ("order_items", {"since": "2026-01-01"}),
        ("orders_last_month", {"month_start": "2000-01-01"}),
        ("refunds_for_order", {"order_id": "O-20417", "x": "1"}),
    ],
)
def test_sql_template_params_are_checked(
    tools: Toolset, db: sqlite3.Connection, template: str, params: dict[str, str]
) -> None:
    err = tool_error(tools, "run_sql_query", {"template": template, "params": params}, ctx_for(db))
    assert err.code == "bad_template_params"
    assert template in err.message


def test_every_sql_template_binds_the_customer_from_the_run() -> None:
    for name, (sql, params) in SQL_TEMPLATES.items():
        assert ":customer" in sql, name
        assert "customer" not in params, name


def test_sql_injection_in_params_is_just_a_value(tools: Toolset, db: sqlite3.Connection) -> None:
    raw = {"template": "orders_since", "params": {"since": "2000-01-01' OR '1'='1"}}
    res = call(tools, "run_sql_query", raw, ctx_for(db))
    assert {r[0] for r in res.rows} <= my_order_ids(db)


# ---------------------------------------------------------------- lookups and search


def test_lookup_order_is_scoped(tools: Toolset, db: sqlite3.Connection) -> None:
    mine = call(tools, "lookup_order", {"order_id": KETTLE_ORDER}, ctx_for(db))
    assert (mine.id, mine.paid_usd, mine.refunded_usd, mine.refundable_usd) == (
        KETTLE_ORDER, 128.0, 0.0, 128.0,
    )
    assert {i.condition for i in mine.items} == {"damaged", "ok"}
    order, owner = other_customers_order(db)
    err = tool_error(tools, "lookup_order", {"order_id": order}, ctx_for(db))
    assert err.code == "order_not_found"
    assert call(tools, "lookup_order", {"order_id": order}, ctx_for(db, customer=owner)).id == order


def test_lookup_order_reflects_refunds(tools: Toolset, db: sqlite3.Connection) -> None:
    call(tools, "issue_refund", refund(40), ctx_for(db, key="T1:x"))
    o = call(tools, "lookup_order", {"order_id": KETTLE_ORDER}, ctx_for(db))
    assert (o.refunded_usd, o.refundable_usd) == (40.0, 88.0)


def test_lookup_customer_is_the_run_customer(tools: Toolset, db: sqlite3.Connection) -> None:
    me = call(tools, "lookup_customer", {}, ctx_for(db))
    assert (me.id, me.name, me.phone) == (ME, "Dana Whitfield", "+1-555-0142")
    err = tool_error(tools, "lookup_customer", {}, ctx_for(db, customer="C-0000"))
    assert err.code == "customer_not_found"
    problem = tools.get("lookup_customer").parse({"customer_id": "C-1043"})  # type: ignore[union-attr]
    assert isinstance(problem, ArgumentProblem)


EVIDENCE_ID = re.compile(r"^KB-[A-Z]+@v\d+#p\d+$")


def test_search_policy_returns_stable_citable_evidence(
    tools: Toolset, db: sqlite3.Connection, kb: KnowledgeBase
) -> None:
    spec = tools.get("search_policy")
    assert spec is not None and spec.yields_evidence
    res = call(tools, "search_policy", {"query": "refund for a damaged item"}, ctx_for(db))
    ids = [e.evidence_id for e in res.evidence]
    assert ids and all(EVIDENCE_ID.match(i) for i in ids)
    assert ids[0] == "KB-REFUND@v3#p1"
    for e in res.evidence:
        p = kb.get(e.evidence_id)
        assert p is not None and p.text == e.text and p.version == e.version
        assert e.evidence_id.startswith(f"{e.doc_id}@v{e.version}#p")
    scores = [e.score for e in res.evidence]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    # stable across calls and across freshly built knowledge bases
    again = call(tools, "search_policy", {"query": "refund for a damaged item"}, ctx_for(db))
    fresh = build_support_tools()
    third = call(fresh, "search_policy", {"query": "refund for a damaged item"}, ctx_for(db))
    assert [e.evidence_id for e in again.evidence] == ids == [e.evidence_id for e in third.evidence]


def test_knowledge_base_ids_follow_the_documents(kb: KnowledgeBase) -> None:
    p1 = kb.get("KB-REFUND@v3#p1")
    assert p1 is not None and p1.text.startswith("Damaged or defective items.")
    assert kb.get("KB-REFUND@v2#p1") is None  # versions are part of the id
    assert kb.get("KB-REFUND@v3#p99") is None


def test_handoff_is_idempotent(tools: Toolset, db: sqlite3.Connection) -> None:
    ctx = ctx_for(db, key="T3:handoff")
    raw = {"summary": "customer wants $80 back", "reason": "over the refund limit"}
    first = call(tools, "handoff_to_human", raw, ctx)
    again = call(tools, "handoff_to_human", raw, ctx)
    assert again.replayed and again.ticket_id == first.ticket_id
    assert rows(db, "SELECT customer_id FROM support_tickets") == [(ME,)]


# ---------------------------------------------------------------- the world


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_world_generation_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "w.sqlite", tmp_path / "b" / "w.sqlite"
    connect_world(a).close()
    connect_world(b).close()
    assert dump(a) == dump(b)


def test_world_has_a_few_hundred_rows_and_its_meta(db: sqlite3.Connection) -> None:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    assert 300 <= sum(counts.values()) <= 5000, counts
    assert counts["customers"] >= 50 and counts["orders"] >= 100
    assert counts["refunds"] > 0 and counts["support_tickets"] == 0
    meta = dict(rows(db, "SELECT key, value FROM world_meta"))
    assert meta["seed"] == str(WORLD_SEED) and meta["as_of"] == AS_OF.isoformat()
    # every paid order's payment equals its total
    bad = rows(
        db, "SELECT o.id FROM orders o JOIN payments p ON p.order_id=o.id WHERE p.amount_usd != o.total_usd"
    )
    assert bad == []


def test_world_is_created_once_and_keeps_writes(tools: Toolset, tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    conn = connect_world(path)
    res = call(tools, "issue_refund", refund(10), ctx_for(conn))
    conn.close()
    conn = connect_world(path)
    try:
        assert rows(conn, "SELECT id FROM refunds WHERE id=?", res.refund_id) == [(res.refund_id,)]
    finally:
        conn.close()


# ---------------------------------------------------------------- argument parsing


@pytest.mark.parametrize(
    ("tool", "raw", "field"),
    [
        ("issue_refund", refund("forty"), "amount_usd"),  # type: ignore[arg-type]
        ("issue_refund", refund(None), "amount_usd"),  # type: ignore[arg-type]
        ("issue_refund", refund(0), "amount_usd"),
        ("issue_refund", refund(-5), "amount_usd"),
        ("issue_refund", refund(float("nan")), "amount_usd"),
        ("issue_refund", refund(10, "20417"), "order_id"),
        ("issue_refund", refund(10, "O-2041"), "order_id"),
        ("issue_refund", refund(10, "O-204170"), "order_id"),
        ("issue_refund", refund(10, "O-20417; DROP TABLE refunds"), "order_id"),
        ("issue_refund", refund(10, customer_id="C-1043"), "customer_id"),
        ("issue_refund", refund(10, citation_ids="KB-REFUND@v3#p1"), "citation_ids"),
        ("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 10}, "reason"),
        ("lookup_order", {"order_id": 20417}, "order_id"),
        ("lookup_order", {}, "order_id"),
        ("update_crm_record", {"fields": {"phone": 5550199}}, "fields.phone"),
        ("update_crm_record", {"fields": "phone=+1"}, "fields"),
        ("update_crm_record", {"fields": {"phone": "+1"}, "customer_id": "C-1043"}, "customer_id"),
        ("run_sql_query", {"template": "all_orders"}, "template"),
        ("run_sql_query", {"template": "orders_since", "params": {"since": 2026}}, "params.since"),
        ("search_policy", {"query": "x"}, "query"),
        ("handoff_to_human", {"summary": "s"}, "summary"),
    ],
)
def test_off_spec_arguments_become_an_argument_problem(
    tools: Toolset, tool: str, raw: dict[str, Any], field: str
) -> None:
    spec = tools.get(tool)
    assert spec is not None
    problem = spec.parse(raw)
    assert isinstance(problem, ArgumentProblem), problem
    assert problem.tool == tool and problem.code == "invalid_arguments"
    assert any(e.startswith(f"{field}:") for e in problem.errors), problem.errors
    assert tool in problem.hint


def test_boolean_amount_is_refused(tools: Toolset) -> None:
    spec = tools.get("issue_refund")
    assert spec is not None
    assert isinstance(spec.parse(refund(True)), ArgumentProblem)


def test_valid_arguments_parse_into_the_args_model(tools: Toolset) -> None:
    spec = tools.get("issue_refund")
    assert spec is not None
    args = spec.parse(refund(40, citation_ids=["KB-REFUND@v3#p1"]))
    assert isinstance(args, spec.args_model)
    assert args.amount_usd == 40.0  # type: ignore[attr-defined]


# ---------------------------------------------------------------- tool contract meets policy


def test_describe_feeds_the_policy_what_the_call_means(tools: Toolset) -> None:
    policy = Policy.from_yaml(SUPPORT_DIR / "agent-policy.yaml")
    ev = frozenset({"KB-REFUND@v3#p1"})

    def decide(name: str, raw: dict[str, Any]) -> str:
        spec = tools.get(name)
        assert spec is not None
        args = spec.parse(raw)
        assert not isinstance(args, ArgumentProblem), args
        return policy.evaluate(spec.describe(args, RunContext(subject=Subject(id=ME), evidence=ev))).rule_id

    cite = {"citation_ids": ["KB-REFUND@v3#p1"]}
    assert decide("issue_refund", refund(18, **cite)) == "tools.issue_refund.allowed"
    assert decide("issue_refund", refund(40, **cite)) == "tools.issue_refund.require_approval_over_usd"
    assert decide("issue_refund", refund(80, **cite)) == "tools.issue_refund.max_amount_usd"
    assert decide("issue_refund", refund(18)) == "tools.issue_refund.require_citation"
    assert decide("issue_refund", refund(18, citation_ids=["KB-SHIP@v2#p1"])) == (
        "tools.issue_refund.require_citation"
    )
    # the shipped policy takes a new phone number only from the user's own words
    assert decide("update_crm_record", {"fields": {"phone": "+1"}}) == (
        "tools.update_crm_record.provenance.fields.phone"
    )
    assert decide("update_crm_record", {"fields": {"credit_limit_usd": "5000"}}) == (
        "tools.update_crm_record.allowed_fields"
    )
    q = {"template": "orders_last_month"}
    assert decide("run_sql_query", q) == "tools.run_sql_query.allowed"
    assert decide("run_sql_query", {**q, "customer_id": ME}) == "tools.run_sql_query.allowed"
    assert decide("run_sql_query", {**q, "customer_id": "C-1043"}) == (
        "tools.run_sql_query.row_level_security"
    )
    assert decide("run_sql_query", {**q, "sql": "SELECT 1"}) == "tools.run_sql_query.mode"
