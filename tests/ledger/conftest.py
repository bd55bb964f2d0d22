"""Ledger backends for the conformance suite: SQLite always, PostgreSQL when available.

PostgreSQL tests are marked ``postgres`` and use ``TETHER_TEST_PG_URL`` (``.ci/run`` starts a
server with ``eval "$(.ci/start-postgres.sh)"``). Without it they skip locally and *fail*
under CI (env ``CI`` set), so a missing server never passes silently. Each test gets its own
schema, so tests are isolated and leave nothing behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tether.checkpoints.ledger import Ledger

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pg_base_url() -> str:
    """The test server URL, or skip (locally) / fail (CI) when there is none."""
    url = os.environ.get("TETHER_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("TETHER_TEST_PG_URL is not set but CI is: start PostgreSQL with "
                    'eval "$(.ci/start-postgres.sh)" before running the postgres tests')
    pytest.skip("PostgreSQL not available: set TETHER_TEST_PG_URL "
                '(eval "$(.ci/start-postgres.sh)") to run the postgres tests')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema (dropped afterwards)."""
    import psycopg

    base = pg_base_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as led:
        yield led
