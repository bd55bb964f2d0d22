"""A fresh PostgreSQL schema per test on the test server (``TETHER_TEST_PG_URL``).

Without a server the test skips with the reason, unless ``CI`` or ``TETHER_REQUIRE_PG=1`` is
set: then a missing server is a failure, so PostgreSQL tests never pass by being skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest


def pg_base_url() -> str:
    url = os.environ.get("TETHER_TEST_PG_URL")
    if url:
        return url
    how = 'run through .ci/with-postgres.sh, or eval "$(.ci/start-postgres.sh)", or set TETHER_TEST_PG_URL'
    if os.environ.get("CI") or os.environ.get("TETHER_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL is required (CI / TETHER_REQUIRE_PG=1) but TETHER_TEST_PG_URL is not set: {how}")
    pytest.skip(f"PostgreSQL not available: {how}")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose search_path is a new schema, dropped afterwards."""
    import psycopg

    base = pg_base_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
