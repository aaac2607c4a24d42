"""Initial schema: jobs, job_events, job_blobs, nodes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LEASABLE = sa.text("state IN ('queued', 'failed')")


def _where(clause: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(clause), "postgresql_where": sa.text(clause)}


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_type", sa.String(8), nullable=False),
        sa.Column("input_blobs", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("run_at", sa.Double(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff_initial", sa.Double(), nullable=False),
        sa.Column("backoff_max", sa.Double(), nullable=False),
        sa.Column("backoff_multiplier", sa.Double(), nullable=False),
        sa.Column("backoff_jitter", sa.Double(), nullable=False),
        sa.Column("lease_ttl", sa.Double(), nullable=False),
        sa.Column("timeout", sa.Double(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("parent", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("leased_at", sa.Double(), nullable=True),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("progress_percent", sa.Double(), nullable=True),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.Column("result_payload", sa.LargeBinary(), nullable=True),
        sa.Column("result_type", sa.String(8), nullable=True),
        sa.Column("result_blobs", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_type", sa.String(200), nullable=True),
        sa.Column("error_retryable", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("namespace", "idempotency_key", name="uq_jobs_idempotency"),
    )
    op.create_index("ix_jobs_lease", "jobs",
                    ["kind", sa.text("priority DESC"), "run_at", "seq"], **_where(
                        "state IN ('queued', 'failed')"))
    op.create_index("ix_jobs_due", "jobs", ["kind", "run_at"],
                    **_where("state IN ('queued', 'failed')"))
    op.create_index("ix_jobs_leased", "jobs", ["lease_expires_at"],
                    **_where("state = 'leased'"))
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"],
                    **_where("finished_at IS NOT NULL"))
    op.create_index("ix_jobs_parent", "jobs", ["parent"])

    op.create_table(
        "job_events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "seq"])

    op.create_table(
        "job_blobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
    )
    op.create_index("ix_job_blobs_digest", "job_blobs", ["digest"])

    op.create_table(
        "nodes",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_table("job_blobs")
    op.drop_table("job_events")
    op.drop_table("jobs")
