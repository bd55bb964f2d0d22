"""Guard for free-form, read-only SQL proposed by a model.

``check_select(sql, scope=..., principal=...)`` parses one statement with sqlglot (SQLite
dialect), checks it against a :class:`SqlScope` and returns a :class:`SafeQuery`: SQL
regenerated from the checked tree, with row-level-security predicates injected and the
principal bound as the named parameter ``:principal``. Nothing is executed here. Any
violation raises :class:`UnsafeSql`; its ``rule`` is one of (checked in this order):

``sql.too_long``         the text is longer than 20,000 characters.
``sql.comment``          ``--`` or ``/* */`` comments (they hide clauses from reviewers).
``sql.parse``            the text is empty or does not parse as SQLite.
``sql.single_statement`` more than one statement (stacked ``;``).
``sql.select_only``      not a SELECT / UNION / INTERSECT / EXCEPT, or an INSERT, UPDATE,
                         DELETE, REPLACE, CREATE, DROP, ALTER, PRAGMA, ATTACH, VACUUM...
                         anywhere in the tree (CTE bodies included).
``sql.system_table``     sqlite_* tables (sqlite_master, sqlite_schema...) and pragma_*
                         table-valued functions.
``sql.table_function``   any other table-valued function in FROM (json_each...).
``sql.function_denylist`` a function outside a small allowlist of aggregates and scalars
                         (count, sum, avg, min, max, lower, substr, strftime, coalesce...);
                         load_extension, readfile, randomblob, sqlite_version... are refused.
``sql.no_star``          ``*`` or ``t.*``; only ``count(*)`` may use a star.
``sql.construct``        syntax outside a small allowlist: parameters, window functions,
                         COLLATE, blobs, bit operators, a table used outside FROM/JOIN...
``sql.cte``              WITH below the top level, WITH RECURSIVE, duplicate CTE names or
                         CTE names that shadow an allowed table or a sqlite_* name.
``sql.join``             NATURAL joins (they compare columns implicitly) and duplicate aliases.
``sql.table_allowlist``  a table not in ``scope.tables``, or a schema-qualified table.
``sql.column_allowlist`` a column that is not an allowed column of its table. Unqualified
                         columns must be provided by a source of their own SELECT; qualified
                         ones by the named source (there or in an enclosing query). An
                         unqualified name that only matches an output alias of its SELECT is
                         replaced by the aliased expression, so SQLite cannot resolve it to
                         a hidden column of the same name.

Names are compared case-insensitively after unquoting ("orders", [ORDERS], `Orders`).
CTE bodies are checked like any subquery; inside a CTE body only earlier CTEs are visible.
The allowed columns of a table must exist in it.

Row-level security: for every FROM/JOIN occurrence of a table in ``scope.row_filters`` (in
every SELECT: subqueries, CTE bodies, UNION branches) ``<alias>.<column> = :principal`` is
AND-ed to that SELECT's WHERE, with the original WHERE wrapped in parentheses, so a
tautology such as ``OR 1=1`` cannot escape it.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from tether.errors import TetherError

__all__ = ["SafeQuery", "SqlScope", "UnsafeSql", "check_select"]

_MAX_SQL_CHARS = 20_000
_DIALECT = "sqlite"
_FROM = "from_" if "from_" in exp.Select.arg_types else "from"
_WITH = "with_" if "with_" in exp.Select.arg_types else "with"
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SYSTEM_PREFIXES = ("sqlite_", "pragma_")

_STATEMENTS: tuple[type[exp.Expression], ...] = (
    exp.DML, exp.DDL, exp.Drop, exp.Alter, exp.Command, exp.Pragma, exp.Attach, exp.Detach,
    exp.Transaction, exp.Commit, exp.Rollback, exp.Set, exp.Use, exp.Copy, exp.Into,
    exp.Returning,
)  # fmt: skip
_FUNCTIONS: frozenset[type[exp.Expression]] = frozenset({
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Least, exp.Greatest, exp.GroupConcat,
    exp.Lower, exp.Upper, exp.Substring, exp.Length, exp.Trim, exp.Replace, exp.StrPosition,
    exp.Coalesce, exp.Nullif, exp.Round, exp.Abs, exp.Date, exp.TimeToStr,
    exp.TsOrDsToTimestamp, exp.Cast, exp.Case, exp.If, exp.CurrentDate, exp.CurrentTime,
    exp.CurrentTimestamp,
})  # fmt: skip
_ANONYMOUS_FUNCTIONS = frozenset({
    "total", "date", "time", "datetime", "julianday", "strftime", "unixepoch", "ifnull",
    "iif", "substr", "instr", "trim", "ltrim", "rtrim",
})  # fmt: skip
_NODES: frozenset[type[exp.Expression]] = _FUNCTIONS | {
    exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.From, exp.Join,
    exp.Table, exp.TableAlias, exp.Alias, exp.Identifier, exp.Column, exp.Where, exp.Group,
    exp.Having, exp.Order, exp.Ordered, exp.Limit, exp.Offset, exp.Distinct, exp.With,
    exp.CTE, exp.Exists, exp.Paren, exp.Tuple, exp.Literal, exp.Null, exp.Boolean, exp.And,
    exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ, exp.GT, exp.GTE,
    exp.LT, exp.LTE, exp.Is, exp.In, exp.Between, exp.Like, exp.Glob, exp.Add, exp.Sub,
    exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe, exp.DataType, exp.Star, exp.Anonymous,
}  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class SqlScope:
    """What a query may read."""

    tables: Mapping[str, frozenset[str]]
    """Allowed table -> its allowed columns (each must exist in the table)."""
    row_filters: Mapping[str, str]
    """Table -> column that must equal the principal, e.g. ``{"orders": "customer_id"}``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SafeQuery:
    """A checked query, ready for ``sqlite3.Connection.execute(sql, params)``."""

    sql: str
    """Rewritten SQL (SQLite dialect) with row-level-security predicates on ``:principal``."""
    params: Mapping[str, str]
    """``{"principal": <principal id>}`` (a plain dict, as sqlite3 requires)."""
    tables: tuple[str, ...]
    """Sorted names of the real tables the query reads."""


class UnsafeSql(TetherError):
    """Proposed SQL was refused; nothing was executed."""

    def __init__(self, *, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(
            f"SQL refused [{rule}]: {reason}. Write one read-only SELECT, without comments, "
            "that names only the allowed tables and columns, and try again."
        )


def _norm(name: str) -> str:
    return name.translate(_LOWER)  # SQLite folds ASCII letters only


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _outputs(query: exp.Expression, alias: exp.Expression | None) -> frozenset[str]:
    """Column names a derived table or CTE provides (only names SQLite surely uses)."""
    if isinstance(alias, exp.TableAlias) and alias.columns:
        return frozenset(_norm(c.name) for c in alias.columns)
    while isinstance(query, exp.SetOperation):  # SQLite names columns after the left-most
        query = query.this
    if not isinstance(query, exp.Select):
        return frozenset()
    return frozenset(
        _norm(e.alias if isinstance(e, exp.Alias) else e.name)
        for e in query.expressions
        if isinstance(e, exp.Alias | exp.Column)
    )


def _enclosing_query(node: exp.Expression) -> exp.Expression | None:
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select | exp.SetOperation):
        parent = parent.parent
    return parent


@dataclass(frozen=True, slots=True)
class _Source:
    key: str  # alias or table name, normalised ("" for an unaliased subquery)
    table: str | None  # real table name, None for a subquery or CTE reference
    columns: frozenset[str]
    node: exp.Expression


def _parse(sql: str) -> exp.Expression:
    if len(sql) > _MAX_SQL_CHARS:
        raise UnsafeSql(rule="sql.too_long", reason=f"query exceeds {_MAX_SQL_CHARS} chars")
    try:
        tokens = sqlglot.tokenize(sql, read=_DIALECT)
    except SqlglotError:
        rule = "sql.comment" if "--" in sql or "/*" in sql else "sql.parse"
        raise UnsafeSql(rule=rule, reason="the query does not tokenize as SQLite") from None
    if any(t.comments for t in tokens) or (not tokens and sql.strip()):
        raise UnsafeSql(rule="sql.comment", reason="comments are not allowed")
    try:
        statements = [s for s in sqlglot.parse(sql, read=_DIALECT) if s is not None]
    except ParseError as e:
        where = e.errors[0] if e.errors else {}
        reason = f"does not parse (line {where.get('line')}, column {where.get('col')})"
        raise UnsafeSql(rule="sql.parse", reason=reason) from None
    except SqlglotError:
        raise UnsafeSql(rule="sql.parse", reason="the query does not parse as SQLite") from None
    if not statements:
        raise UnsafeSql(rule="sql.parse", reason="the query is empty")
    if len(statements) > 1:
        reason = f"{len(statements)} statements; send exactly one"
        raise UnsafeSql(rule="sql.single_statement", reason=reason)
    return statements[0]


def _check_nodes(tree: exp.Expression) -> None:
    nodes = list(tree.walk())
    bad = [n for n in nodes if isinstance(n, _STATEMENTS)]
    if bad or not isinstance(tree, exp.Select | exp.SetOperation):
        reason = f"only SELECT is allowed, found {type((bad or [tree])[0]).__name__.upper()}"
        raise UnsafeSql(rule="sql.select_only", reason=reason)
    for node in nodes:
        if isinstance(node, exp.Table):
            func = node.this if isinstance(node.this, exp.Func) else None
            name = _norm(func.name if func is not None else node.name)
            if name.startswith(_SYSTEM_PREFIXES) or name == "dbstat":
                reason = f"system table {_clip(name)} is not readable"
                raise UnsafeSql(rule="sql.system_table", reason=reason)
            if func is not None:
                reason = f"table-valued function {_clip(name)} is not allowed"
                raise UnsafeSql(rule="sql.table_function", reason=reason)
            holder = node.parent
            if not isinstance(holder, exp.From | exp.Join) or not isinstance(
                holder.parent, exp.Select
            ):
                reason = "a table may only appear in a SELECT's FROM or JOIN (no nested joins)"
                raise UnsafeSql(rule="sql.construct", reason=reason)
    for node in nodes:
        if isinstance(node, exp.Anonymous):
            name = _norm(node.name)
        elif isinstance(node, exp.Func) and type(node) not in _NODES:  # And/Or are Funcs too
            name = _norm(node.sql_name())
        else:
            continue
        if name not in _ANONYMOUS_FUNCTIONS or not isinstance(node, exp.Anonymous):
            reason = f"function {_clip(name)} is not allowed"
            raise UnsafeSql(rule="sql.function_denylist", reason=reason)
    for node in nodes:
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            reason = "SELECT * is not allowed; list the columns you need"
            raise UnsafeSql(rule="sql.no_star", reason=reason)
    for node in nodes:
        if type(node) not in _NODES:
            reason = f"{type(node).__name__} syntax is not allowed"
            raise UnsafeSql(rule="sql.construct", reason=reason)


class _Checker:
    def __init__(self, tree: exp.Expression, scope: SqlScope) -> None:
        self.tables = {_norm(t): frozenset(map(_norm, c)) for t, c in scope.tables.items()}
        self.filters = {_norm(t): c for t, c in scope.row_filters.items()}
        self.used: set[str] = set()
        self.ctes: list[tuple[str, frozenset[str], exp.Expression]] = []
        for with_ in tree.find_all(exp.With):
            if with_.parent is not tree:
                raise UnsafeSql(rule="sql.cte", reason="WITH is only allowed at the start")
        with_ = tree.args.get(_WITH)
        if with_ is None:
            return
        if with_.args.get("recursive"):
            raise UnsafeSql(rule="sql.cte", reason="WITH RECURSIVE is not allowed")
        for cte in with_.expressions:
            name = _norm(cte.alias)
            if name in self.tables or name.startswith(_SYSTEM_PREFIXES) or name in self._names():
                raise UnsafeSql(rule="sql.cte", reason=f"CTE name {_clip(name)} is taken")
            self.ctes.append((name, _outputs(cte.this, cte.args.get("alias")), cte))

    def _names(self, before: exp.Expression | None = None) -> dict[str, frozenset[str]]:
        out: dict[str, frozenset[str]] = {}
        for name, columns, cte in self.ctes:
            if cte is before:
                break
            out[name] = columns
        return out

    def sources(self, query: exp.Expression | None) -> Iterator[_Source]:
        if not isinstance(query, exp.Select):
            return
        from_ = query.args.get(_FROM)
        joins: list[exp.Expression] = query.args.get("joins") or []
        if any(j.args.get("method") for j in joins):
            raise UnsafeSql(rule="sql.join", reason="NATURAL joins are not allowed; use ON")
        seen: set[str] = set()
        for item in ([from_.this] if from_ is not None else []) + [j.this for j in joins]:
            key = _norm(item.alias_or_name)
            if key and key in seen:
                raise UnsafeSql(rule="sql.join", reason=f"alias {_clip(key)} is used twice")
            seen.add(key)
            if isinstance(item, exp.Subquery):
                yield _Source(key, None, _outputs(item.this, item.args.get("alias")), item)
            elif isinstance(item, exp.Table):
                yield self._table(key, item)
            else:
                reason = f"{type(item).__name__} in FROM is not allowed"
                raise UnsafeSql(rule="sql.construct", reason=reason)

    def _table(self, key: str, table: exp.Table) -> _Source:
        name = _norm(table.name)
        cte: exp.Expression | None = table.parent
        while cte is not None and not isinstance(cte, exp.CTE):
            cte = cte.parent
        visible = self._names(before=cte)
        if name in visible and not table.args.get("db") and not table.args.get("catalog"):
            return _Source(key, None, visible[name], table)
        if table.args.get("db") or table.args.get("catalog") or name not in self.tables:
            reason = f"table {_clip(table.sql(dialect=_DIALECT))} is not allowed"
            raise UnsafeSql(rule="sql.table_allowlist", reason=reason)
        self.used.add(name)
        return _Source(key, name, self.tables[name], table)

    def check_join_using(self, select: exp.Select) -> None:
        sources = list(self.sources(select))
        for i, join in enumerate(select.args.get("joins") or [], start=1):
            for ident in join.args.get("using") or []:
                name = _norm(ident.name)
                if name not in sources[i].columns or all(
                    name not in s.columns for s in sources[:i]
                ):
                    reason = f"USING column {_clip(name)} is not allowed on both sides"
                    raise UnsafeSql(rule="sql.column_allowlist", reason=reason)

    def check_column(self, column: exp.Column) -> None:
        name, qualifier = _norm(column.name), _norm(column.table)
        query = _enclosing_query(column)
        if column.args.get("db") or column.args.get("catalog"):
            reason = "schema-qualified columns are not allowed"
        elif isinstance(query, exp.SetOperation) or query is None:
            if not qualifier and query is not None and name in _outputs(query, None):
                return
            reason = f"{_clip(name)} is not an output column of the compound SELECT"
        elif qualifier:
            scope: exp.Expression | None = query
            while scope is not None:
                match = next((s for s in self.sources(scope) if s.key == qualifier), None)
                if match is not None and name in match.columns:
                    return
                if match is not None:
                    break
                scope = _enclosing_query(scope)
            reason = f"column {_clip(qualifier)}.{_clip(name)} is not allowed"
        elif any(name in s.columns for s in self.sources(query)):
            return
        else:
            aliased = next(
                (e for e in query.expressions if isinstance(e, exp.Alias) and _norm(e.alias) == name),
                None,
            )
            top: exp.Expression = column
            while top.parent is not query and top.parent is not None:
                top = top.parent
            if aliased is not None and top.arg_key != "expressions":
                column.replace(exp.paren(aliased.this.copy()))
                return
            reason = f"column {_clip(name)} is not allowed here; qualify it or pick another"
        raise UnsafeSql(rule="sql.column_allowlist", reason=reason)

    def inject_row_filters(self, select: exp.Select) -> None:
        predicates: list[exp.Expression] = [
            exp.EQ(
                this=exp.column(self.filters[s.table], table=s.node.alias_or_name, quoted=True),
                expression=exp.Placeholder(this="principal"),
            )
            for s in self.sources(select)
            if s.table is not None and s.table in self.filters
        ]
        if not predicates:
            return
        where = select.args.get("where")
        if where is not None:
            predicates.insert(0, exp.paren(where.this))  # moved, not copied: keeps subqueries
        select.set("where", exp.Where(this=exp.and_(*predicates)))


def check_select(sql: str, *, scope: SqlScope, principal: str) -> SafeQuery:
    """Check model-proposed ``sql`` against ``scope``; return it rewritten for ``principal``.

    Raises :class:`UnsafeSql` naming the violated rule. See the module docstring.
    """
    tree = _parse(sql)
    _check_nodes(tree)
    checker = _Checker(tree, scope)
    selects = list(tree.find_all(exp.Select))
    for select in selects:
        checker.check_join_using(select)
    for column in list(tree.find_all(exp.Column)):
        checker.check_column(column)
    for select in reversed(list(tree.find_all(exp.Select))):  # innermost first
        checker.inject_row_filters(select)
    return SafeQuery(
        sql=tree.sql(dialect=_DIALECT),
        params={"principal": principal},
        tables=tuple(sorted(checker.used)),
    )
