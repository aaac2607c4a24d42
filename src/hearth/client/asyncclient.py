"""The asynchronous Python client: every route of the HTTP API as a method.

This is the one implementation of the client; :class:`hearth.client.Client` derives
the blocking twin from it. Requests and answers are the pydantic models of
:mod:`hearth.wire`, so the JSON shapes are never restated here. The coordinator is
found with :func:`hearth.config.resolve_endpoint` (argument, ``$HEARTH_URL``, then the
data dir). It never logs or repeats the token, and it never retries a request that
changes state: retrying is the caller's decision (the worker runtime makes it).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from hearth.client.admin import AdminMethods
from hearth.client.blobio import CHUNK, BlobSource, PartFile, upload_body
from hearth.client.build import BlobArg, b64, blob_ref, build_model, job_path, job_submit
from hearth.client.http import ClientCert, HttpCore, model_body
from hearth.client.sse import SSEParser
from hearth.config import resolve_endpoint
from hearth.domain.validation import check_digest
from hearth.errors import Unavailable, ValidationError
from hearth.wire import (
    BackoffIn,
    BlobOut,
    EventOut,
    EventPage,
    FinishBatch,
    FinishIn,
    HeartbeatBatch,
    HeartbeatIn,
    ItemBatchOut,
    ItemOut,
    JobBatchOut,
    JobBatchSubmit,
    JobOut,
    JobPage,
    JobSubmit,
    LeaseBatch,
    LeaseOut,
    LeaseRequest,
    NodeList,
    NodeOut,
    NodeRegister,
)

TERMINAL = frozenset({"succeeded", "dead", "cancelled"})
#: Longest single long-poll of ``GET /v1/jobs/{id}/wait`` (the server caps it at 60).
WAIT_SLICE = 30.0
#: Jobs per ``POST /v1/jobs/batch``; each chunk is all-or-nothing on its own.
SUBMIT_CHUNK = 1000
#: Items per heartbeat or finish request (the wire limit is 5000).
ITEM_CHUNK = 5000
#: The watch stream sends a keepalive every 15 s; silence longer than this is a drop.
WATCH_READ_TIMEOUT = 45.0

class AsyncClient(AdminMethods):
    """Talk to a Hearth coordinator. Use as ``async with AsyncClient() as client:``."""

    def __init__(self, url: str | None = None, *, token: str | None = None,
                 data: str | os.PathLike[str] | None = None, timeout: float = 30.0,
                 bundle: str | os.PathLike[str] | None = None) -> None:
        endpoint = resolve_endpoint(url, token, data, bundle)
        self.url = endpoint.url
        self.timeout = timeout
        #: The bundle's name when this client authenticates with a certificate.
        self.identity = endpoint.bundle.name if endpoint.tls and endpoint.bundle else None
        cert = None
        if self.identity is not None and endpoint.bundle is not None:
            info = endpoint.bundle.info()
            cert = ClientCert(info.name, info.not_before, info.not_after)
        self._core = HttpCore(endpoint.url, endpoint.token, timeout=timeout,
                              ssl_context=endpoint.ssl_context(),
                              cert=cert)

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r})"

    def retarget(self, url: str) -> None:
        """Talk to the same coordinator at another address from now on (a worker that
        found it again over mDNS after its address changed)."""
        self._core.retarget(url)
        self.url = self._core.url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._core.aclose()

    # -- jobs ---------------------------------------------------------------------------

    async def submit(
        self,
        kind: str,
        payload: Any = None,
        *,
        data: bytes | None = None,
        namespace: str = "default",
        blobs: Iterable[BlobArg] = (),
        priority: int = 0,
        delay: float = 0.0,
        run_at: float | None = None,
        max_attempts: int = 3,
        backoff: Mapping[str, float] | BackoffIn | None = None,
        lease_ttl: float = 30.0,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        parent: str | None = None,
    ) -> JobOut:
        """Submit one job. ``payload`` is any JSON value, ``data`` raw bytes; not both.

        With an ``idempotency_key`` that matches an existing job, that job is returned
        with ``created`` false.
        """
        if payload is not None and data is not None:
            raise ValidationError(
                "give either payload (a JSON value) or data (bytes) for a job, not both")
        fields: dict[str, Any] = {
            "kind": kind, "namespace": namespace, "input_blobs": [blob_ref(b) for b in blobs],
            "priority": priority, "delay": delay, "run_at": run_at,
            "max_attempts": max_attempts, "lease_ttl": lease_ttl, "timeout": timeout,
            "idempotency_key": idempotency_key, "labels": dict(labels or {}),
            "parent": parent,
        }
        if payload is not None:
            fields["payload"] = payload
        if data is not None:
            fields["payload_b64"] = b64(data)
        if backoff is not None:
            fields["backoff"] = (backoff if isinstance(backoff, BackoffIn)
                                 else build_model(BackoffIn, **dict(backoff)))
        job = build_model(JobSubmit, **fields)
        response = await self._core.request("POST", "/v1/jobs", body=model_body(job))
        return JobOut.model_validate_json(response.content)

    async def submit_many(self, jobs: Sequence[JobSubmit | Mapping[str, Any]]) -> list[JobOut]:
        """Submit many jobs with ``POST /v1/jobs/batch``, in chunks of 1000.

        Each chunk is all-or-nothing; if a later chunk fails, earlier ones stay submitted
        (give idempotency keys to make a resubmission safe).
        """
        items = [job_submit(item) for item in jobs]
        out: list[JobOut] = []
        for start in range(0, len(items), SUBMIT_CHUNK):
            batch = JobBatchSubmit.model_construct(jobs=items[start:start + SUBMIT_CHUNK])
            response = await self._core.request(
                "POST", "/v1/jobs/batch", body=model_body(batch))
            out.extend(JobBatchOut.model_validate_json(response.content).jobs)
        return out

    async def get(self, job_id: str) -> JobOut:
        response = await self._core.request("GET", f"/v1/jobs/{job_path(job_id)}")
        return JobOut.model_validate_json(response.content)

    async def list_jobs(
        self,
        namespace: str | None = None,
        *,
        kinds: Iterable[str] = (),
        states: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        worker: str | None = None,
        parent: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first; pass ``next_cursor`` back for the next one."""
        params: list[tuple[str, str | int | float]] = [("limit", limit)]
        params += [("kind", k) for k in kinds]
        params += [("state", s) for s in states]
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        for name, value in (("namespace", namespace), ("worker", worker),
                            ("parent", parent), ("cursor", cursor)):
            if value is not None:
                params.append((name, value))
        response = await self._core.request("GET", "/v1/jobs", params=params)
        return JobPage.model_validate_json(response.content)

    async def iter_jobs(
        self,
        namespace: str | None = None,
        *,
        kinds: Iterable[str] = (),
        states: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        worker: str | None = None,
        parent: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[JobOut]:
        """Every matching job, newest first, fetching one page at a time."""
        kinds, states = tuple(kinds), tuple(states)
        cursor: str | None = None
        while True:
            page = await self.list_jobs(namespace, kinds=kinds, states=states, labels=labels,
                                        worker=worker, parent=parent, limit=page_size,
                                        cursor=cursor)
            for job in page.jobs:
                yield job
            if not page.next_cursor or not page.jobs:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> JobOut:
        """Cancel a job: at once if it waits, via its worker if it runs (409 if done)."""
        response = await self._core.request("POST", f"/v1/jobs/{job_path(job_id)}/cancel")
        return JobOut.model_validate_json(response.content)

    async def retry(self, job_id: str) -> JobOut:
        """Queue a dead or failed job again now, with a fresh attempt budget."""
        response = await self._core.request("POST", f"/v1/jobs/{job_path(job_id)}/retry")
        return JobOut.model_validate_json(response.content)

    async def events(self, job_id: str) -> list[EventOut]:
        """The job's history, oldest first."""
        response = await self._core.request("GET", f"/v1/jobs/{job_path(job_id)}/events")
        return EventPage.model_validate_json(response.content).events

    async def feed(self, after: int = 0, *, namespace: str | None = None,
                   limit: int = 100) -> list[EventOut]:
        """The global event history after sequence number ``after``, oldest first."""
        params: list[tuple[str, str | int | float]] = [("after", after), ("limit", limit)]
        if namespace is not None:
            params.append(("namespace", namespace))
        response = await self._core.request("GET", "/v1/events", params=params)
        return EventPage.model_validate_json(response.content).events

    async def wait(self, job_id: str, timeout: float | None = None) -> JobOut:
        """Wait until the job is terminal and return it (``None``: wait for ever).

        Raises :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        path = f"/v1/jobs/{job_path(job_id)}/wait"
        while True:
            left = WAIT_SLICE if deadline is None else deadline - time.monotonic()
            slice_ = max(0.0, min(WAIT_SLICE, left))
            response = await self._core.request("GET", path, params={"timeout": slice_},
                                                wait=slice_)
            job = JobOut.model_validate_json(response.content)
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"job {job_id} is still {job.state} after waiting {timeout:g} s; wait "
                    "longer, or check its workers with `hearth nodes`")

    async def watch(self, job_id: str | None = None, *, namespace: str | None = None,
                    kind: str | Iterable[str] | None = None, after: int | None = None
                    ) -> AsyncIterator[EventOut]:
        """Job events as they happen, from the SSE route, for ever (break to stop).

        Starts after event ``after``; by default a watch of one job replays its whole
        history and a wider watch starts with new events. After a dropped connection it
        reconnects with ``Last-Event-ID``, so no event is lost or repeated; it gives up
        with ``Unavailable`` when the coordinator has been unreachable for ``timeout``
        seconds.
        """
        last = after
        kinds = [kind] if isinstance(kind, str) else list(kind or ())
        delay = 0.1
        failing_since: float | None = None
        while True:
            params: list[tuple[str, str | int | float]] = [("kind", k) for k in kinds]
            for name, value in (("job_id", job_id), ("namespace", namespace), ("after", last)):
                if value is not None:
                    params.append((name, value))
            headers = {"accept": "text/event-stream"}
            if last is not None:
                headers["last-event-id"] = str(last)
            try:
                async with self._core.stream("GET", "/v1/watch", params=params,
                                             headers=headers,
                                             read_timeout=WATCH_READ_TIMEOUT) as response:
                    failing_since, delay = None, 0.1
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is None or event.event != "job":
                            continue
                        out = EventOut.model_validate_json(event.data)
                        if last is not None and out.seq <= last:
                            continue
                        last = out.seq
                        yield out
            except Unavailable:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.timeout:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- blobs --------------------------------------------------------------------------

    async def put_blob(self, source: BlobSource) -> BlobOut:
        """Store a blob (bytes, a file path, or a binary file), streamed; returns its
        digest. Storing the same content twice is harmless (content-addressed)."""
        async with upload_body(source) as (content, headers):
            response = await self._core.request("POST", "/v1/blobs", content=content,
                                                headers=headers)
        return BlobOut.model_validate_json(response.content)

    async def get_blob(self, digest: str) -> bytes:
        """A whole blob in memory; use :meth:`download_blob` for big ones."""
        response = await self._core.request("GET", f"/v1/blobs/{check_digest(digest)}")
        return response.content

    async def stream_blob(self, digest: str) -> AsyncIterator[bytes]:
        """A blob's content in chunks of up to 1 MiB."""
        async with self._core.stream("GET", f"/v1/blobs/{check_digest(digest)}") as response:
            async for block in response.aiter_bytes(CHUNK):
                yield block

    async def download_blob(self, digest: str, path: str | os.PathLike[str]) -> int:
        """Stream a blob into ``path`` (complete or not at all); returns its size."""
        size = 0
        async with PartFile(path) as target:
            async for block in self.stream_blob(digest):
                size += len(block)
                await target.write(block)
        return size

    # -- operations ---------------------------------------------------------------------

    async def nodes(self) -> list[NodeOut]:
        response = await self._core.request("GET", "/v1/nodes")
        return NodeList.model_validate_json(response.content).nodes

    async def health(self) -> dict[str, Any]:
        response = await self._core.request("GET", "/healthz")
        answer: dict[str, Any] = response.json()
        return answer

    async def metrics_text(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        response = await self._core.request("GET", "/metrics")
        return response.text

    # -- the worker protocol ------------------------------------------------------------

    async def register_node(self, node: NodeRegister) -> NodeOut:
        response = await self._core.request("POST", "/v1/nodes", body=model_body(node))
        return NodeOut.model_validate_json(response.content)

    async def lease(self, worker: str, kinds: Sequence[str], max_jobs: int = 1,
                    wait: float = 0.0, namespaces: Sequence[str] = ()) -> list[LeaseOut]:
        """Lease up to ``max_jobs`` jobs, long-polling up to ``wait`` seconds."""
        request = build_model(LeaseRequest, worker=worker, kinds=list(kinds),
                              max_jobs=max_jobs, wait=wait, namespaces=list(namespaces))
        response = await self._core.request("POST", "/v1/leases", body=model_body(request),
                                            wait=wait)
        return LeaseBatch.model_validate_json(response.content).leases

    async def heartbeat(self, worker: str, items: Sequence[HeartbeatIn]) -> list[ItemOut]:
        """Extend leases (carrying progress); per item 200, or 409/404 when stale."""
        out: list[ItemOut] = []
        for start in range(0, len(items), ITEM_CHUNK):
            batch = HeartbeatBatch.model_construct(
                worker=worker, items=list(items[start:start + ITEM_CHUNK]))
            response = await self._core.request("POST", "/v1/leases/heartbeat",
                                                body=model_body(batch))
            out.extend(ItemBatchOut.model_validate_json(response.content).items)
        return out

    async def finish(self, worker: str, items: Sequence[FinishIn]) -> list[ItemOut]:
        """Report outcomes; per item 200 with the new state, or an error status."""
        out: list[ItemOut] = []
        for start in range(0, len(items), ITEM_CHUNK):
            batch = FinishBatch.model_construct(
                worker=worker, items=list(items[start:start + ITEM_CHUNK]))
            response = await self._core.request("POST", "/v1/leases/finish",
                                                body=model_body(batch))
            out.extend(ItemBatchOut.model_validate_json(response.content).items)
        return out


__all__ = ["AsyncClient"]
