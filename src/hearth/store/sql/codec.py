"""Row <-> domain conversions for the SQL store. One mapping, used by every query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    job_from_fields,
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
    """The parameters of a full ``UPDATE jobs ... WHERE id = :_id``: every column that
    transitions may change (identity and spec never do)."""
    row = {"_id": job.id}
    values = job.__dict__
    for field, put in _WRITERS:
        put(values[field], row)
    return row


def _plain(column: str) -> Callable[[Any, dict[str, Any]], None]:
    def put(value: Any, row: dict[str, Any]) -> None:
        row[column] = value
    return put


#: Enum ``.value`` is a Python-level property: these dicts are much cheaper per row.
STATE_TEXT: dict[JobState, str] = {state: state.value for state in JobState}
_EVENT_TEXT: dict[EventType, str] = {kind: kind.value for kind in EventType}


def _state(value: JobState, row: dict[str, Any]) -> None:
    row["state"] = STATE_TEXT[value]


def _progress(value: Progress | None, row: dict[str, Any]) -> None:
    row["progress_percent"] = value.percent if value else None
    row["progress_message"] = value.message if value else None


def _result(value: Result | None, row: dict[str, Any]) -> None:
    row["result_payload"] = value.payload if value else None
    row["result_type"] = value.payload_type if value else None
    row["result_blobs"] = blobs_to_text(value.blobs) if value else None


def _error(value: ErrorInfo | None, row: dict[str, Any]) -> None:
    row["error_message"] = value.message if value else None
    row["error_type"] = value.type if value else None
    row["error_retryable"] = value.retryable if value else None


#: The job fields transitions change, and how each becomes columns.
_COLUMNS_OF: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "state": _state,
    "run_at": _plain("run_at"),
    "attempt": _plain("attempt"),
    "failures": _plain("failures"),
    "lease_token": _plain("lease_token"),
    "worker": _plain("worker"),
    "leased_at": _plain("leased_at"),
    "lease_expires_at": _plain("lease_expires_at"),
    "cancel_requested": _plain("cancel_requested"),
    "progress": _progress,
    "result": _result,
    "last_error": _error,
    "updated_at": _plain("updated_at"),
    "finished_at": _plain("finished_at"),
}
_MUTABLE_FIELDS = tuple(_COLUMNS_OF)
_WRITERS = tuple(_COLUMNS_OF.items())

#: Columns an existing job's update writes (identity and spec never change).
MUTABLE_COLUMNS = (
    "state", "run_at", "attempt", "failures", "lease_token", "worker", "leased_at",
    "lease_expires_at", "cancel_requested", "progress_percent", "progress_message",
    "result_payload", "result_type", "result_blobs", "error_message", "error_type",
    "error_retryable", "updated_at", "finished_at",
)


def job_changes(old: Job, new: Job) -> dict[str, Any]:
    """The parameters of an ``UPDATE jobs ... WHERE id = :_id`` that writes only the
    columns of fields that changed from ``old`` to ``new``. A transition copies every
    field it does not change as the very same object, so identity tells; a field
    rebuilt with an equal value is merely written again."""
    if old.id != new.id:
        raise ValueError(f"job {new.id} cannot be written as a change of job {old.id}")
    before = old.__dict__
    after = new.__dict__
    row = {"_id": new.id}
    for field, put in _WRITERS:
        value = after[field]
        if value is not before[field]:
            put(value, row)
    return row


#: The columns :func:`job_from_values` reads, in this order.
JOB_COLUMNS = (
    "id", "namespace", "kind", "state", "payload", "payload_type", "input_blobs",
    "priority", "run_at", "max_attempts", "backoff_initial", "backoff_max",
    "backoff_multiplier", "backoff_jitter", "lease_ttl", "timeout", "idempotency_key",
    "labels", "parent", "attempt", "failures", "lease_token", "worker", "leased_at",
    "lease_expires_at", "cancel_requested", "progress_percent", "progress_message",
    "result_payload", "result_type", "result_blobs", "error_message", "error_type",
    "error_retryable", "created_at", "updated_at", "finished_at",
)
_STATES = {state.value: state for state in JobState}


def job_from_values(row: Sequence[Any]) -> Job:
    """A job from a row of :data:`JOB_COLUMNS`, by position (the hot path: every lease
    and every outcome loads rows)."""
    (id_, namespace, kind, state, payload, payload_type, input_blobs, priority, run_at,
     max_attempts, b_initial, b_max, b_multiplier, b_jitter, lease_ttl, timeout,
     idempotency_key, labels, parent, attempt, failures, lease_token, worker, leased_at,
     lease_expires_at, cancel_requested, p_percent, p_message, r_payload, r_type,
     r_blobs, e_message, e_type, e_retryable, created_at, updated_at,
     finished_at) = row
    return job_from_fields({
        "id": id_,
        "namespace": namespace,
        "kind": kind,
        "state": _STATES[state],
        "payload": payload if type(payload) is bytes else bytes(payload),
        "payload_type": payload_type,
        "input_blobs": blobs_from_text(input_blobs),
        "priority": priority,
        "run_at": run_at,
        "max_attempts": max_attempts,
        "backoff": _backoff((b_initial, b_max, b_multiplier, b_jitter)),
        "lease_ttl": lease_ttl,
        "timeout": timeout,
        "idempotency_key": idempotency_key,
        "labels": frozen_labels(orjson.loads(labels) if labels and labels != "{}" else None),
        "parent": parent,
        "created_at": created_at,
        "updated_at": updated_at,
        "attempt": attempt,
        "failures": failures,
        "lease_token": lease_token,
        "worker": worker,
        "leased_at": leased_at,
        "lease_expires_at": lease_expires_at,
        "cancel_requested": bool(cancel_requested),
        "progress": None if p_percent is None and p_message is None else Progress(
            p_percent, p_message or ""),
        "result": None if r_type is None else Result(
            bytes(r_payload or b""), r_type, blobs_from_text(r_blobs)),
        "last_error": None if e_message is None else ErrorInfo(
            e_message, e_type or "Error", bool(e_retryable)),
        "finished_at": finished_at,
    })


def job_from_row(row: Any) -> Job:
    """A job from a row mapping with every ``jobs`` column (any order, extra columns
    ignored)."""
    return job_from_values([row[name] for name in JOB_COLUMNS])


def event_to_row(event: Event) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "namespace": event.namespace,
        "kind": event.kind,
        "type": _EVENT_TEXT[event.type],
        "at": event.at,
        "state": STATE_TEXT[event.state],
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
