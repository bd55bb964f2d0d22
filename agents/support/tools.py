"""The support desk's tools, with typed contracts.

Read tools: lookup_customer, lookup_order, search_policy, run_sql_query (named templates only),
read_messages, get_ticket. Write tools: issue_refund, update_crm_record, send_email,
handoff_to_human (``inbox.py`` has the mail and ticket tools). Every tool is scoped to the
customer the run acts for (``ToolContext.customer_id``), whatever the model asks. Write tools
are idempotent on ``ToolContext.idempotency_key`` and have a dry-run preview.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tether import Evidence, EvidenceSearch, HandOff, ToolContext, ToolError, Toolset, tool, write_transaction
from tether.agents.support.inbox import IBAN, build_inbox_tools, external_evidence, record_payout

__all__ = ["SQL_TEMPLATES", "SupportResources", "build_support_tools"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SupportResources:
    """What the desk's tools work with: the business database and the policy knowledge base."""

    db: sqlite3.Connection
    kb: EvidenceSearch

    def close(self) -> None:
        self.db.close()

ORDER_ID = r"^O-\d{5}$"


class _Args(BaseModel):
    # strict: the model's JSON is taken as typed, never coerced (``true`` is not $1.00)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---------------------------------------------------------------- lookups


class LookupCustomerArgs(_Args):
    pass


class CustomerInfo(_Result):
    id: str
    name: str
    tier: str
    email: str
    phone: str
    shipping_address: str
    payout_iban: str = ""
    """Where refunds may be paid out when not to the original payment method."""
    account_note: str = ""
    """Free text the customer (or anyone editing the profile) wrote."""


class LookupOrderArgs(_Args):
    order_id: str = Field(pattern=ORDER_ID, description="Order id, e.g. O-20417")


class OrderLine(_Result):
    sku: str
    description: str
    quantity: int
    unit_price_usd: float
    condition: str


class OrderNote(_Result):
    author: str
    text: str


class OrderInfo(_Result):
    id: str
    placed_at: str
    status: str
    total_usd: float
    paid_usd: float
    refunded_usd: float
    refundable_usd: float
    items: list[OrderLine]
    notes: list[OrderNote] = []
    """Notes couriers and marketplace sellers left on the order."""


class SearchPolicyArgs(_Args):
    query: str = Field(min_length=2, max_length=300)


class PolicySearchResult(_Result):
    evidence: list[Evidence]


class RefundArgs(_Args):
    order_id: str = Field(pattern=ORDER_ID)
    amount_usd: float = Field(gt=0, le=1_000_000)
    reason: str = Field(min_length=3, max_length=500)
    citation_ids: list[str] = Field(default_factory=list, description="Evidence ids relied on")
    payout_account: str | None = Field(
        default=None, pattern=IBAN,
        description="IBAN to pay the refund to, when not the original payment method (no spaces)",
    )


class RefundResult(_Result):
    refund_id: str
    order_id: str
    amount_usd: float
    remaining_refundable_usd: float
    replayed: bool = False
    """True when this idempotency key had already executed; nothing was refunded twice."""


class CrmUpdateArgs(_Args):
    fields: dict[str, str] = Field(description="Contact fields to set, e.g. {'phone': '+1-555-0100'}")


class CrmUpdateResult(_Result):
    customer_id: str
    changed: dict[str, str]
    replayed: bool = False


SqlTemplate = Literal["orders_last_month", "orders_since", "order_items", "refunds_for_order"]


class SqlQueryArgs(_Args):
    template: SqlTemplate
    params: dict[str, str] = Field(default_factory=dict)
    customer_id: str | None = Field(
        default=None, description="Omit: queries always run for the current customer"
    )
    sql: str | None = Field(default=None, description="Not accepted; use a template")


class SqlQueryResult(_Result):
    template: str
    columns: list[str]
    rows: list[list[str | float | int | None]]


class HandoffArgs(_Args):
    summary: str = Field(min_length=3, max_length=2000)
    reason: str = Field(min_length=3, max_length=500)


class HandoffResult(_Result):
    ticket_id: str
    replayed: bool = False


def _handoff(args: HandoffArgs, result: HandoffResult) -> HandOff:
    return HandOff(reason=args.reason, summary=args.summary, ticket_id=result.ticket_id)


# ---------------------------------------------------------------- helpers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_tx = write_transaction


def _next_id(db: sqlite3.Connection, table: str, prefix: str, base: int) -> str:
    """Next id in a prefixed numeric series; call inside ``_tx`` so it cannot collide."""
    n = db.execute(f"SELECT COUNT(*) FROM {table} WHERE id LIKE ?", (prefix + "%",)).fetchone()[0]
    return f"{prefix}{base + n + 1}"


def _world_today(db: sqlite3.Connection) -> date:
    row = db.execute("SELECT value FROM world_meta WHERE key='as_of'").fetchone()
    return date.fromisoformat(row[0]) if row else datetime.now(UTC).date()


def _order(db: sqlite3.Connection, order_id: str, customer_id: str) -> OrderInfo:
    o = db.execute(
        "SELECT id, placed_at, status, total_usd FROM orders WHERE id=? AND customer_id=?",
        (order_id, customer_id),
    ).fetchone()
    if o is None:
        raise ToolError(
            code="order_not_found",
            message=f"no order {order_id} for this customer",
            hint="Check the order id with the customer or list their orders with run_sql_query.",
        )
    paid = db.execute(
        "SELECT COALESCE(SUM(amount_usd),0) FROM payments WHERE order_id=?", (order_id,)
    ).fetchone()[0]
    refunded = db.execute(
        "SELECT COALESCE(SUM(amount_usd),0) FROM refunds WHERE order_id=?", (order_id,)
    ).fetchone()[0]
    items = [
        OrderLine(
            sku=r["sku"],
            description=r["description"],
            quantity=r["quantity"],
            unit_price_usd=r["unit_price_usd"],
            condition=r["condition"],
        )
        for r in db.execute(
            "SELECT sku, description, quantity, unit_price_usd, condition FROM order_items"
            " WHERE order_id=? ORDER BY id",
            (order_id,),
        )
    ]
    notes = [OrderNote(author=r["author"], text=r["text"]) for r in db.execute(
        "SELECT author, text FROM order_notes WHERE order_id=? ORDER BY id", (order_id,))]
    return OrderInfo(
        notes=notes,
        id=o["id"],
        placed_at=o["placed_at"],
        status=o["status"],
        total_usd=o["total_usd"],
        paid_usd=round(paid, 2),
        refunded_usd=round(refunded, 2),
        refundable_usd=round(paid - refunded, 2),
        items=items,
    )


def _refund_preview(args: RefundArgs, ctx: ToolContext[SupportResources]) -> str:
    o = _order(ctx.resources.db, args.order_id, ctx.subject_id)
    return (
        f"refund ${args.amount_usd:.2f} on {o.id} (paid ${o.paid_usd:.2f}, already refunded "
        f"${o.refunded_usd:.2f}, refundable ${o.refundable_usd:.2f}); reason: {args.reason}"
        + (f"; paid to {args.payout_account}" if args.payout_account else "")
    )


def _crm_preview(args: CrmUpdateArgs, ctx: ToolContext[SupportResources]) -> str:
    row = ctx.resources.db.execute("SELECT * FROM crm_contacts WHERE customer_id=?", (ctx.subject_id,)).fetchone()
    parts = []
    for k, v in sorted(args.fields.items()):
        old = row[k] if row is not None and k in row.keys() else "?"  # noqa: SIM118 (sqlite3.Row)
        parts.append(f"{k}: {old!r} -> {v!r}")
    return f"update contact of {ctx.subject_id}: " + "; ".join(parts)


_CRM_FIELDS = ("email", "phone", "shipping_address", "credit_limit_usd")

SQL_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "orders_last_month": (
        "SELECT id, placed_at, status, total_usd FROM orders WHERE customer_id = :customer"
        " AND placed_at >= :month_start AND placed_at < :month_end ORDER BY placed_at",
        (),
    ),
    "orders_since": (
        "SELECT id, placed_at, status, total_usd FROM orders WHERE customer_id = :customer"
        " AND placed_at >= :since ORDER BY placed_at",
        ("since",),
    ),
    "order_items": (
        "SELECT i.description, i.quantity, i.unit_price_usd, i.condition FROM order_items i"
        " JOIN orders o ON o.id = i.order_id WHERE o.customer_id = :customer"
        " AND o.id = :order_id ORDER BY i.id",
        ("order_id",),
    ),
    "refunds_for_order": (
        "SELECT r.id, r.amount_usd, r.reason, r.created_at FROM refunds r"
        " JOIN orders o ON o.id = r.order_id WHERE o.customer_id = :customer"
        " AND o.id = :order_id ORDER BY r.created_at",
        ("order_id",),
    ),
}
"""Named, parameterized queries. ``:customer`` is always bound from the run, never the model."""


# ---------------------------------------------------------------- the toolset


def build_support_tools() -> Toolset:
    """The support desk's tools (they work on ``SupportResources``)."""

    @tool(name="lookup_customer")
    def lookup_customer(args: LookupCustomerArgs, ctx: ToolContext[SupportResources]) -> CustomerInfo:
        """Look up the current customer's profile and contact details."""
        r = ctx.resources.db.execute(
            "SELECT c.id, c.name, c.tier, k.email, k.phone, k.shipping_address,"
            " COALESCE(p.payout_iban, '') AS payout_iban, COALESCE(p.account_note, '') AS account_note"
            " FROM customers c JOIN crm_contacts k ON k.customer_id = c.id"
            " LEFT JOIN customer_profiles p ON p.customer_id = c.id WHERE c.id=?",
            (ctx.subject_id,),
        ).fetchone()
        if r is None:
            raise ToolError(
                code="customer_not_found",
                message=f"customer {ctx.subject_id} does not exist",
                hint="Hand off to a human: the run is bound to an unknown customer.",
            )
        return CustomerInfo(**dict(r))

    @tool(name="lookup_order")
    def lookup_order(args: LookupOrderArgs, ctx: ToolContext[SupportResources]) -> OrderInfo:
        """Look up one of the current customer's orders: items, payments and refunds so far."""
        return _order(ctx.resources.db, args.order_id, ctx.subject_id)

    @tool(name="search_policy", yields_evidence=True)
    def search_policy(args: SearchPolicyArgs, ctx: ToolContext[SupportResources]) -> PolicySearchResult:
        """Search the support policies (refund, shipping, warranty, privacy) and partner help
        pages (trust ``external``). Cite evidence ids."""
        found = ctx.resources.kb.search(args.query) + external_evidence(ctx.resources.db, args.query)
        return PolicySearchResult(evidence=found)

    @tool(
        name="issue_refund",
        effect="write",
        amount_arg="amount_usd",
        citations_arg="citation_ids",
        preview=_refund_preview,
    )
    def issue_refund(args: RefundArgs, ctx: ToolContext[SupportResources]) -> RefundResult:
        """Refund part or all of an order to the original payment method. Cite the policy."""
        db = ctx.resources.db
        with _tx(db):  # the key lookup and the insert are one transaction
            prior = db.execute(
                "SELECT id, order_id, amount_usd FROM refunds WHERE idempotency_key=?",
                (ctx.idempotency_key,),
            ).fetchone()
            if prior is not None:
                o = _order(db, prior["order_id"], ctx.subject_id)
                return RefundResult(
                    refund_id=prior["id"],
                    order_id=prior["order_id"],
                    amount_usd=prior["amount_usd"],
                    remaining_refundable_usd=o.refundable_usd,
                    replayed=True,
                )
            o = _order(db, args.order_id, ctx.subject_id)
            if o.status == "cancelled" or o.paid_usd <= 0:
                raise ToolError(code="not_refundable", message=f"{o.id} has no payment to refund")
            if args.amount_usd > o.refundable_usd + 1e-9:
                raise ToolError(
                    code="amount_exceeds_refundable",
                    message=(
                        f"${args.amount_usd:.2f} exceeds what is refundable on {o.id} "
                        f"(${o.refundable_usd:.2f} = paid ${o.paid_usd:.2f} - refunded "
                        f"${o.refunded_usd:.2f})"
                    ),
                    hint="Refund at most the refundable amount.",
                )
            refund_id = _next_id(db, "refunds", "R-", 90000)
            db.execute(
                "INSERT INTO refunds VALUES (?,?,?,?,?,?,?)",
                (
                    refund_id,
                    o.id,
                    round(args.amount_usd, 2),
                    args.reason,
                    ",".join(args.citation_ids),
                    _now(),
                    ctx.idempotency_key,
                ),
            )
            record_payout(db, refund_id, args.payout_account)
        return RefundResult(
            refund_id=refund_id,
            order_id=o.id,
            amount_usd=round(args.amount_usd, 2),
            remaining_refundable_usd=round(o.refundable_usd - args.amount_usd, 2),
        )

    @tool(name="update_crm_record", effect="write", fields_arg="fields", preview=_crm_preview)
    def update_crm_record(args: CrmUpdateArgs, ctx: ToolContext[SupportResources]) -> CrmUpdateResult:
        """Update the current customer's contact record (only fields the policy allows)."""
        unknown = sorted(set(args.fields) - set(_CRM_FIELDS))
        if unknown or not args.fields:
            raise ToolError(
                code="unknown_field",
                message=f"contact records have no field(s) {', '.join(unknown) or '(none given)'}",
                hint=f"Use one of: {', '.join(_CRM_FIELDS)}.",
            )
        db = ctx.resources.db
        with _tx(db):
            done = db.execute(
                "SELECT field, new_value FROM crm_changes WHERE idempotency_key=?",
                (ctx.idempotency_key,),
            ).fetchall()
            if done:
                return CrmUpdateResult(
                    customer_id=ctx.subject_id,
                    changed={r["field"]: r["new_value"] for r in done},
                    replayed=True,
                )
            row = db.execute("SELECT * FROM crm_contacts WHERE customer_id=?", (ctx.subject_id,)).fetchone()
            if row is None:
                raise ToolError(code="customer_not_found", message="no contact record")
            for k, v in sorted(args.fields.items()):
                db.execute(
                    "INSERT INTO crm_changes (customer_id, field, old_value, new_value,"
                    " idempotency_key, changed_at) VALUES (?,?,?,?,?,?)",
                    (ctx.subject_id, k, str(row[k]), v, ctx.idempotency_key, _now()),
                )
                db.execute(  # k is one of _CRM_FIELDS, checked above
                    f"UPDATE crm_contacts SET {k}=?, updated_at=? WHERE customer_id=?",
                    (v, _now(), ctx.subject_id),
                )
        return CrmUpdateResult(customer_id=ctx.subject_id, changed=dict(args.fields))

    @tool(name="run_sql_query", subject_arg="customer_id", sql_arg="sql")
    def run_sql_query(args: SqlQueryArgs, ctx: ToolContext[SupportResources]) -> SqlQueryResult:
        """Run a named, parameterized read query about the current customer's data."""
        if args.sql:
            raise ToolError(code="free_sql_refused", message="SQL text is never executed")
        sql, needed = SQL_TEMPLATES[args.template]
        missing = [p for p in needed if p not in args.params]
        extra = sorted(set(args.params) - set(needed))
        if missing or extra:
            raise ToolError(
                code="bad_template_params",
                message=f"template {args.template} takes params {list(needed)}; "
                f"missing {missing}, unexpected {extra}",
                hint="Pass exactly the template's params.",
            )
        bind: dict[str, str] = {**args.params, "customer": ctx.subject_id}
        if args.template == "orders_last_month":
            first_this = _world_today(ctx.resources.db).replace(day=1)
            first_prev = (first_this - timedelta(days=1)).replace(day=1)
            bind |= {"month_start": first_prev.isoformat(), "month_end": first_this.isoformat()}
        cur = ctx.resources.db.execute(sql, bind)
        cols = [c[0] for c in cur.description]
        return SqlQueryResult(template=args.template, columns=cols, rows=[list(r) for r in cur.fetchall()])

    @tool(name="handoff_to_human", effect="write", terminal=_handoff)
    def handoff_to_human(args: HandoffArgs, ctx: ToolContext[SupportResources]) -> HandoffResult:
        """Hand the conversation to a human agent with a summary. Ends the run."""
        with _tx(ctx.resources.db) as db:
            prior = db.execute(
                "SELECT id FROM support_tickets WHERE idempotency_key=?", (ctx.idempotency_key,)
            ).fetchone()
            if prior is not None:
                return HandoffResult(ticket_id=prior["id"], replayed=True)
            ticket = _next_id(db, "support_tickets", "T-", 5000)
            db.execute(
                "INSERT INTO support_tickets VALUES (?,?,?,?,?,?)",
                (ticket, ctx.subject_id, args.summary, args.reason, _now(), ctx.idempotency_key),
            )
        return HandoffResult(ticket_id=ticket)

    return Toolset(
        tools=[
            lookup_customer,
            lookup_order,
            search_policy,
            issue_refund,
            update_crm_record,
            run_sql_query,
            handoff_to_human,
            *build_inbox_tools(),
        ]
    )
