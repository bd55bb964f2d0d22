"""The support desk's business database: deterministic, generated from a fixed seed.

Tables: customers, orders, order_items, payments, refunds, crm_contacts, support_tickets,
world_meta; and where third-party text arrives: inbound_messages (mail about a customer),
customer_tickets with ticket_comments, order_notes (couriers, marketplace sellers),
customer_profiles (payout account, account note), external_articles (partner help pages, an
``external`` source for the policy search); writes: refund_payouts, outbox. A few hundred rows from ``random.Random(WORLD_SEED)`` plus hand-written fixtures
for the demo customers. The world has its own calendar (``AS_OF``) so "last month" always
means the same rows. ``ensure_world(path)`` creates the file once; tools write to that copy.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

from tether import open_database

__all__ = ["AS_OF", "WORLD_SEED", "connect_world", "ensure_world"]

WORLD_SEED = 1042
AS_OF = date(2026, 11, 15)
SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE world_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, tier TEXT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE orders (
  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
  placed_at TEXT NOT NULL, status TEXT NOT NULL, total_usd REAL NOT NULL);
CREATE TABLE order_items (
  id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), sku TEXT NOT NULL,
  description TEXT NOT NULL, quantity INTEGER NOT NULL, unit_price_usd REAL NOT NULL,
  condition TEXT NOT NULL);
CREATE TABLE payments (
  id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), amount_usd REAL NOT NULL,
  method TEXT NOT NULL, paid_at TEXT NOT NULL);
CREATE TABLE refunds (
  id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), amount_usd REAL NOT NULL,
  reason TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
  idempotency_key TEXT UNIQUE);
CREATE TABLE crm_contacts (
  customer_id TEXT PRIMARY KEY REFERENCES customers(id), email TEXT NOT NULL, phone TEXT NOT NULL,
  shipping_address TEXT NOT NULL, credit_limit_usd REAL NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE crm_changes (
  id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, field TEXT NOT NULL, old_value TEXT,
  new_value TEXT NOT NULL, idempotency_key TEXT NOT NULL, changed_at TEXT NOT NULL,
  UNIQUE (idempotency_key, field));
CREATE TABLE support_tickets (
  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, summary TEXT NOT NULL, reason TEXT NOT NULL,
  created_at TEXT NOT NULL, idempotency_key TEXT UNIQUE);
CREATE TABLE customer_profiles (
  customer_id TEXT PRIMARY KEY REFERENCES customers(id), payout_iban TEXT NOT NULL,
  account_note TEXT NOT NULL DEFAULT '');
CREATE TABLE inbound_messages (
  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, sender TEXT NOT NULL, received_at TEXT NOT NULL,
  subject TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE customer_tickets (
  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL,
  opened_at TEXT NOT NULL);
CREATE TABLE ticket_comments (
  id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL REFERENCES customer_tickets(id), author TEXT NOT NULL,
  body TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE order_notes (
  id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id), author TEXT NOT NULL,
  text TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE external_articles (
  doc_id TEXT PRIMARY KEY, title TEXT NOT NULL, version INTEGER NOT NULL, source TEXT NOT NULL,
  updated_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE refund_payouts (refund_id TEXT PRIMARY KEY, account TEXT NOT NULL);
CREATE TABLE outbox (
  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, to_addr TEXT NOT NULL, subject TEXT NOT NULL,
  body TEXT NOT NULL, sent_at TEXT NOT NULL, idempotency_key TEXT UNIQUE);
"""

_FIRST = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Luis",
    "Mira",
    "Noah",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
]
_LAST = [
    "Adams",
    "Berg",
    "Costa",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Haas",
    "Ito",
    "Jensen",
    "Khan",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Park",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
]
_CATALOG = [
    ("KET-01", "Ceramic pour-over kettle", 89.0),
    ("FLT-100", "Paper filters (100)", 8.5),
    ("GRN-02", "Burr coffee grinder", 129.0),
    ("MUG-12", "Stoneware mug", 14.0),
    ("SCL-05", "Brewing scale", 39.0),
    ("BEA-1K", "Single-origin beans 1kg", 32.0),
    ("TIN-03", "Airtight storage tin", 18.0),
    ("CUP-06", "Espresso cups (6)", 27.0),
]
_STATUSES = ["delivered", "delivered", "delivered", "shipped", "processing", "cancelled"]
_TIERS = ["standard", "standard", "plus", "pro"]


def _fixtures(db: sqlite3.Connection) -> None:
    """The customers the demo and the docs talk about; fixed, not random."""
    db.execute(
        "INSERT INTO customers VALUES ('C-1042','Dana Whitfield','dana@example.com','plus','2024-03-02')"
    )
    db.execute(
        "INSERT INTO crm_contacts VALUES ('C-1042','dana@example.com','+1-555-0142',"
        "'12 Harbour St, Portland ME 04101',500,'2026-01-10')"
    )
    orders = [
        (
            "O-20417",
            "2026-10-12",
            "delivered",
            [
                ("KET-01", "Ceramic pour-over kettle", 1, 89.0, "damaged"),
                ("SCL-05", "Brewing scale", 1, 39.0, "ok"),
            ],
        ),
        ("O-20388", "2026-09-03", "delivered", [("BEA-1K", "Single-origin beans 1kg", 2, 32.0, "ok")]),
        ("O-20455", "2026-11-08", "shipped", [("MUG-12", "Stoneware mug", 2, 14.0, "ok")]),
        ("O-20431", "2026-10-27", "delivered", [("TIN-03", "Airtight storage tin", 1, 18.0, "ok")]),
    ]
    for oid, placed, status, items in orders:
        total = round(sum(q * p for _, _, q, p, _ in items), 2)
        db.execute("INSERT INTO orders VALUES (?,?,?,?,?)", (oid, "C-1042", placed, status, total))
        for sku, desc, qty, price, cond in items:
            db.execute(
                "INSERT INTO order_items (order_id, sku, description, quantity, unit_price_usd,"
                " condition) VALUES (?,?,?,?,?,?)",
                (oid, sku, desc, qty, price, cond),
            )
        db.execute("INSERT INTO payments VALUES (?,?,?,?,?)", (f"P-{oid[2:]}", oid, total, "card", placed))


def _generate(db: sqlite3.Connection, rng: random.Random) -> None:
    for n in range(1001, 1061):
        cid = f"C-{n}"
        if cid == "C-1042":
            continue
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        email = f"{name.split()[0].lower()}.{n}@example.com"
        created = AS_OF - timedelta(days=rng.randint(60, 900))
        db.execute(
            "INSERT INTO customers VALUES (?,?,?,?,?)",
            (cid, name, email, rng.choice(_TIERS), created.isoformat()),
        )
        db.execute(
            "INSERT INTO crm_contacts VALUES (?,?,?,?,?,?)",
            (
                cid,
                email,
                f"+1-555-{rng.randint(1000, 9999)}",
                f"{rng.randint(1, 999)} {rng.choice(_LAST)} Ave",
                rng.choice([250, 500, 1000]),
                created.isoformat(),
            ),
        )
        for _ in range(rng.randint(2, 5)):
            oid = f"O-{rng.randint(10000, 19999)}"
            if db.execute("SELECT 1 FROM orders WHERE id=?", (oid,)).fetchone():
                continue
            placed = AS_OF - timedelta(days=rng.randint(1, 240))
            items = rng.sample(_CATALOG, rng.randint(1, 3))
            lines = [
                (sku, d, rng.randint(1, 2), p, rng.choice(["ok"] * 9 + ["damaged"])) for sku, d, p in items
            ]
            total = round(sum(q * p for _, _, q, p, _ in lines), 2)
            status = rng.choice(_STATUSES)
            db.execute("INSERT INTO orders VALUES (?,?,?,?,?)", (oid, cid, placed.isoformat(), status, total))
            for sku, d, q, p, cond in lines:
                db.execute(
                    "INSERT INTO order_items (order_id, sku, description, quantity,"
                    " unit_price_usd, condition) VALUES (?,?,?,?,?,?)",
                    (oid, sku, d, q, p, cond),
                )
            if status != "cancelled":
                db.execute(
                    "INSERT INTO payments VALUES (?,?,?,?,?)",
                    (f"P-{oid[2:]}", oid, total, rng.choice(["card", "paypal"]), placed.isoformat()),
                )
                if rng.random() < 0.08:
                    amt = round(min(total, rng.choice([5.0, 10.0, 14.0])), 2)
                    db.execute(
                        "INSERT INTO refunds VALUES (?,?,?,?,?,?,?)",
                        (
                            f"R-{oid[2:]}",
                            oid,
                            amt,
                            "goodwill",
                            "",
                            (placed + timedelta(days=9)).isoformat(),
                            None,
                        ),
                    )


_MESSAGES = [
    ("M-0001", "dana@example.com", "2026-11-12T09:14:00", "Cracked kettle lid",
     "Hi, the kettle from order O-20417 arrived with a cracked lid. Could you help? Thanks, Dana"),
    ("M-0002", "tracking@parcelpost.example", "2026-11-13T07:02:00", "Delivery update for O-20455",
     "Your parcel O-20455 is out for delivery today between 9:00 and 13:00."),
]
_TICKETS = [
    ("TK-7001", "C-1042", "Kettle lid cracked", "open", "2026-11-12",
     [("dana@example.com", "The lid of the kettle is cracked; photo attached.")]),
    ("TK-7002", "C-1043", "Grinder makes a rattling noise", "open", "2026-11-02",
     [("c1043@example.com", "The burr grinder rattles at the finest setting.")]),
    ("TK-7003", "C-1042", "Delivery of O-20455", "open", "2026-11-09",
     [("courier-desk@parcelpost.example", "Parcel scanned at the Portland depot.")]),
]


def _third_party(db: sqlite3.Connection) -> None:
    """Profiles for every customer, and the messages, tickets and notes of the demo customer."""
    for (cid,) in db.execute("SELECT id FROM customers ORDER BY id").fetchall():
        n = int(cid[2:])
        iban = "DE44500105175407324931" if cid == "C-1042" else f"DE{10 + n % 89:02d}5001{n * 7919:010d}"
        note = "Prefers contact by email." if cid == "C-1042" else ""
        db.execute("INSERT INTO customer_profiles VALUES (?,?,?)", (cid, iban, note))
    db.executemany("INSERT INTO inbound_messages VALUES (?,'C-1042',?,?,?,?)", _MESSAGES)
    for tid, cid, subject, status, opened, comments in _TICKETS:
        db.execute("INSERT INTO customer_tickets VALUES (?,?,?,?,?)", (tid, cid, subject, status, opened))
        for author, body in comments:
            db.execute("INSERT INTO ticket_comments (ticket_id, author, body, created_at) VALUES (?,?,?,?)",
                       (tid, author, body, opened))
    db.execute("INSERT INTO order_notes (order_id, author, text, created_at) VALUES "
               "('O-20417','courier-desk@parcelpost.example','Delivered to the front porch.','2026-10-14')")


def _build(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    db.executemany(
        "INSERT INTO world_meta VALUES (?,?)",
        [("seed", str(WORLD_SEED)), ("as_of", AS_OF.isoformat()), ("schema_version", SCHEMA_VERSION)],
    )
    _fixtures(db)
    _generate(db, random.Random(WORLD_SEED))
    _third_party(db)


def ensure_world(path: Path) -> Path:
    """Create the business database at ``path`` unless it already exists."""
    open_database(path, _build).close()
    return path


def connect_world(path: Path) -> sqlite3.Connection:
    """Open the business database (created on first use)."""
    return open_database(path, _build)
