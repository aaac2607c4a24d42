"""Shared fixtures: real SQLite files and real PostgreSQL databases.

PostgreSQL is found through ``$HEARTH_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When it cannot be reached, tests that
need it are skipped with the reason, except under ``CI=true``, where they fail: CI
must never go green by skipping the database.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_DSN = os.environ.get("HEARTH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_counter = itertools.count()


def _pg_admin_connect():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)


def _require_pg() -> None:
    try:
        with _pg_admin_connect() as conn:
            conn.execute("select 1")
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        message = f"PostgreSQL at {PG_DSN} is unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run)")
        pytest.skip(message)


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    _require_pg()
    name = f"hearth_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with _pg_admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_DSN, name).replace("postgres://", "postgresql://", 1)
    finally:
        with _pg_admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'hearth.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:  # type: ignore[no-untyped-def]
    """Parametrises a test over both backends."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))
