"""Tests for tether.guards.sql_safety against a real in-memory SQLite database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import TetherError
from tether.guards.sql_safety import SafeQuery, SqlScope, UnsafeSql, check_select

SCOPE = SqlScope(
    tables={
        "customers": frozenset({"id", "name"}),
        "orders": frozenset({"id", "customer_id", "placed_at", "total_usd"}),
    },
    row_filters={"orders": "customer_id", "customers": "id"},
)
ALICE = "1"
ALICE_ORDERS = [1, 2, 3]
ALL_ORDERS = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2}  # order id -> customer id


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY, customer_id INTEGER, placed_at TEXT, total_usd REAL
        );
        CREATE TABLE secrets (k TEXT, v TEXT);
        INSERT INTO customers VALUES (1, 'alice', 'alice@example.com'),
                                     (2, 'bob', 'bob@example.com');
        INSERT INTO orders VALUES (1, 1, '2024-01-05', 10.0), (2, 1, '2024-02-10', 20.0),
                                  (3, 1, '2024-02-20', 30.0), (4, 2, '2024-01-07', 400.0),
                                  (5, 2, '2024-03-01', 500.0), (6, 2, '2024-03-02', 600.0);
        INSERT INTO secrets VALUES ('api_key', 'sk-live-123');
        """
    )
    yield conn
    conn.close()


def run(db: sqlite3.Connection, sql: str, principal: str = ALICE) -> list[tuple[Any, ...]]:
    query = check_select(sql, scope=SCOPE, principal=principal)
    return db.execute(query.sql, dict(query.params)).fetchall()


REJECTED = [
    # stacked statements
    ("SELECT id FROM orders; DROP TABLE orders", "sql.single_statement"),
    ("SELECT id FROM orders; SELECT k, v FROM secrets", "sql.single_statement"),
    ("SELECT id FROM orders;\nDELETE FROM orders;", "sql.single_statement"),
    # comments hiding clauses
    ("SELECT id FROM orders WHERE customer_id = 2 -- AND 1 = 0", "sql.comment"),
    ("SELECT id FROM orders /* AND customer_id = 1 */ WHERE 1 = 1", "sql.comment"),
    ("SELECT id FROM orders WHERE 1 = 1 /* unterminated", "sql.comment"),
    ("-- just a comment", "sql.comment"),
    # not parseable / empty
    ("", "sql.parse"),
    ("SELECT FROM WHERE (", "sql.parse"),
    # writes and admin statements, also smuggled inside a CTE
    ("DELETE FROM orders", "sql.select_only"),
    ("UPDATE orders SET total_usd = 0", "sql.select_only"),
    ("INSERT INTO orders VALUES (9, 1, '2024-01-01', 1)", "sql.select_only"),
    ("REPLACE INTO orders VALUES (1, 2, '2024-01-01', 0)", "sql.select_only"),
    ("DROP TABLE secrets", "sql.select_only"),
    ("CREATE TABLE loot AS SELECT k, v FROM secrets", "sql.select_only"),
    ("ALTER TABLE orders ADD COLUMN x TEXT", "sql.select_only"),
    ("PRAGMA table_info(secrets)", "sql.select_only"),
    ("ATTACH DATABASE '/tmp/loot.db' AS loot", "sql.select_only"),
    ("VACUUM", "sql.select_only"),
    (
        "WITH x AS (INSERT INTO orders VALUES (9, 1, '2024', 1) RETURNING id) SELECT id FROM x",
        "sql.select_only",
    ),
    # catalog and pragma table-valued functions
    ("SELECT name, sql FROM sqlite_master", "sql.system_table"),
    ("SELECT sql FROM sqlite_schema", "sql.system_table"),
    ('SELECT name FROM "SQLITE_MASTER"', "sql.system_table"),
    ("SELECT name FROM main.sqlite_master", "sql.system_table"),
    ("SELECT name FROM pragma_table_info('secrets')", "sql.system_table"),
    ("SELECT id FROM orders UNION SELECT name FROM sqlite_temp_master", "sql.system_table"),
    ("SELECT value FROM json_each('[1, 2]')", "sql.table_function"),
    # dangerous or introspective functions
    ("SELECT load_extension('/tmp/evil.so')", "sql.function_denylist"),
    ("SELECT readfile('/etc/passwd')", "sql.function_denylist"),
    ("SELECT writefile('/tmp/x', 'y')", "sql.function_denylist"),
    ("SELECT length(randomblob(1000000000))", "sql.function_denylist"),
    ("SELECT sqlite_version()", "sql.function_denylist"),
    ("SELECT id FROM orders WHERE total_usd > LOAD_EXTENSION('x')", "sql.function_denylist"),
    ("SELECT printf('%s', name) FROM customers", "sql.function_denylist"),
    # star
    ("SELECT * FROM orders", "sql.no_star"),
    ("SELECT o.* FROM orders AS o", "sql.no_star"),
    ("SELECT * FROM secrets", "sql.no_star"),
    # tables outside the allowlist, incl. quoting and case tricks
    ("SELECT k, v FROM secrets", "sql.table_allowlist"),
    ('SELECT k FROM "secrets"', "sql.table_allowlist"),
    ("SELECT k FROM [SECRETS]", "sql.table_allowlist"),
    ("SELECT k FROM `SeCrEtS`", "sql.table_allowlist"),
    ("SELECT v FROM 'secrets'", "sql.table_allowlist"),
    ("SELECT k FROM main.secrets", "sql.table_allowlist"),
    ("SELECT id FROM temp.orders", "sql.table_allowlist"),
    ("SELECT id, total_usd FROM orders UNION SELECT k, v FROM secrets", "sql.table_allowlist"),
    ("SELECT id FROM orders INTERSECT SELECT k FROM secrets", "sql.table_allowlist"),
    ("SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM secrets)", "sql.table_allowlist"),
    ("SELECT id FROM orders WHERE id = (SELECT length(v) FROM secrets)", "sql.table_allowlist"),
    ("WITH x AS (SELECT k, v FROM secrets) SELECT k FROM x", "sql.table_allowlist"),
    ("WITH secrets AS (SELECT k FROM secrets) SELECT k FROM secrets", "sql.table_allowlist"),
    (
        "WITH a AS (SELECT k FROM b), b AS (SELECT id AS k FROM orders) SELECT k FROM a",
        "sql.table_allowlist",
    ),
    # CTE smuggling
    (
        "WITH orders AS (SELECT id, 1 AS customer_id FROM customers) SELECT id FROM orders",
        "sql.cte",
    ),
    ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n", "sql.cte"),
    ("SELECT x.id FROM (WITH s AS (SELECT id FROM orders) SELECT id FROM s) AS x", "sql.cte"),
    # hidden columns, incl. oracle-style reads in WHERE / ORDER BY and quoting tricks
    ("SELECT email FROM customers", "sql.column_allowlist"),
    ('SELECT "EMAIL" FROM customers', "sql.column_allowlist"),
    ("SELECT name FROM customers WHERE email LIKE 'a%'", "sql.column_allowlist"),
    ("SELECT name FROM customers ORDER BY email", "sql.column_allowlist"),
    ("SELECT name FROM customers UNION SELECT email FROM customers", "sql.column_allowlist"),
    ("SELECT rowid FROM orders", "sql.column_allowlist"),
    ("SELECT c.name FROM customers AS c WHERE c.email = 'bob@example.com'", "sql.column_allowlist"),
    (
        "SELECT o.id FROM orders AS o WHERE EXISTS (SELECT 1 FROM customers AS c "
        "WHERE c.id = o.customer_id AND c.email LIKE 'a%')",
        "sql.column_allowlist",
    ),
    ("SELECT id FROM orders AS o WHERE x.email = 'a'", "sql.column_allowlist"),
    ("SELECT main.orders.id FROM orders", "sql.column_allowlist"),
    ("SELECT id FROM customers WHERE id IN secrets", "sql.column_allowlist"),
    ("SELECT name FROM customers JOIN orders USING (email)", "sql.column_allowlist"),
    # joins and other syntax
    ("SELECT name FROM customers NATURAL JOIN orders", "sql.join"),
    ("SELECT o.id FROM orders AS o JOIN orders AS o ON 1 = 1", "sql.join"),
    ("SELECT id FROM orders WHERE customer_id = :principal OR :other = 1", "sql.construct"),
    ("SELECT id FROM orders WHERE customer_id = ?", "sql.construct"),
    ("SELECT sum(total_usd) OVER () FROM orders", "sql.construct"),
    ("SELECT id FROM orders WHERE id = x'01'", "sql.construct"),
    ("SELECT name FROM customers WHERE id IN orders", "sql.column_allowlist"),
    ("SELECT name COLLATE NOCASE FROM customers", "sql.function_denylist"),
    ("SELECT o.a FROM orders AS o(a, b, c, d)", "sql.column_allowlist"),
    ("SELECT o.id FROM orders AS o(id, b, c, d)", "sql.construct"),
    ("SELECT id FROM orders WHERE 1 = 1 " + " OR 1 = 1" * 4000, "sql.too_long"),
    ("SELECT " + "(" * 300 + "id" + ")" * 300 + " FROM orders", "sql.too_complex"),
]

# Legal reads that try to escape row-level security; the rewrite must contain them.
CONTAINED = [
    ("SELECT id FROM orders WHERE customer_id = 2 OR 1=1 ORDER BY id", [(1,), (2,), (3,)]),
    ("SELECT id FROM orders WHERE 'a'='a' OR customer_id <> 1 ORDER BY id", [(1,), (2,), (3,)]),
    ("SELECT id FROM orders WHERE customer_id = 2", []),
    ("SELECT id FROM orders WHERE NOT (customer_id = 1) OR NOT 0 ORDER BY id", [(1,), (2,), (3,)]),
    ("SELECT count(*), sum(total_usd) FROM orders WHERE 1 OR customer_id > 0", [(3, 60.0)]),
    ("SELECT name FROM customers WHERE 1=1 OR id = 2", [("alice",)]),
    ("SELECT id FROM orders WHERE id IN (SELECT id FROM orders WHERE customer_id = 2)", []),
    (
        "SELECT id FROM orders WHERE customer_id = 1 UNION ALL "
        "SELECT id FROM orders WHERE customer_id = 2 OR 1=1 ORDER BY id",
        [(1,), (1,), (2,), (2,), (3,), (3,)],
    ),
    ("SELECT name FROM customers UNION SELECT name FROM customers WHERE id = 2", [("alice",)]),
    ('SELECT id FROM "orders" WHERE 1=1 ORDER BY id', [(1,), (2,), (3,)]),
    ("SELECT id FROM [ORDERS] WHERE customer_id = 2 OR 1", [(1,), (2,), (3,)]),
    (
        "SELECT o.id FROM `Orders` AS o WHERE o.customer_id = 2 OR 'x' = 'x' ORDER BY 1",
        [(1,), (2,), (3,)],
    ),
    ('SELECT "ID" FROM OrDeRs WHERE "Customer_Id" = 2', []),
    (
        "WITH every AS (SELECT id, customer_id FROM orders) "
        "SELECT id FROM every WHERE customer_id = 2",
        [],
    ),
    ("SELECT x.id FROM (SELECT id FROM orders WHERE 1=1) AS x ORDER BY x.id", [(1,), (2,), (3,)]),
    ("SELECT (SELECT sum(total_usd) FROM orders WHERE 1=1) AS everyone", [(60.0,)]),
    (
        "SELECT c.name, o.id FROM customers AS c JOIN orders AS o ON o.customer_id = c.id OR 1=1 "
        "ORDER BY o.id",
        [("alice", 1), ("alice", 2), ("alice", 3)],
    ),
    (
        "SELECT c.name FROM customers AS c WHERE EXISTS "
        "(SELECT 1 FROM orders AS o WHERE o.customer_id = 2)",
        [],
    ),
    ("SELECT customer_id, count(*) FROM orders GROUP BY customer_id HAVING 1=1", [(1, 3)]),
    # An output alias named like a hidden column is expanded, never resolved to customers.email.
    (
        "SELECT o.total_usd AS email FROM orders AS o JOIN customers AS c "
        "ON c.id = o.customer_id WHERE email LIKE '%@%'",
        [],
    ),
    (
        "SELECT o.id, o.total_usd AS email FROM orders AS o JOIN customers AS c "
        "ON c.id = o.customer_id ORDER BY email || '' DESC",
        [(3, 30.0), (2, 20.0), (1, 10.0)],
    ),
]


def test_corpus_is_large_enough() -> None:
    assert len(REJECTED) + len(CONTAINED) >= 25


@pytest.mark.parametrize(
    ("sql", "rule"), REJECTED, ids=[f"reject-{i}" for i in range(len(REJECTED))]
)
def test_hostile_sql_is_rejected(sql: str, rule: str) -> None:
    with pytest.raises(UnsafeSql) as info:
        check_select(sql, scope=SCOPE, principal=ALICE)
    assert info.value.rule == rule, info.value.reason


@pytest.mark.parametrize(
    ("sql", "expected"), CONTAINED, ids=[f"contain-{i}" for i in range(len(CONTAINED))]
)
def test_hostile_reads_only_see_the_principals_rows(
    db: sqlite3.Connection, sql: str, expected: list[tuple[Any, ...]]
) -> None:
    assert run(db, sql) == expected


LEGIT = [
    ("SELECT id, total_usd FROM orders ORDER BY id", ALICE, [(1, 10.0), (2, 20.0), (3, 30.0)]),
    ("SELECT id FROM orders ORDER BY id", "2", [(4,), (5,), (6,)]),
    (
        "SELECT strftime('%Y-%m', placed_at) AS month, round(sum(total_usd), 2) AS spend "
        "FROM orders GROUP BY month ORDER BY month",
        ALICE,
        [("2024-01", 10.0), ("2024-02", 50.0)],
    ),
    (
        "SELECT c.name, count(o.id) AS n FROM customers AS c "
        "LEFT JOIN orders AS o ON o.customer_id = c.id GROUP BY c.name",
        "2",
        [("bob", 3)],
    ),
    (
        "WITH recent AS (SELECT id, total_usd FROM orders WHERE placed_at >= '2024-02-01') "
        "SELECT count(*) AS n, max(total_usd) FROM recent",
        ALICE,
        [(2, 30.0)],
    ),
    ("SELECT upper(name), length(name) FROM Customers", ALICE, [("ALICE", 5)]),
    (
        "SELECT id FROM orders WHERE total_usd BETWEEN 15 AND 35 AND placed_at LIKE '2024-02%' "
        "ORDER BY total_usd DESC LIMIT 1",
        ALICE,
        [(3,)],
    ),
]


@pytest.mark.parametrize(("sql", "principal", "expected"), LEGIT)
def test_legit_queries_pass(
    db: sqlite3.Connection, sql: str, principal: str, expected: list[tuple[Any, ...]]
) -> None:
    assert run(db, sql, principal) == expected


def test_safe_query_shape() -> None:
    query = check_select(
        "SELECT o.id FROM orders AS o WHERE o.total_usd > 5 OR 1=1", scope=SCOPE, principal="7"
    )
    assert isinstance(query, SafeQuery)
    assert query.params == {"principal": "7"}
    assert query.tables == ("orders",)
    assert query.sql.endswith('WHERE (o.total_usd > 5 OR 1 = 1) AND "o"."customer_id" = :principal')


def test_every_occurrence_gets_a_filter() -> None:
    query = check_select(
        "SELECT a.id FROM orders AS a JOIN orders AS b ON a.id = b.id "
        "WHERE a.id IN (SELECT id FROM orders) UNION SELECT id FROM orders",
        scope=SCOPE,
        principal=ALICE,
    )
    assert query.sql.count(":principal") == 4


def test_error_is_a_tether_error_and_never_echoes_long_sql() -> None:
    long_literal = "A" * 500
    long_name = "t" * 500
    for sql in (
        f"SELECT k FROM secrets WHERE v = '{long_literal}'",
        f"SELECT id FROM {long_name}",
        f"SELECT {long_name} FROM orders",
        f"SELECT {long_name}(id) FROM orders",
        f"SELECT id FROM orders WHERE '{long_literal}' = (",
    ):
        with pytest.raises(TetherError) as info:
            check_select(sql, scope=SCOPE, principal=ALICE)
        assert isinstance(info.value, UnsafeSql)
        assert "A" * 81 not in str(info.value) and "t" * 81 not in str(info.value)
        assert "try again" in str(info.value)


def test_scope_names_are_case_insensitive(db: sqlite3.Connection) -> None:
    scope = SqlScope(
        tables={"Orders": frozenset({"ID", "Customer_Id"})}, row_filters={"ORDERS": "customer_id"}
    )
    query = check_select("SELECT id FROM orders WHERE 1=1", scope=scope, principal="2")
    assert db.execute(query.sql, dict(query.params)).fetchall() == [(4,), (5,), (6,)]


ATOMS = st.sampled_from(
    [
        "1=1",
        "'a'='a'",
        "1",
        "NOT 0",
        "customer_id = 1",
        "customer_id = 2",
        "customer_id <> 1",
        "customer_id IN (1, 2)",
        "id > 2",
        "total_usd < 100",
        "placed_at >= '2024-02-01'",
        "customer_id IS NOT NULL",
        "id IN (SELECT id FROM orders WHERE 1=1)",
        "EXISTS (SELECT 1 FROM orders AS x WHERE x.customer_id = 2)",
        "customer_id IN (SELECT customer_id FROM orders WHERE customer_id = 2)",
        "id IN (SELECT o.id FROM orders AS o WHERE o.customer_id <> 1 OR 1)",
        "total_usd > (SELECT avg(total_usd) FROM orders WHERE 1)",
        "lower('X') = 'x'",
    ]
)
FRAGMENTS = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(" ".join),
        inner.map(lambda f: f"({f})"),
        inner.map(lambda f: f"NOT ({f})"),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(fragment=FRAGMENTS, principal=st.sampled_from(["1", "2", "3", "1 OR 1=1", "' OR ''='"]))
def test_generated_where_clauses_never_leak_other_customers(
    db: sqlite3.Connection, fragment: str, principal: str
) -> None:
    for sql in (
        f"SELECT id, customer_id FROM orders WHERE {fragment}",
        f"SELECT id, customer_id FROM orders WHERE customer_id = 1 UNION "
        f"SELECT id, customer_id FROM orders WHERE {fragment} OR 1=1",
        f"SELECT x.id, x.customer_id FROM (SELECT id, customer_id FROM orders "
        f"WHERE {fragment}) AS x",
        f"WITH mine AS (SELECT id, customer_id FROM orders WHERE {fragment}) "
        "SELECT id, customer_id FROM mine",
    ):
        rows = run(db, sql, principal)
        assert all(str(customer_id) == principal for _, customer_id in rows), (sql, rows)
        assert all(ALL_ORDERS[order_id] == customer_id for order_id, customer_id in rows)
