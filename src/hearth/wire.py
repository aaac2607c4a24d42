"""The HTTP/JSON wire format, shared by the coordinator and every client.

One set of pydantic models describes each request and response; the server uses them
for validation and its OpenAPI document, the Python client for parsing. Conversion to
and from the domain lives here too, so there is exactly one mapping.

Payloads travel as JSON (``payload``) or as base64 bytes (``payload_b64``), never both.
Times are epoch seconds (floats, UTC).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from hearth.domain.jobs import BlobRef, ErrorInfo, Event, Job, JobSpec, Progress, Result
from hearth.domain.retry import Backoff
from hearth.errors import ValidationError

#: Request bodies: unknown fields are refused, and so are values of the wrong JSON
#: type ("3" or true where a number belongs); an integer is accepted for a float.
_STRICT = ConfigDict(extra="forbid", strict=True)


class WireModel(BaseModel):
    """The base of every wire model. Validators are built when a model is first used,
    not at import: a process loads the whole wire format but uses a few of its models
    (importing the wire format took ~45 ms less on the 2-core bench machine)."""

    model_config = ConfigDict(defer_build=True)


class BackoffIn(WireModel):
    model_config = _STRICT
    initial: float = Field(1.0, gt=0, description="seconds before the first retry")
    max: float = Field(300.0, gt=0, description="longest delay between attempts")
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.1, ge=0, le=1, description="fraction of the delay to randomise")


class BlobRefIn(WireModel):
    model_config = _STRICT
    digest: str = Field(description="SHA-256 of the blob, 64 lowercase hex characters")
    name: str = ""


class BlobRefOut(WireModel):
    digest: str
    size: int
    name: str = ""


class JobSubmit(WireModel):
    """A job to run. Give ``payload`` (any JSON) or ``payload_b64`` (bytes), not both."""

    model_config = _STRICT
    kind: str = Field(description="handler kind, ^[a-z0-9][a-z0-9._-]{0,63}$")
    namespace: str = "default"
    payload: Any = None
    payload_b64: str | None = None
    input_blobs: list[BlobRefIn] = Field(default_factory=list)
    priority: int = Field(0, description="higher runs first; equal priority is FIFO")
    delay: float = Field(0.0, ge=0, description="seconds to wait before the job is due")
    run_at: float | None = Field(None, description="epoch seconds; overrides delay")
    max_attempts: int = Field(3, ge=0, le=1_000_000, description="0 means unlimited")
    backoff: BackoffIn | None = Field(
        None, description="retry delays; omitted: initial 1 s, max 300 s, multiplier 2, "
        "jitter 0.1")
    lease_ttl: float = Field(30.0, ge=1, description="seconds a lease lasts without heartbeat")
    timeout: float | None = Field(None, gt=0, description="execution timeout per attempt")
    idempotency_key: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    parent: str | None = None


class JobBatchSubmit(WireModel):
    model_config = _STRICT
    jobs: list[JobSubmit] = Field(min_length=1, max_length=5000)


class ProgressOut(WireModel):
    percent: float | None = None
    message: str = ""


class ErrorOut(WireModel):
    message: str
    type: str = "Error"
    retryable: bool = True


class ResultOut(WireModel):
    payload: Any = None
    payload_b64: str | None = None
    payload_type: Literal["json", "bytes"] = "bytes"
    blobs: list[BlobRefOut] = Field(default_factory=list)


class JobOut(WireModel):
    id: str
    namespace: str
    kind: str
    state: Literal["queued", "leased", "succeeded", "failed", "dead", "cancelled"]
    payload: Any = None
    payload_b64: str | None = None
    payload_type: Literal["json", "bytes"] = "bytes"
    input_blobs: list[BlobRefOut] = Field(default_factory=list)
    priority: int = 0
    run_at: float
    max_attempts: int
    backoff: BackoffIn
    lease_ttl: float
    timeout: float | None = None
    idempotency_key: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    parent: str | None = None
    attempt: int = 0
    failures: int = 0
    worker: str | None = None
    leased_at: float | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    progress: ProgressOut | None = None
    result: ResultOut | None = None
    last_error: ErrorOut | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    #: Only in submit answers: false when an idempotency key matched an existing job.
    created: bool | None = None

    def payload_bytes(self) -> bytes:
        return decode_payload(self.payload, self.payload_b64, self.payload_type)


class JobBatchOut(WireModel):
    jobs: list[JobOut]


class JobPage(WireModel):
    jobs: list[JobOut]
    next_cursor: str | None = None


class EventOut(WireModel):
    seq: int
    job_id: str
    namespace: str
    kind: str
    type: str
    at: float
    state: str
    attempt: int
    worker: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EventPage(WireModel):
    events: list[EventOut]


# -- workers ---------------------------------------------------------------------------


class NodeRegister(WireModel):
    model_config = _STRICT
    name: str
    kinds: list[str] = Field(min_length=1)
    host: str = ""
    version: str = ""
    concurrency: int = Field(1, ge=1, le=10_000)
    labels: dict[str, str] = Field(default_factory=dict)
    #: Random per worker process; a new one expires the leases of the previous
    #: process of this name at once (it crashed and was restarted).
    session: str = Field("", max_length=64)


class NodeOut(WireModel):
    name: str
    kinds: list[str]
    host: str = ""
    version: str = ""
    concurrency: int = 1
    registered_at: float
    last_seen: float
    in_flight: int = 0
    status: str = "active"
    labels: dict[str, str] = Field(default_factory=dict)
    #: Jobs of this name's previous process expired by this registration.
    released: int = 0


class NodeList(WireModel):
    nodes: list[NodeOut]


class LeaseRequest(WireModel):
    """Ask for up to ``max_jobs`` jobs of ``kinds``, waiting up to ``wait`` seconds."""

    model_config = _STRICT
    worker: str
    kinds: list[str] = Field(min_length=1, max_length=256)
    max_jobs: int = Field(1, ge=1, le=1000)
    wait: float = Field(0.0, ge=0, le=60)
    namespaces: list[str] = Field(default_factory=list)


class LeaseOut(WireModel):
    job: JobOut
    token: str = Field(description="fencing token: send it back with heartbeats and outcomes")


class LeaseBatch(WireModel):
    leases: list[LeaseOut]


class HeartbeatIn(WireModel):
    model_config = _STRICT
    job_id: str
    token: str
    progress: ProgressOut | None = None


class HeartbeatBatch(WireModel):
    model_config = _STRICT
    worker: str
    items: list[HeartbeatIn] = Field(min_length=1, max_length=5000)


class ResultIn(WireModel):
    model_config = _STRICT
    payload: Any = None
    payload_b64: str | None = None
    blobs: list[BlobRefIn] = Field(default_factory=list)


class ErrorIn(WireModel):
    model_config = _STRICT
    message: str = Field(max_length=16_384)
    type: str = Field("Error", max_length=200)
    retryable: bool = True


class FinishIn(WireModel):
    """The outcome of an attempt: ``succeeded`` (with ``result``), ``failed`` (with
    ``error``), ``cancelled`` (handler stopped after a cancel request) or ``released``
    (worker shutting down; re-queued at once, no attempt used)."""

    model_config = _STRICT
    job_id: str
    token: str
    outcome: Literal["succeeded", "failed", "cancelled", "released"]
    result: ResultIn | None = None
    error: ErrorIn | None = None


class FinishBatch(WireModel):
    model_config = _STRICT
    worker: str
    items: list[FinishIn] = Field(min_length=1, max_length=5000)


class ItemOut(WireModel):
    """Per-item answer of a batch: ``status`` 200 with the job, or an error status."""

    job_id: str
    status: int
    error: str | None = None
    code: str | None = None
    state: str | None = None
    cancel_requested: bool = False
    lease_expires_at: float | None = None


class ItemBatchOut(WireModel):
    items: list[ItemOut]


class BlobOut(WireModel):
    digest: str
    size: int


class ErrorBody(WireModel):
    """Every error answer: a sentence for people and a stable code for programs."""

    error: str
    code: str


# -- conversions -----------------------------------------------------------------------


def decode_payload(payload: Any, payload_b64: str | None, payload_type: str = "") -> bytes:
    if payload_b64 is not None:
        try:
            return base64.b64decode(payload_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("payload_b64 is not valid base64") from exc
    if payload is None and payload_type != "json":
        return b""
    return _json_bytes(payload)


def _json_bytes(payload: Any) -> bytes:
    """The payload as JSON; ``ValidationError`` for JSON that orjson cannot write (an
    integer beyond 64 bits, nesting deeper than 255), which workers could not read."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:
        raise ValidationError(f"payload is not usable JSON: {exc} (integers must fit in "
                              "64 bits)") from exc


def _payload_in(payload: Any, payload_b64: str | None, fields_set: set[str]
                ) -> tuple[bytes, Literal["json", "bytes"]]:
    if payload_b64 is not None:
        if "payload" in fields_set:
            raise ValidationError("give either payload (JSON) or payload_b64 (bytes), not both")
        return decode_payload(None, payload_b64), "bytes"
    if "payload" in fields_set:
        return _json_bytes(payload), "json"
    return b"", "bytes"


_DEFAULT_BACKOFF = Backoff()


def spec_from_wire(item: JobSubmit) -> JobSpec:
    payload, payload_type = _payload_in(item.payload, item.payload_b64, item.model_fields_set)
    wanted = item.backoff
    backoff = _DEFAULT_BACKOFF if wanted is None else Backoff(
        wanted.initial, wanted.max, wanted.multiplier, wanted.jitter)
    return JobSpec(
        kind=item.kind,
        payload=payload,
        payload_type=payload_type,
        namespace=item.namespace,
        input_blobs=tuple(BlobRef(b.digest, 0, b.name) for b in item.input_blobs),
        priority=item.priority,
        delay=item.delay,
        run_at=item.run_at,
        max_attempts=item.max_attempts,
        backoff=backoff,
        lease_ttl=item.lease_ttl,
        timeout=item.timeout,
        idempotency_key=item.idempotency_key,
        labels=item.labels,
        parent=item.parent,
    )


def result_from_wire(item: ResultIn | None) -> Result:
    if item is None:
        return Result()
    payload, payload_type = _payload_in(item.payload, item.payload_b64, item.model_fields_set)
    blobs = tuple(BlobRef(b.digest, 0, b.name) for b in item.blobs) if item.blobs else ()
    return Result(payload, payload_type, blobs)


def _text(value: str) -> str:
    """Free text a worker reports (exception messages, progress) with NUL written as
    ``\\x00``: PostgreSQL cannot store NUL in text, SQLite can, and a failure's message
    must never make its outcome, or the batch it travels in, unrecordable."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def error_from_wire(item: ErrorIn | None) -> ErrorInfo:
    if item is None:
        return ErrorInfo("the worker reported a failure without a message")
    return ErrorInfo(_text(item.message), _text(item.type), item.retryable)


def _payload_out(data: bytes, payload_type: str) -> dict[str, Any]:
    if payload_type == "json":
        return {"payload": orjson.loads(data) if data else None, "payload_b64": None,
                "payload_type": "json"}
    return {"payload": None, "payload_b64": base64.b64encode(data).decode() if data else None,
            "payload_type": "bytes"}


def _blobs_out(blobs: tuple[BlobRef, ...]) -> list[dict[str, Any]]:
    return [{"digest": b.digest, "size": b.size, "name": b.name} for b in blobs]


_BACKOFF_WIRE: dict[Backoff, dict[str, float]] = {}


def _backoff_out(backoff: Backoff) -> dict[str, float]:
    """Shared per distinct backoff (frozen, and answers are only serialised)."""
    found = _BACKOFF_WIRE.get(backoff)
    if found is None:
        found = {"initial": backoff.initial, "max": backoff.max,
                 "multiplier": backoff.multiplier, "jitter": backoff.jitter}
        if len(_BACKOFF_WIRE) < 1024:
            _BACKOFF_WIRE[backoff] = found
    return found


def job_to_wire(job: Job) -> dict[str, Any]:
    """A plain dict matching :class:`JobOut`. Built by hand, without intermediate
    dicts: every submitted and every leased job goes through here."""
    json_payload = job.payload_type == "json"
    data = job.payload
    result = job.result
    progress = job.progress
    error = job.last_error
    return {
        "id": job.id,
        "namespace": job.namespace,
        "kind": job.kind,
        "state": job.state.value,
        "payload": (orjson.loads(data) if data else None) if json_payload else None,
        "payload_b64": None if json_payload or not data else base64.b64encode(data).decode(),
        "payload_type": job.payload_type,
        "input_blobs": _blobs_out(job.input_blobs) if job.input_blobs else [],
        "priority": job.priority,
        "run_at": job.run_at,
        "max_attempts": job.max_attempts,
        "backoff": _backoff_out(job.backoff),
        "lease_ttl": job.lease_ttl,
        "timeout": job.timeout,
        "idempotency_key": job.idempotency_key,
        "labels": dict(job.labels) if job.labels else {},
        "parent": job.parent,
        "attempt": job.attempt,
        "failures": job.failures,
        "worker": job.worker,
        "leased_at": job.leased_at,
        "lease_expires_at": job.lease_expires_at,
        "cancel_requested": job.cancel_requested,
        "progress": None if progress is None else {
            "percent": progress.percent, "message": progress.message},
        "result": None if result is None else {
            **_payload_out(result.payload, result.payload_type),
            "blobs": _blobs_out(result.blobs)},
        "last_error": None if error is None else {
            "message": error.message, "type": error.type, "retryable": error.retryable},
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
    }


def event_to_wire(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "job_id": event.job_id,
        "namespace": event.namespace,
        "kind": event.kind,
        "type": event.type.value,
        "at": event.at,
        "state": event.state.value,
        "attempt": event.attempt,
        "worker": event.worker,
        "data": dict(event.data),
    }


def progress_from_wire(item: ProgressOut | None) -> Progress | None:
    if item is None:
        return None
    return Progress(item.percent, _text(item.message))
