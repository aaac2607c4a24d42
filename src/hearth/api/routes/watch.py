"""``GET /v1/watch``: the job history as Server-Sent Events.

Each event is ``id: <seq>``, ``event: job``, ``data: <EventOut JSON>``; a comment
``: keepalive`` goes out when nothing was sent for the keepalive interval, and the
stream resumes after ``Last-Event-ID`` (or ``after``). Without either, a watch of one
job replays that job's whole history, a wider watch starts with new events only.

Events are read from the store (the source of truth) whenever the change feed says
something was committed; the stream never holds a store thread while it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query
from starlette.responses import Response, StreamingResponse

from hearth.api.auth import JOBS_READ, Principal, require_namespace, scoped_namespace
from hearth.api.context import ApiContext, allow
from hearth.api.routes import ERROR_RESPONSES, NOT_FOUND
from hearth.domain.jobs import Event
from hearth.engine.service import SHARED_STORE_RECHECK, QueueService
from hearth.errors import NotFound, ValidationError
from hearth.wire import event_to_wire

PAGE = 500
_SSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "an endless text/event-stream of job events",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def _frame(event: Event) -> bytes:
    return b"id: %d\nevent: job\ndata: %s\n\n" % (event.seq, orjson.dumps(event_to_wire(event)))


async def _stream(ctx: ApiContext, svc: QueueService, first: list[Event], seen: int, *,
                  after: int, job_id: str | None, namespace: str | None,
                  kinds: frozenset[str]) -> AsyncIterator[bytes]:
    """``first`` was read after the feed stood at version ``seen``."""
    loop = asyncio.get_running_loop()
    feed = svc.feed
    yield b": watching\n\n"  # tells the client the stream is open
    seq = after
    last_sent = loop.time()
    batch: list[Event] | None = first
    while True:
        if batch is None:
            seen = feed.version  # before reading: a change committed meanwhile is seen
            try:
                batch = await svc.events(job_id=job_id, after=seq, limit=PAGE,
                                         namespace=namespace)
            except NotFound:
                return  # the job was purged: nothing more will happen to it
        for event in batch:
            seq = event.seq
            if not kinds or event.kind in kinds:
                last_sent = loop.time()
                yield _frame(event)
        full, batch = len(batch) >= PAGE, None
        if full:
            continue
        if feed.closing:
            return
        timeout = ctx.sse_keepalive - (loop.time() - last_sent)
        if svc.shared:
            timeout = min(timeout, SHARED_STORE_RECHECK)
        changed = await feed.wait_change(seen, max(timeout, 0.0))
        if not changed and loop.time() - last_sent >= ctx.sse_keepalive:
            last_sent = loop.time()
            yield b": keepalive\n\n"


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["jobs"], responses=ERROR_RESPONSES)

    @r.get("/watch", response_class=StreamingResponse, responses={**_SSE, **NOT_FOUND})
    async def watch(
        principal: Annotated[Principal, Depends(allow(JOBS_READ))],
        job_id: str | None = None,
        namespace: str | None = None,
        kind: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        after: Annotated[int | None, Query(ge=0)] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        svc = ctx.svc
        if job_id is not None and principal.namespaces:
            require_namespace(principal, (await svc.get(job_id)).namespace)
        elif job_id is None:
            namespace = scoped_namespace(principal, namespace)
        if last_event_id:
            try:
                after = int(last_event_id)
            except ValueError:
                raise ValidationError("the Last-Event-ID header must be an event's seq "
                                      "(a whole number)") from None
        if after is None:
            after = 0 if job_id is not None else await svc.last_event_seq()
        # Read the first page before answering, so an unknown job is a real 404.
        seen = svc.feed.version
        first = await svc.events(job_id=job_id, after=after, limit=PAGE, namespace=namespace)
        body = _stream(ctx, svc, first, seen, after=after, job_id=job_id, namespace=namespace,
                       kinds=frozenset(kind))
        return StreamingResponse(body, media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r
