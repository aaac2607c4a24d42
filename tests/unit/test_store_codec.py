"""Rows <-> jobs in the SQL store (``hearth.store.sql.codec``): a job survives the trip
through its columns, and an update writes exactly the columns whose fields changed."""

from __future__ import annotations

import pytest

from hearth.domain import transitions as tr
from hearth.domain.jobs import BlobRef, ErrorInfo, JobSpec, Result
from hearth.domain.retry import Backoff
from hearth.store.sql import codec

NOW = 1_000.0


def _queued():
    spec = JobSpec(kind="resize", payload=b'{"w": 1}', payload_type="json", namespace="media",
                   input_blobs=(BlobRef("a" * 64, 3, "in.png"),), priority=2,
                   max_attempts=5, backoff=Backoff(1.0, 9.0, 3.0, 0.0), timeout=60.0,
                   idempotency_key="k1", labels={"team": "x"}, parent="p1")
    job, _ = tr.create(spec, "j_" + "1" * 32, NOW)
    return job


def _values(job):
    row = codec.job_to_row(job)
    return [row[name] for name in codec.JOB_COLUMNS]


def test_every_field_survives_the_columns() -> None:
    job = _queued()
    leased, _ = tr.lease(job, worker="w1", token="t" * 24, now=NOW)
    failed, _ = tr.fail(leased, token="t" * 24, now=NOW + 1,
                        error=ErrorInfo("boom", "ValueError", True), rand=0.5)
    for value in (job, leased, failed):
        assert codec.job_from_values(_values(value)) == value


def test_a_lease_writes_only_what_leasing_changes() -> None:
    job = _queued()
    leased, _ = tr.lease(job, worker="w1", token="t" * 24, now=NOW + 2)
    row = codec.job_changes(job, leased)
    assert set(row) == {"_id", "state", "attempt", "lease_token", "worker", "leased_at",
                        "lease_expires_at", "updated_at"}
    assert row["state"] == "leased" and row["_id"] == job.id


def test_a_success_writes_the_result_columns_and_nothing_of_the_spec() -> None:
    leased, _ = tr.lease(_queued(), worker="w1", token="t" * 24, now=NOW)
    done, _ = tr.succeed(leased, token="t" * 24, now=NOW + 1,
                         result=Result(b"ok", "bytes", (BlobRef("b" * 64, 2, "out"),)))
    row = codec.job_changes(leased, done)
    assert {"result_payload", "result_type", "result_blobs", "finished_at"} <= set(row)
    assert not set(row) & {"payload", "labels", "kind", "attempt", "worker"}
    assert row["result_blobs"] == codec.blobs_to_text(done.result.blobs)


def test_no_change_writes_nothing_but_the_key() -> None:
    job = _queued()
    assert codec.job_changes(job, job) == {"_id": job.id}


def test_a_change_of_another_job_is_refused() -> None:
    job = _queued()
    other, _ = tr.create(JobSpec(kind="x"), "j_" + "2" * 32, NOW)
    with pytest.raises(ValueError, match="cannot be written"):
        codec.job_changes(job, other)
