"""Index only the jobs that have an idempotency key or a parent.

Most jobs have neither, yet every job had an entry for its NULL in both indexes, and
on PostgreSQL every lease and outcome (a non-HOT update: ``state`` is in the
predicates of the leasing indexes) wrote one into each again. Partial indexes leave
the NULLs out: an updated job costs the server about 36 -> 20 µs (measured with
256-row batch updates on 20,000 jobs). Uniqueness of (namespace, key) for keyed jobs
is unchanged; the queries that use these indexes always name a key or a parent.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The partial indexes of ``jobs`` before this revision, recreated by hand after
#: SQLite's table copy so their predicates cannot be lost in reflection.
_KEPT: tuple[tuple[str, list[Any], str], ...] = (
    ("ix_jobs_lease", ["kind", sa.text("priority DESC"), "run_at", "seq"],
     "state IN ('queued', 'failed')"),
    ("ix_jobs_due", ["kind", "run_at"], "state IN ('queued', 'failed')"),
    ("ix_jobs_leased", ["lease_expires_at"], "state = 'leased'"),
    ("ix_jobs_finished", ["finished_at"], "finished_at IS NOT NULL"),
)


def _where(clause: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(clause), "postgresql_where": sa.text(clause)}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite cannot drop a table constraint: the table is copied without it.
        with op.batch_alter_table("jobs", recreate="always") as batch:
            batch.drop_constraint("uq_jobs_idempotency", type_="unique")
        for name, columns, where in _KEPT:
            op.execute(f"DROP INDEX IF EXISTS {name}")
            op.create_index(name, "jobs", columns, **_where(where))
    else:
        op.drop_constraint("uq_jobs_idempotency", "jobs", type_="unique")
    op.create_index("uq_jobs_idempotency", "jobs", ["namespace", "idempotency_key"],
                    unique=True, **_where("idempotency_key IS NOT NULL"))
    op.drop_index("ix_jobs_parent", "jobs")
    op.create_index("ix_jobs_parent", "jobs", ["parent"], **_where("parent IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_jobs_parent", "jobs")
    op.create_index("ix_jobs_parent", "jobs", ["parent"])
    op.drop_index("uq_jobs_idempotency", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.create_unique_constraint("uq_jobs_idempotency", ["namespace", "idempotency_key"])
