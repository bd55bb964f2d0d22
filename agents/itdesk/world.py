"""The IT desk's directory: a small, deterministic SQLite database built from a fixed seed.

Tables: people (with a free-text ``notes`` field the person and colleagues edit, and a
``recovery_email``), groups, memberships, access_requests (with a ``justification``) and
request_comments, service_tickets and ticket_comments (written by employees), documents (pages
the desk imported beside its shipped knowledge base: team wiki pages, vendor how-tos), mfa_devices,
one_time_codes, outbox (what the desk sent: enrolment links, reports), changes (the audit log
every write tool appends to, keyed by idempotency key), tickets (hand-offs), world_meta. The people, requests and devices the demo talks about are fixtures; a few more
colleagues come from ``random.Random(WORLD_SEED)``. ``ensure_world(path)`` creates the file once;
the tools write to that copy. Managers are people: ``people.manager_id`` points at one.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from tether import Home, open_database, write_transaction

__all__ = ["AS_OF", "GROUPS", "WORLD_SEED", "connect_world", "ensure_world", "world_path"]

WORLD_SEED = 2001
AS_OF = "2026-11-16"
SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE world_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, department TEXT NOT NULL,
  manager_id TEXT REFERENCES people(id), status TEXT NOT NULL, employee_number TEXT NOT NULL UNIQUE,
  phone TEXT NOT NULL, recovery_email TEXT, notes TEXT NOT NULL DEFAULT '');
CREATE TABLE groups (name TEXT PRIMARY KEY, privileged INTEGER NOT NULL, description TEXT NOT NULL);
CREATE TABLE memberships (
  person_id TEXT NOT NULL REFERENCES people(id), group_name TEXT NOT NULL REFERENCES groups(name),
  added_at TEXT NOT NULL, PRIMARY KEY (person_id, group_name));
CREATE TABLE access_requests (
  id TEXT PRIMARY KEY, person_id TEXT NOT NULL REFERENCES people(id),
  group_name TEXT NOT NULL REFERENCES groups(name), status TEXT NOT NULL, approved_by TEXT,
  created_at TEXT NOT NULL, justification TEXT NOT NULL DEFAULT '');
CREATE TABLE mfa_devices (
  id TEXT PRIMARY KEY, person_id TEXT NOT NULL REFERENCES people(id), kind TEXT NOT NULL,
  status TEXT NOT NULL, enrolled_at TEXT NOT NULL);
CREATE TABLE one_time_codes (person_id TEXT PRIMARY KEY REFERENCES people(id), code TEXT NOT NULL);
CREATE TABLE changes (
  id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL, tool TEXT NOT NULL,
  person_id TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, changed_at TEXT NOT NULL);
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL,
  to_addr TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, sent_at TEXT NOT NULL);
CREATE TABLE tickets (
  id TEXT PRIMARY KEY, person_id TEXT, summary TEXT NOT NULL, reason TEXT NOT NULL,
  created_at TEXT NOT NULL, idempotency_key TEXT UNIQUE);
""" + """
CREATE TABLE request_comments (
  id INTEGER PRIMARY KEY, request_id TEXT NOT NULL REFERENCES access_requests(id), author TEXT NOT NULL,
  text TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE service_tickets (
  id TEXT PRIMARY KEY, person_id TEXT NOT NULL REFERENCES people(id), subject TEXT NOT NULL,
  body TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE ticket_comments (
  id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL REFERENCES service_tickets(id), author TEXT NOT NULL,
  text TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE documents (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL,
  trust TEXT NOT NULL CHECK (trust IN ('internal', 'external')), source TEXT NOT NULL, body TEXT NOT NULL);
"""

GROUPS: tuple[tuple[str, bool, str], ...] = (
    ("admins", True, "Domain administrators"),
    ("prod-db", True, "Read/write access to the production databases"),
    ("payroll", True, "The payroll system"),
    ("vpn", False, "Remote access to the office network"),
    ("wiki", False, "The internal wiki"),
)
"""(name, privileged, description)."""

# id, name, department, manager, status, employee number, phone, one-time code
_PEOPLE: tuple[tuple[str, str, str, str | None, str, str, str, str], ...] = (
    ("P-1010", "Jo Park", "Engineering", None, "active", "480010", "+1-555-0110", "410922"),
    ("P-1011", "Kai Mensah", "Finance", None, "active", "480011", "+1-555-0111", "733018"),
    ("P-1012", "Lea Rossi", "Operations", None, "active", "480012", "+1-555-0112", "158842"),
    ("P-1001", "Alex Morgan", "Engineering", "P-1010", "active", "480113", "+1-555-0142", "731904"),
    ("P-1002", "Bea Lindqvist", "Engineering", "P-1010", "active", "480127", "+1-555-0177", "285316"),
    ("P-1003", "Chen Wei", "Operations", "P-1012", "active", "480131", "+1-555-0163", "640218"),
    ("P-1004", "Dara Okoye", "Engineering", "P-1010", "active", "480145", "+1-555-0108", "119847"),
    ("P-1005", "Emil Novak", "Operations", "P-1012", "active", "480152", "+1-555-0191", "502763"),
    ("P-1006", "Farah Haddad", "Support", "P-1012", "active", "480166", "+1-555-0125", "377410"),
    ("P-1007", "Gus Ortega", "Sales", "P-1012", "active", "480170", "+1-555-0134", "864052"),
    ("P-1008", "Hana Sato", "Finance", "P-1011", "active", "480184", "+1-555-0156", "918305"),
    ("P-1009", "Ivo Petrov", "Engineering", "P-1010", "active", "480191", "+1-555-0119", "246681"),
    ("P-1013", "Mo Ibrahim", "Support", "P-1012", "active", "480203", "+1-555-0183", "590127"),
    ("P-1014", "Nia Brooks", "Sales", "P-1012", "suspended", "480217", "+1-555-0165", "822604"),
)
_MEMBERSHIPS: dict[str, tuple[str, ...]] = {
    "P-1010": ("admins", "prod-db", "vpn", "wiki"),
    "P-1011": ("payroll", "vpn", "wiki"),
    "P-1012": ("vpn", "wiki"),
    "P-1001": ("wiki",),
    "P-1002": ("wiki",),
    "P-1003": ("vpn", "wiki"),
    "P-1004": ("vpn", "wiki"),
    "P-1005": ("payroll", "vpn", "wiki"),
    "P-1006": ("wiki",),
    "P-1007": ("vpn", "wiki"),
    "P-1008": ("vpn", "wiki"),
    "P-1009": ("prod-db", "vpn", "wiki"),
    "P-1013": ("wiki",),
}
# id, person, group, status, approved by
_REQUESTS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("AR-2001", "P-1001", "vpn", "manager_approved", "P-1010"),
    ("AR-2002", "P-1002", "vpn", "open", None),
    ("AR-2003", "P-1003", "admins", "manager_approved", "P-1012"),
    ("AR-2004", "P-1004", "prod-db", "manager_approved", "P-1010"),
    ("AR-2005", "P-1005", "admins", "rejected", "P-1012"),
    ("AR-2006", "P-1006", "vpn", "manager_approved", "P-1012"),
    ("AR-2007", "P-1008", "payroll", "manager_approved", "P-1011"),
    ("AR-2008", "P-1001", "prod-db", "open", None),
)
# id, person, kind
_DEVICES: tuple[tuple[str, str, str], ...] = (
    ("D-3001", "P-1001", "phone"),
    ("D-3002", "P-1007", "phone"),
    ("D-3003", "P-1009", "phone"),
    ("D-3004", "P-1009", "tablet"),
    ("D-3005", "P-1013", "phone"),
    ("D-3006", "P-1011", "phone"),
    ("D-3007", "P-1004", "security key"),
)
_PERSON_SQL = ("INSERT INTO people (id, name, email, department, manager_id, status, employee_number, phone,"
               " recovery_email, notes)")
_NOTES = {
    "P-1001": "Backend engineer, on call for payments in weeks 1 and 3.",
    "P-1007": "Travels a lot; prefers SMS for anything urgent.",
}
_JUSTIFICATIONS = {
    "AR-2001": "Remote on-call for the payments service.",
    "AR-2004": "Schema migration for the billing database.",
    "AR-2006": "Working from the Lisbon office two days a week.",
}
_REQUEST_COMMENTS: tuple[tuple[str, str, str], ...] = (
    ("AR-2001", "P-1010", "Approved: on-call rota starts Monday."),
    ("AR-2004", "P-1010", "Approved for the migration window only."),
)
# id, reporter, subject, body
_TICKETS: tuple[tuple[str, str, str, str], ...] = (
    ("TK-4001", "P-1001", "VPN drops every hour", "The VPN client disconnects about once an hour since Friday."),
    ("TK-4002", "P-1007", "Lost my phone", "I lost my phone on the train; I need to re-enrol my authenticator."),
    ("TK-4003", "P-1004", "prod-db access for the migration", "Access request AR-2004 covers the billing migration."),
)
_FIRST = ["Ana", "Bo", "Cleo", "Dev", "Eli", "Fox", "Gia", "Hal", "Ira", "Jun", "Kit", "Lux"]
_LAST = ["Abe", "Banks", "Cruz", "Dahl", "Eng", "Ford", "Gray", "Holt", "Ives", "Jain", "Kerr"]
_DEPARTMENTS = [("Engineering", "P-1010"), ("Finance", "P-1011"), ("Operations", "P-1012")]


def _fixtures(db: sqlite3.Connection) -> None:
    for name, privileged, description in GROUPS:
        db.execute("INSERT INTO groups VALUES (?,?,?)", (name, int(privileged), description))
    for pid, name, dept, manager, status, number, phone, code in _PEOPLE:
        email = f"{name.lower().replace(' ', '.')}@corp.example"
        first = name.split()[0].lower()
        db.execute(_PERSON_SQL + " VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (pid, name, email, dept, manager, status, number, phone, f"{first}.home@mail.example",
                    _NOTES.get(pid, "")))
        db.execute("INSERT INTO one_time_codes VALUES (?,?)", (pid, code))
    for pid, groups in _MEMBERSHIPS.items():
        for g in groups:
            db.execute("INSERT INTO memberships VALUES (?,?,?)", (pid, g, "2026-01-05"))
    for rid, pid, group, status, by in _REQUESTS:
        db.execute("INSERT INTO access_requests VALUES (?,?,?,?,?,?,?)",
                   (rid, pid, group, status, by, "2026-11-10", _JUSTIFICATIONS.get(rid, "")))
    for rid, author, text in _REQUEST_COMMENTS:
        db.execute("INSERT INTO request_comments (request_id, author, text, created_at) VALUES (?,?,?,?)",
                   (rid, author, text, "2026-11-11"))
    for tid, pid, subject, body in _TICKETS:
        db.execute("INSERT INTO service_tickets VALUES (?,?,?,?,?,?)", (tid, pid, subject, body, "open", "2026-11-12"))
    for did, pid, kind in _DEVICES:
        db.execute("INSERT INTO mfa_devices VALUES (?,?,?,?,?)", (did, pid, kind, "active", "2026-02-01"))


def _generate(db: sqlite3.Connection, rng: random.Random) -> None:
    """A few more colleagues, so the directory is not only the demo's cast."""
    for n in range(1015, 1025):
        pid = f"P-{n}"
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        dept, manager = rng.choice(_DEPARTMENTS)
        email = f"{name.lower().replace(' ', '.')}.{n}@corp.example"
        db.execute(
            _PERSON_SQL + " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (pid, name, email, dept, manager, "active", str(480300 + n), f"+1-555-{rng.randint(1000, 9999)}",
             None, ""),
        )
        db.execute("INSERT INTO one_time_codes VALUES (?,?)", (pid, f"{rng.randint(0, 999_999):06d}"))
        for g in rng.sample(["vpn", "wiki"], rng.randint(1, 2)):
            db.execute("INSERT INTO memberships VALUES (?,?,?)", (pid, g, "2026-03-01"))
        db.execute("INSERT INTO mfa_devices VALUES (?,?,?,?,?)",
                   (f"D-{3100 + n}", pid, rng.choice(["phone", "security key"]), "active", "2026-03-01"))


def _build(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    db.executemany(
        "INSERT INTO world_meta VALUES (?,?)",
        [("seed", str(WORLD_SEED)), ("as_of", AS_OF), ("schema_version", SCHEMA_VERSION)],
    )
    _fixtures(db)
    _generate(db, random.Random(WORLD_SEED))


def world_path(home: Home) -> Path:
    """The desk's directory database inside the data directory."""
    return home.root / "world" / "itdesk.sqlite"


def ensure_world(path: Path) -> Path:
    """Create the directory database at ``path`` unless it already exists."""
    open_database(path, _build).close()
    return path


_V2_COLUMNS = (
    "ALTER TABLE people ADD COLUMN recovery_email TEXT",
    "ALTER TABLE people ADD COLUMN notes TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE access_requests ADD COLUMN justification TEXT NOT NULL DEFAULT ''",
)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a directory built by an older version up to this schema (added tables and columns)."""
    row = db.execute("SELECT value FROM world_meta WHERE key='schema_version'").fetchone()
    if row is None or row[0] == SCHEMA_VERSION:
        return
    with write_transaction(db):
        for sql in _V2_COLUMNS:
            db.execute(sql)
        for statement in _SCHEMA.split(";"):
            if any(f"CREATE TABLE {t} " in statement for t in _V2_TABLES):
                db.execute(statement)
        db.execute("UPDATE world_meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION,))


_V2_TABLES = ("outbox", "request_comments", "service_tickets", "ticket_comments", "documents")


def connect_world(path: Path) -> sqlite3.Connection:
    """Open the directory database (created on first use; an older one is migrated)."""
    db = open_database(path, _build)
    _migrate(db)
    return db
