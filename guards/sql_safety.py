"""Guard for free-form, read-only SQL proposed by a model.

``check_select`` parses one statement with sqlglot (SQLite dialect), checks it against a
:class:`SqlScope` and returns a :class:`SafeQuery`: SQL regenerated from the checked tree with
row-level-security predicates on the named parameter ``:principal``. Nothing is executed here.
A violation raises :class:`UnsafeSql`; its ``rule`` is, in the order checked:

- ``sql.too_long``: over 20,000 characters. ``sql.too_complex``: nested too deeply to parse.
- ``sql.comment``: ``--`` or ``/* */`` comments (they hide clauses).
- ``sql.parse``: empty, or not SQLite. ``sql.single_statement``: stacked ``;`` statements.
- ``sql.select_only``: not a SELECT (or UNION/INTERSECT/EXCEPT of SELECTs), or an INSERT,
  UPDATE, DELETE, REPLACE, CREATE, DROP, ALTER, PRAGMA, ATTACH, VACUUM... anywhere in the tree.
- ``sql.system_table``: sqlite_* tables (sqlite_master, sqlite_schema...), pragma_* table
  functions. ``sql.table_function``: other table-valued functions (json_each...).
- ``sql.function_denylist``: a function outside an allowlist of plain aggregates and scalars
  (count, sum, avg, min, max, lower, upper, substr, length, coalesce, round, abs, date,
  strftime...); load_extension, readfile, randomblob, sqlite_version... are refused.
- ``sql.no_star``: ``*`` or ``t.*`` (``count(*)`` is fine).
- ``sql.construct``: syntax outside a small allowlist (parameters, window functions, blobs,
  bit operators, VALUES, parenthesised joins, a table outside FROM/JOIN...).
- ``sql.cte``: WITH below the top level, WITH RECURSIVE, or a CTE name that repeats or
  shadows an allowed table or a sqlite_* name. Inside a CTE body only earlier CTEs are visible.
- ``sql.join``: NATURAL joins (implicit columns) and an alias used twice in one FROM.
- ``sql.table_allowlist``: a table not in ``scope.tables``, or a schema-qualified one. Every
  FROM/JOIN counts: subqueries, CTE bodies, UNION branches. Names are compared
  case-insensitively after unquoting (``"orders"``, ``[ORDERS]``, backticks).
- ``sql.column_allowlist``: a column that is not allowed (allowed ones must exist). Unqualified
  columns must come from a source of their own SELECT; qualified ones from the named source,
  there or in an enclosing query. An unqualified name matching only an output alias of its
  SELECT is replaced by the aliased expression, so it cannot resolve to a hidden column.

Row-level security: for every FROM/JOIN occurrence of a table in ``scope.row_filters``,
``<alias>.<column> = :principal`` is AND-ed to that SELECT's WHERE, the original WHERE wrapped
in parentheses, so a tautology such as ``OR 1=1`` cannot escape it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError

from tether.errors import TetherError

__all__ = ["SafeQuery", "SqlScope", "UnsafeSql", "check_select"]

_MAX_CHARS = 20_000
_DIALECT = "sqlite"
_FROM = "from_" if "from_" in exp.Select.arg_types else "from"
_WITH = "with_" if "with_" in exp.Select.arg_types else "with"
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SYSTEM = ("sqlite_", "pragma_", "dbstat")
_STATEMENTS: tuple[type[exp.Expr], ...] = (
    exp.DML, exp.DDL, exp.Drop, exp.Alter, exp.Command, exp.Pragma, exp.Attach, exp.Detach,
    exp.Transaction, exp.Commit, exp.Rollback, exp.Set, exp.Use, exp.Copy, exp.Into,
    exp.Returning,
)  # fmt: skip
_FUNCTIONS: frozenset[type[exp.Expr]] = frozenset({
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Least, exp.Greatest, exp.GroupConcat,
    exp.Lower, exp.Upper, exp.Substring, exp.Length, exp.Trim, exp.Replace, exp.StrPosition,
    exp.Coalesce, exp.Nullif, exp.Round, exp.Abs, exp.Date, exp.TimeToStr, exp.Cast, exp.Case,
    exp.TsOrDsToTimestamp, exp.If, exp.CurrentDate, exp.CurrentTime, exp.CurrentTimestamp,
})  # fmt: skip
_NAMED_FUNCTIONS = frozenset({  # names sqlglot leaves as exp.Anonymous
    "total", "date", "time", "datetime", "julianday", "strftime", "unixepoch", "ifnull",
    "iif", "substr", "instr", "trim", "ltrim", "rtrim",
})  # fmt: skip
_NODES: frozenset[type[exp.Expr]] = _FUNCTIONS | {
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
    """What a query may read: allowed tables and columns, and per-table row filters."""

    tables: Mapping[str, frozenset[str]]  # allowed table -> allowed columns (which must exist)
    row_filters: Mapping[str, str]  # table -> column equal to the principal, e.g. customer_id


@dataclass(frozen=True, kw_only=True, slots=True)
class SafeQuery:
    """A checked query, ready for ``sqlite3.Connection.execute(q.sql, q.params)``."""

    sql: str  # rewritten SQL (SQLite dialect) with row-level security on :principal
    params: Mapping[str, str]  # {"principal": <principal id>}, a plain dict as sqlite3 requires
    tables: tuple[str, ...]  # sorted names of the real tables read


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


def _clip(text: str) -> str:
    return text if len(text) <= 30 else text[:27] + "..."


def _refuse(rule: str, reason: str) -> UnsafeSql:
    return UnsafeSql(rule=f"sql.{rule}", reason=reason)


def _outputs(query: exp.Expr, alias: exp.Expr | None) -> frozenset[str]:
    """Column names a subquery or CTE surely provides under SQLite's naming."""
    if isinstance(alias, exp.TableAlias) and alias.columns:
        return frozenset(_norm(c.name) for c in alias.columns)
    while isinstance(query, exp.SetOperation):  # named after the left-most SELECT
        query = query.this
    if not isinstance(query, exp.Select):
        return frozenset()
    return frozenset(
        _norm(e.alias if isinstance(e, exp.Alias) else e.name)
        for e in query.expressions
        if isinstance(e, exp.Alias | exp.Column)
    )


def _enclosing_query(node: exp.Expr) -> exp.Expr | None:
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select | exp.SetOperation):
        parent = parent.parent
    return parent


def _parse(sql: str) -> exp.Expr:
    if len(sql) > _MAX_CHARS:
        raise _refuse("too_long", f"the query exceeds {_MAX_CHARS} characters")
    try:
        tokens = sqlglot.tokenize(sql, read=_DIALECT)
    except SqlglotError:
        rule = "comment" if "--" in sql or "/*" in sql else "parse"
        raise _refuse(rule, "the query does not tokenize as SQLite") from None
    if any(t.comments for t in tokens) or (not tokens and sql.strip()):
        raise _refuse("comment", "comments are not allowed")
    try:
        statements = [s for s in sqlglot.parse(sql, read=_DIALECT) if s is not None]
    except ParseError as e:
        at = e.errors[0] if e.errors else {}
        raise _refuse("parse", f"not SQLite (line {at.get('line')}, col {at.get('col')})") from None
    except SqlglotError:
        raise _refuse("parse", "the query does not parse as SQLite") from None
    if len(statements) != 1:
        rule = "single_statement" if statements else "parse"
        raise _refuse(rule, f"{len(statements)} statements; send exactly one")
    return statements[0]


def _check_nodes(tree: exp.Expr) -> None:
    nodes = list(tree.walk())
    bad = [n for n in nodes if isinstance(n, _STATEMENTS)]
    if bad or not isinstance(tree, exp.Select | exp.SetOperation):
        found = type((bad or [tree])[0]).__name__.upper()
        raise _refuse("select_only", f"only SELECT is allowed, found {found}")
    for node in nodes:
        if isinstance(node, exp.Table):
            func = node.this if isinstance(node.this, exp.Func) else None
            name = _clip(_norm(func.name if func is not None else node.name))
            if name.startswith(_SYSTEM):
                raise _refuse("system_table", f"system table {name} is not readable")
            if func is not None:
                raise _refuse("table_function", f"table function {name} is not allowed")
            if not isinstance(node.parent, exp.From | exp.Join) or not isinstance(
                node.parent.parent, exp.Select
            ):
                raise _refuse("construct", "tables belong in a SELECT's FROM or JOIN only")
    for node in nodes:
        if isinstance(node, exp.Anonymous) and _norm(node.name) not in _NAMED_FUNCTIONS:
            name = node.name
        elif isinstance(node, exp.Func) and type(node) not in _NODES:  # And/Or are Funcs too
            name = node.sql_name()
        else:
            continue
        raise _refuse("function_denylist", f"function {_clip(_norm(name))} is not allowed")
    if any(isinstance(n, exp.Star) and not isinstance(n.parent, exp.Count) for n in nodes):
        raise _refuse("no_star", "SELECT * is not allowed; list the columns you need")
    for node in nodes:
        if type(node) not in _NODES:
            raise _refuse("construct", f"{type(node).__name__} syntax is not allowed")


@dataclass(frozen=True, slots=True)
class _Source:
    key: str  # alias or table name, normalised ("" for an unaliased subquery)
    table: str | None  # real table name; None for a subquery or a CTE reference
    columns: frozenset[str]
    node: exp.Expr


class _Checker:
    def __init__(self, tree: exp.Expr, scope: SqlScope) -> None:
        self.tables = {_norm(t): frozenset(map(_norm, c)) for t, c in scope.tables.items()}
        self.filters = {_norm(t): c for t, c in scope.row_filters.items()}
        self.used: set[str] = set()
        self.ctes: list[tuple[str, frozenset[str], exp.Expr]] = []
        if any(w.parent is not tree for w in tree.find_all(exp.With)):
            raise _refuse("cte", "WITH is only allowed at the start of the query")
        with_ = tree.args.get(_WITH)
        if isinstance(with_, exp.With) and with_.args.get("recursive"):
            raise _refuse("cte", "WITH RECURSIVE is not allowed")
        for cte in with_.expressions if isinstance(with_, exp.With) else []:
            name = _norm(cte.alias)
            if name in self.tables or name.startswith(_SYSTEM) or name in self.visible(None):
                raise _refuse("cte", f"CTE name {_clip(name)} is taken")
            self.ctes.append((name, _outputs(cte.this, cte.args.get("alias")), cte))

    def visible(self, before: exp.Expr | None) -> dict[str, frozenset[str]]:
        """CTEs visible from inside the CTE ``before`` (all of them when None)."""
        out: dict[str, frozenset[str]] = {}
        for name, columns, cte in self.ctes:
            if cte is before:
                break
            out[name] = columns
        return out

    def sources(self, query: exp.Expr | None) -> list[_Source]:
        if not isinstance(query, exp.Select):
            return []
        from_, joins = query.args.get(_FROM), list(query.args.get("joins") or [])
        if any(j.args.get("method") for j in joins):
            raise _refuse("join", "NATURAL joins are not allowed; join with ON")
        out: list[_Source] = []
        for item in ([from_.this] if from_ is not None else []) + [j.this for j in joins]:
            key = _norm(item.alias_or_name)
            if key and any(s.key == key for s in out):
                raise _refuse("join", f"alias {_clip(key)} is used twice; rename one")
            if isinstance(item, exp.Subquery):
                out.append(_Source(key, None, _outputs(item.this, item.args.get("alias")), item))
            elif isinstance(item, exp.Table):
                out.append(self._table(key, item))
            else:
                raise _refuse("construct", f"{type(item).__name__} in FROM is not allowed")
        for i, join in enumerate(joins, start=len(out) - len(joins)):
            for ident in join.args.get("using") or []:
                name = _norm(ident.name)
                if name not in out[i].columns or all(name not in s.columns for s in out[:i]):
                    raise _refuse("column_allowlist", f"USING {_clip(name)} is not allowed")
        return out

    def _table(self, key: str, table: exp.Table) -> _Source:
        name, qualified = _norm(table.name), bool(table.args.get("db") or table.args.get("catalog"))
        cte = table.parent
        while cte is not None and not isinstance(cte, exp.CTE):
            cte = cte.parent
        visible = self.visible(cte)
        if name in visible and not qualified:
            return _Source(key, None, visible[name], table)
        if qualified or name not in self.tables:
            reason = f"table {_clip(table.sql(dialect=_DIALECT))} is not allowed"
            raise _refuse("table_allowlist", reason)
        self.used.add(name)
        return _Source(key, name, self.tables[name], table)

    def check_column(self, column: exp.Column) -> None:
        name, qualifier = _norm(column.name), _norm(column.table)
        query = _enclosing_query(column)
        if column.args.get("db") or column.args.get("catalog"):
            reason = "schema-qualified columns are not allowed"
        elif query is None or isinstance(query, exp.SetOperation):
            if query is not None and not qualifier and name in _outputs(query, None):
                return
            reason = f"{_clip(name)} is not an output column of the compound SELECT"
        elif qualifier:
            scope: exp.Expr | None = query
            while scope is not None:  # innermost match wins, as in SQLite
                match = next((s for s in self.sources(scope) if s.key == qualifier), None)
                if match is not None:
                    if name in match.columns:
                        return
                    break
                scope = _enclosing_query(scope)
            reason = f"column {_clip(qualifier)}.{_clip(name)} is not allowed"
        elif any(name in s.columns for s in self.sources(query)):
            return
        else:
            aliased = [e for e in query.expressions if isinstance(e, exp.Alias) and _norm(e.alias) == name]
            top: exp.Expr = column
            while top.parent is not None and top.parent is not query:
                top = top.parent
            if aliased and top.arg_key != "expressions":
                column.replace(exp.paren(aliased[0].this.copy()))
                return
            reason = f"column {_clip(name)} is not allowed here (correlated ones need a qualifier)"
        raise _refuse("column_allowlist", reason)

    def inject_row_filters(self, select: exp.Select) -> None:
        predicates: list[exp.Expr] = [
            exp.EQ(
                this=exp.column(self.filters[s.table], table=s.node.alias_or_name, quoted=True),
                expression=exp.Placeholder(this="principal"),
            )
            for s in self.sources(select)
            if s.table is not None and s.table in self.filters
        ]
        where = select.args.get("where")
        if predicates and isinstance(where, exp.Where):
            predicates.insert(0, exp.paren(where.this))  # moved, not copied: keeps subqueries
        if predicates:
            select.set("where", exp.Where(this=exp.and_(*predicates)))


def check_select(sql: str, *, scope: SqlScope, principal: str) -> SafeQuery:
    """Check model-proposed ``sql`` against ``scope``; return it rewritten for ``principal``.

    Raises :class:`UnsafeSql` naming the violated rule (see the module docstring).
    """
    try:
        tree = _parse(sql)
        _check_nodes(tree)
        checker = _Checker(tree, scope)
        for select in tree.find_all(exp.Select):
            checker.sources(select)  # table allowlist, joins, USING
        for column in list(tree.find_all(exp.Column)):
            checker.check_column(column)
        for select in reversed(list(tree.find_all(exp.Select))):  # innermost first
            checker.inject_row_filters(select)
        # Raise rather than let the generator silently drop what SQLite cannot express.
        rewritten = tree.sql(dialect=_DIALECT, unsupported_level=ErrorLevel.RAISE)
    except RecursionError:
        raise _refuse("too_complex", "the query is nested too deeply; simplify it") from None
    except SqlglotError:
        raise _refuse("construct", "the query uses syntax SQLite cannot express") from None
    params = {"principal": principal}
    return SafeQuery(sql=rewritten, params=params, tables=tuple(sorted(checker.used)))
