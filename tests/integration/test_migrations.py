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


def test_0004_keeps_jobs_and_makes_the_key_and_parent_indexes_partial(store_url: str) -> None:
    """Upgrading a store that holds jobs (SQLite copies the table to drop the old
    constraint): every row survives, the leasing indexes keep their predicates, and
    keyed jobs stay unique per namespace while unkeyed ones take no index entry."""
    import time

    from sqlalchemy import text

    from hearth.domain.jobs import JobSpec
    from hearth.errors import Conflict
    from hearth.ids import new_job_id
    from hearth.store.sql.jobs import SqlStore

    backend = backend_for(store_url)
    try:
        migrate(backend, "0003")
        store = SqlStore(backend)
        specs = [JobSpec(kind="k", idempotency_key="a"), JobSpec(kind="k", parent="p-1"),
                 JobSpec(kind="k"), JobSpec(kind="k")]
        before = {s.job.id for s in store.submit(specs, now=time.time(), new_id=new_job_id)}
        migrate(backend)
        with backend.write_engine.connect() as conn:
            ids = {r[0] for r in conn.execute(text("SELECT id FROM jobs"))}
            if backend.name == "sqlite":
                defs = dict(conn.execute(text(
                    "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'jobs' "
                    "AND type = 'index' AND sql IS NOT NULL")).all())
            else:
                defs = dict(conn.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'")).all())
        assert ids == before
        for name, predicate in (("ix_jobs_lease", "queued"), ("ix_jobs_due", "queued"),
                                ("ix_jobs_leased", "leased"),
                                ("ix_jobs_finished", "finished_at IS NOT NULL"),
                                ("ix_jobs_parent", "parent IS NOT NULL"),
                                ("uq_jobs_idempotency", "idempotency_key IS NOT NULL")):
            assert predicate in defs[name], (name, defs[name])
        assert "UNIQUE" in defs["uq_jobs_idempotency"].upper()
        # Same key, same namespace: the existing job answers; a raw duplicate is refused.
        again = store.submit([JobSpec(kind="k", idempotency_key="a")], now=time.time(),
                             new_id=new_job_id)
        assert not again[0].created and again[0].job.id in before
        from hearth.store.sql.codec import job_to_row
        from hearth.store.sql.schema import jobs
        dup = job_to_row(again[0].job)
        dup["id"] = new_job_id()
        dup.pop("seq", None)
        try:
            with backend.write() as tx:
                backend.rows.insert(tx, jobs, [dup])
        except Conflict:
            pass
        else:
            raise AssertionError("a second job with the same idempotency key was stored")
        store.submit([JobSpec(kind="k"), JobSpec(kind="k")], now=time.time(), new_id=new_job_id)
    finally:
        backend.dispose()
