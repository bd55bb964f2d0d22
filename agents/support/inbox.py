"""The support desk's tools where third-party text arrives, and its outbound mail.

Read tools: ``read_messages`` (mail the desk received about the customer: the sender and ids
identify, the subject and body are whatever the sender wrote), ``get_ticket`` (a ticket of
the customer, with comments anyone on it can write). Write tool: ``send_email`` (leaves the
organisation). ``external_evidence`` searches the partner help pages the desk keeps beside
its own policies (passages of trust ``external``). Every tool is scoped to the run's customer.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tether import Evidence, KnowledgeBase, Passage, ToolContext, ToolError, ToolSpec, tool, write_transaction

__all__ = ["EMAIL", "IBAN", "build_inbox_tools", "external_evidence", "record_payout"]

EMAIL = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$"
IBAN = r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$"
"""An IBAN without spaces, e.g. DE44500105175407324931."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReadMessagesArgs(_Args):
    message_id: str | None = Field(default=None, pattern=r"^M-\d{4}$",
                                   description="One message, e.g. M-0001 (omit: the latest ones)")
    limit: int = Field(default=5, ge=1, le=20)


class InboundMessage(_Result):
    id: str
    sender: str
    received_at: str
    subject: str
    body: str


class MessagesResult(_Result):
    messages: list[InboundMessage]


class GetTicketArgs(_Args):
    ticket_id: str = Field(pattern=r"^TK-\d{4}$", description="Ticket id, e.g. TK-7001")


class TicketComment(_Result):
    author: str
    body: str
    created_at: str


class TicketInfo(_Result):
    id: str
    customer_id: str
    subject: str
    status: str
    opened_at: str
    comments: list[TicketComment]


class SendEmailArgs(_Args):
    to: str = Field(pattern=EMAIL, description="One recipient address")
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=5000)


class SendEmailResult(_Result):
    message_id: str
    to: str
    replayed: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _email_preview(args: SendEmailArgs, ctx: ToolContext[Any]) -> str:
    return f"send an email to {args.to} about {ctx.subject_id}: {args.subject!r} ({len(args.body)} chars)"


def external_evidence(db: sqlite3.Connection, query: str, *, top_k: int = 2) -> list[Evidence]:
    """The best partner help passages for ``query`` (trust ``external``; none when there are none)."""
    rows = db.execute("SELECT doc_id, title, version, source, updated_at, body FROM external_articles"
                      " ORDER BY doc_id").fetchall()
    passages = [
        Passage(evidence_id=f"{r['doc_id']}@v{r['version']}#p{i}", doc_id=r["doc_id"], version=r["version"],
                title=r["title"], text=" ".join(p.split()), source=r["source"], updated_at=r["updated_at"],
                trust="external")
        for r in rows for i, p in enumerate((p for p in r["body"].split("\n\n") if p.strip()), start=1)
    ]
    return KnowledgeBase(passages).search(query, top_k=top_k) if passages else []


def record_payout(db: sqlite3.Connection, refund_id: str, account: str | None) -> None:
    """Note where a refund is paid when it is not the original payment method (inside the refund's transaction)."""
    if account:
        db.execute("INSERT INTO refund_payouts VALUES (?,?)", (refund_id, account))


def build_inbox_tools() -> list[ToolSpec[Any, Any]]:
    """``read_messages``, ``get_ticket`` and ``send_email`` (they work on ``SupportResources``)."""

    @tool(name="read_messages")
    def read_messages(args: ReadMessagesArgs, ctx: ToolContext[Any]) -> MessagesResult:
        """Read the mail the desk received about the current customer (latest first, or one by id)."""
        db: sqlite3.Connection = ctx.resources.db
        sql = "SELECT id, sender, received_at, subject, body FROM inbound_messages WHERE customer_id=?"
        params: tuple[object, ...] = (ctx.subject_id,)
        if args.message_id:
            sql, params = sql + " AND id=?", (*params, args.message_id)
        rows = db.execute(sql + " ORDER BY received_at DESC, id DESC LIMIT ?", (*params, args.limit)).fetchall()
        if args.message_id and not rows:
            raise ToolError(code="message_not_found", message=f"no message {args.message_id} for this customer",
                            hint="Read the latest messages without an id.")
        return MessagesResult(messages=[InboundMessage(**dict(r)) for r in rows])

    @tool(name="get_ticket")
    def get_ticket(args: GetTicketArgs, ctx: ToolContext[Any]) -> TicketInfo:
        """Read one of the current customer's support tickets with its comments."""
        db: sqlite3.Connection = ctx.resources.db
        t = db.execute("SELECT * FROM customer_tickets WHERE id=? AND customer_id=?",
                       (args.ticket_id, ctx.subject_id)).fetchone()
        if t is None:
            raise ToolError(code="ticket_not_found", message=f"no ticket {args.ticket_id} for this customer",
                            hint="Ask the customer for the ticket id.")
        comments = [TicketComment(**dict(r)) for r in db.execute(
            "SELECT author, body, created_at FROM ticket_comments WHERE ticket_id=? ORDER BY id", (t["id"],))]
        return TicketInfo(**dict(t), comments=comments)

    @tool(name="send_email", effect="write", preview=_email_preview)
    def send_email(args: SendEmailArgs, ctx: ToolContext[Any]) -> SendEmailResult:
        """Send an email on the customer's case (it leaves the shop). Ends nothing; answer after."""
        db: sqlite3.Connection = ctx.resources.db
        with write_transaction(db):
            prior = db.execute("SELECT id, to_addr FROM outbox WHERE idempotency_key=?",
                               (ctx.idempotency_key,)).fetchone()
            if prior is not None:
                return SendEmailResult(message_id=prior["id"], to=prior["to_addr"], replayed=True)
            n = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            mid = f"E-{80001 + n}"
            db.execute("INSERT INTO outbox VALUES (?,?,?,?,?,?,?)",
                       (mid, ctx.subject_id, args.to, args.subject, args.body, _now(), ctx.idempotency_key))
        return SendEmailResult(message_id=mid, to=args.to)

    return [read_messages, get_ticket, send_email]
