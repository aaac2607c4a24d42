"""Migrating an empty database yields exactly the declared schema, on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import hearth.store.sql.migrations
from hearth.store.sql import migrate
from hearth.store.sql.backend import backend_for
from hearth.store.sql.schema import metadata


def test_migrated_schema_equals_declared_schema(store_url: str) -> None:
    backend = backend_for(store_url)
    try:
        migrate(backend)
        with backend.write_engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            indexes = {ix["name"]: ix for ix in inspect(conn).get_indexes("jobs")}
        assert diff == []
        # compare_metadata cannot see partial-index predicates: check them by hand.
        for name in ("ix_jobs_lease", "ix_jobs_due", "ix_jobs_leased", "ix_jobs_finished"):
            assert name in indexes
        assert indexes["ix_jobs_lease"]["column_names"][0] == "kind"
    finally:
        backend.dispose()


VERSIONS = Path(hearth.store.sql.migrations.__file__).parent / "versions"


def test_migrate_is_idempotent(store_url: str) -> None:
    backend = backend_for(store_url)
    try:
        migrate(backend)
        migrate(backend)
        with backend.write_engine.connect() as conn:
            head = sorted(p.name.split("_", 1)[0] for p in VERSIONS.glob("0*.py"))[-1]
            assert MigrationContext.configure(conn).get_current_revision() == head
    finally:
        backend.dispose()
