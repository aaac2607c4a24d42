"""The declared schema, one for SQLite and PostgreSQL (SQLAlchemy Core).

Migrations in ``migrations/versions`` must produce exactly this; a test compares the
migrated database with this metadata on both backends. Change both together.

Indexes follow the hot queries:
- ``ix_jobs_lease``: leasing scans due jobs of one kind in (priority desc, run_at, seq)
  order; partial on the leasable states so finished jobs never slow it down;
- ``ix_jobs_due``: the earliest future ``run_at`` per kind (waking long-polls);
- ``ix_jobs_leased``: lease expiry for the reaper; ``ix_jobs_finished``: retention;
- ``uq_jobs_idempotency`` and ``ix_jobs_parent`` hold only jobs with a key or a parent
  (most have neither; on PostgreSQL every lease and outcome rewrote a NULL entry).

``certificates`` and ``api_tokens`` back mutual-TLS enrollment and API tokens. A
token's secret is never stored, only its SHA-256. ``uq_api_tokens_live_name`` is
partial: at most one live (unrevoked) token per name, while revoked names may be reused.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

#: An auto-incrementing 64-bit key: SQLite's rowid, PostgreSQL's identity column.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")
_LEASABLE = text("state IN ('queued', 'failed')")

jobs = Table(
    "jobs",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("namespace", String(63), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_type", String(8), nullable=False),
    Column("input_blobs", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("run_at", Double, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("backoff_initial", Double, nullable=False),
    Column("backoff_max", Double, nullable=False),
    Column("backoff_multiplier", Double, nullable=False),
    Column("backoff_jitter", Double, nullable=False),
    Column("lease_ttl", Double, nullable=False),
    Column("timeout", Double, nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("labels", Text, nullable=False),
    Column("parent", String(200), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("lease_token", String(64), nullable=True),
    Column("worker", String(200), nullable=True),
    Column("leased_at", Double, nullable=True),
    Column("lease_expires_at", Double, nullable=True),
    Column("cancel_requested", Boolean, nullable=False),
    Column("progress_percent", Double, nullable=True),
    Column("progress_message", Text, nullable=True),
    Column("result_payload", LargeBinary, nullable=True),
    Column("result_type", String(8), nullable=True),
    Column("result_blobs", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_type", String(200), nullable=True),
    Column("error_retryable", Boolean, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
)
# Unique among keyed jobs only; most jobs have no key and take no index entry.
Index(
    "uq_jobs_idempotency",
    jobs.c.namespace,
    jobs.c.idempotency_key,
    unique=True,
    sqlite_where=text("idempotency_key IS NOT NULL"),
    postgresql_where=text("idempotency_key IS NOT NULL"),
)

Index(
    "ix_jobs_lease",
    jobs.c.kind,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.seq,
    sqlite_where=_LEASABLE,
    postgresql_where=_LEASABLE,
)
Index(
    "ix_jobs_due",
    jobs.c.kind,
    jobs.c.run_at,
    sqlite_where=_LEASABLE,
    postgresql_where=_LEASABLE,
)
Index(
    "ix_jobs_leased",
    jobs.c.lease_expires_at,
    sqlite_where=text("state = 'leased'"),
    postgresql_where=text("state = 'leased'"),
)
Index(
    "ix_jobs_finished",
    jobs.c.finished_at,
    sqlite_where=text("finished_at IS NOT NULL"),
    postgresql_where=text("finished_at IS NOT NULL"),
)
Index(
    "ix_jobs_parent",
    jobs.c.parent,
    sqlite_where=text("parent IS NOT NULL"),
    postgresql_where=text("parent IS NOT NULL"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("job_id", String(40), nullable=False),
    Column("namespace", String(63), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("at", Double, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(200), nullable=True),
    Column("data", Text, nullable=False),
)
Index("ix_job_events_job", job_events.c.job_id, job_events.c.seq)

#: Which blobs each job references (inputs and outputs), for blob garbage collection.
job_blobs = Table(
    "job_blobs",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("digest", String(64), primary_key=True),
)
Index("ix_job_blobs_digest", job_blobs.c.digest)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kinds", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("version", String(64), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("labels", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("registered_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("session", String(64), nullable=False, server_default=""),
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("kinds", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("issued_at", Double, nullable=False),
    Column("not_after", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
)
Index("ix_certificates_name", certificates.c.name)

_LIVE = text("revoked_at IS NULL")

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("namespaces", Text, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
)
Index(
    "uq_api_tokens_live_name",
    api_tokens.c.name,
    unique=True,
    sqlite_where=_LIVE,
    postgresql_where=_LIVE,
)
