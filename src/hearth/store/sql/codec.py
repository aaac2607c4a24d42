"""Row <-> domain conversions for the SQL store. One mapping, used by every query."""

from __future__ import annotations

from typing import Any

import orjson

from hearth.domain.jobs import (
    BlobRef,
    ErrorInfo,
    Event,
    EventType,
    Job,
    JobState,
    Progress,
    Result,
    frozen_labels,
)
from hearth.domain.retry import Backoff
from hearth.store.port import Node

_BACKOFFS: dict[tuple[float, float, float, float], Backoff] = {}


def _backoff(key: tuple[float, float, float, float]) -> Backoff:
    found = _BACKOFFS.get(key)
    if found is None:
        found = Backoff(*key)
        if len(_BACKOFFS) < 1024:
            _BACKOFFS[key] = found
    return found


def blobs_to_text(blobs: tuple[BlobRef, ...]) -> str:
    return orjson.dumps([[b.digest, b.size, b.name] for b in blobs]).decode()


def blobs_from_text(value: str | None) -> tuple[BlobRef, ...]:
    if not value or value == "[]":
        return ()
    return tuple(BlobRef(d, s, n) for d, s, n in orjson.loads(value))


def job_to_row(job: Job) -> dict[str, Any]:
    """Every column of ``jobs`` except ``seq``: the spec, then what transitions change."""
    row = {
        "id": job.id,
        "namespace": job.namespace,
        "kind": job.kind,
        "payload": job.payload,
        "payload_type": job.payload_type,
        "input_blobs": blobs_to_text(job.input_blobs),
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "backoff_initial": job.backoff.initial,
        "backoff_max": job.backoff.max,
        "backoff_multiplier": job.backoff.multiplier,
        "backoff_jitter": job.backoff.jitter,
        "lease_ttl": job.lease_ttl,
        "timeout": job.timeout,
        "idempotency_key": job.idempotency_key,
        "labels": orjson.dumps(dict(job.labels)).decode() if job.labels else "{}",
        "parent": job.parent,
        "created_at": job.created_at,
    }
    row.update(job_update_row(job))
    del row["_id"]
    return row


def job_update_row(job: Job) -> dict[str, Any]:
    """The parameters of the hot ``UPDATE jobs ... WHERE id = :_id``: only what
    transitions change (identity and spec never do)."""
    result = job.result
    error = job.last_error
    progress = job.progress
    return {
        "_id": job.id,
        "state": job.state.value,
        "run_at": job.run_at,
        "attempt": job.attempt,
        "failures": job.failures,
        "lease_token": job.lease_token,
        "worker": job.worker,
        "leased_at": job.leased_at,
        "lease_expires_at": job.lease_expires_at,
        "cancel_requested": job.cancel_requested,
        "progress_percent": progress.percent if progress else None,
        "progress_message": progress.message if progress else None,
        "result_payload": result.payload if result else None,
        "result_type": result.payload_type if result else None,
        "result_blobs": blobs_to_text(result.blobs) if result else None,
        "error_message": error.message if error else None,
        "error_type": error.type if error else None,
        "error_retryable": error.retryable if error else None,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
    }


#: Columns an existing job's update writes (identity and spec never change).
MUTABLE_COLUMNS = (
    "state", "run_at", "attempt", "failures", "lease_token", "worker", "leased_at",
    "lease_expires_at", "cancel_requested", "progress_percent", "progress_message",
    "result_payload", "result_type", "result_blobs", "error_message", "error_type",
    "error_retryable", "updated_at", "finished_at",
)


def job_from_row(row: Any) -> Job:
    result = None
    if row["result_type"] is not None:
        result = Result(
            payload=bytes(row["result_payload"] or b""),
            payload_type=row["result_type"],
            blobs=blobs_from_text(row["result_blobs"]),
        )
    error = None
    if row["error_message"] is not None:
        error = ErrorInfo(row["error_message"], row["error_type"] or "Error",
                          bool(row["error_retryable"]))
    progress = None
    if row["progress_percent"] is not None or row["progress_message"] is not None:
        progress = Progress(row["progress_percent"], row["progress_message"] or "")
    labels = row["labels"]
    return Job(
        id=row["id"],
        namespace=row["namespace"],
        kind=row["kind"],
        state=JobState(row["state"]),
        payload=bytes(row["payload"]),
        payload_type=row["payload_type"],
        input_blobs=blobs_from_text(row["input_blobs"]),
        priority=row["priority"],
        run_at=row["run_at"],
        max_attempts=row["max_attempts"],
        backoff=_backoff((row["backoff_initial"], row["backoff_max"],
                          row["backoff_multiplier"], row["backoff_jitter"])),
        lease_ttl=row["lease_ttl"],
        timeout=row["timeout"],
        idempotency_key=row["idempotency_key"],
        labels=frozen_labels(orjson.loads(labels) if labels and labels != "{}" else None),
        parent=row["parent"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempt=row["attempt"],
        failures=row["failures"],
        lease_token=row["lease_token"],
        worker=row["worker"],
        leased_at=row["leased_at"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested=bool(row["cancel_requested"]),
        progress=progress,
        result=result,
        last_error=error,
        finished_at=row["finished_at"],
    )


def event_to_row(event: Event) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "namespace": event.namespace,
        "kind": event.kind,
        "type": event.type.value,
        "at": event.at,
        "state": event.state.value,
        "attempt": event.attempt,
        "worker": event.worker,
        "data": orjson.dumps(dict(event.data)).decode() if event.data else "{}",
    }


def event_from_row(row: Any) -> Event:
    data = row["data"]
    return Event(
        job_id=row["job_id"],
        type=EventType(row["type"]),
        at=row["at"],
        state=JobState(row["state"]),
        attempt=row["attempt"],
        worker=row["worker"],
        data=orjson.loads(data) if data and data != "{}" else {},
        seq=row["seq"],
        namespace=row["namespace"],
        kind=row["kind"],
    )


def node_to_row(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "kinds": orjson.dumps(list(node.kinds)).decode(),
        "host": node.host,
        "version": node.version,
        "concurrency": node.concurrency,
        "labels": orjson.dumps(node.labels).decode(),
        "status": node.status,
        "registered_at": node.registered_at,
        "last_seen": node.last_seen,
        "session": node.session,
    }


def node_from_row(row: Any, in_flight: int = 0) -> Node:
    return Node(
        name=row["name"],
        kinds=tuple(orjson.loads(row["kinds"])),
        host=row["host"],
        version=row["version"],
        concurrency=row["concurrency"],
        registered_at=row["registered_at"],
        last_seen=row["last_seen"],
        in_flight=in_flight,
        status=row["status"],
        labels=orjson.loads(row["labels"]),
        session=row["session"],
    )
