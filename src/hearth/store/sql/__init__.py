"""The SQL store adapter (SQLite and PostgreSQL) and its migrations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from hearth.store.sql.backend import Backend, backend_for
from hearth.store.sql.jobs import SqlStore
from hearth.store.sql.tx import translate_errors

__all__ = ["SqlStore", "migrate", "open_sql_store"]

_MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(backend: Backend, revision: str = "head") -> None:
    """Bring the database to ``revision``. On PostgreSQL an advisory lock keeps
    several coordinators starting at once from migrating twice."""
    # Quiet before the first import: alembic logs its plugin set-up at INFO then.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command

    with translate_errors(), backend.write_engine.connect() as conn:
        if backend.name == "postgres":
            conn.execute(text("SELECT pg_advisory_lock(7843001)"))
            conn.commit()
        try:
            command.upgrade(_alembic_config(conn), revision)
            conn.commit()
        finally:
            if backend.name == "postgres":
                conn.execute(text("SELECT pg_advisory_unlock(7843001)"))
                conn.commit()


def open_sql_store(url: str, *, migrate_schema: bool = True) -> SqlStore:
    backend = backend_for(url)
    try:
        if migrate_schema:
            migrate(backend)
    except BaseException:
        backend.dispose()
        raise
    return SqlStore(backend)
