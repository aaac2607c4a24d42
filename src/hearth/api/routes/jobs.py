"""Job routes: submit (single and batch), read, list, history, wait, cancel and retry.

Thin: parse (pydantic models of :mod:`hearth.wire`), call the queue service, answer
with orjson bytes built from :func:`hearth.wire.job_to_wire`. No rules live here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response

from hearth.api.auth import (
    JOBS_CONTROL,
    JOBS_READ,
    JOBS_SUBMIT,
    Principal,
    require_namespace,
    scoped_namespace,
)
from hearth.api.body import documented, parse
from hearth.api.context import ApiContext, allow
from hearth.api.encode import json_response
from hearth.api.routes import CONFLICT, ERROR_RESPONSES, NOT_FOUND, TOO_LARGE
from hearth.domain.jobs import JobState
from hearth.errors import HearthError, ValidationError
from hearth.store.port import JobFilter
from hearth.wire import (
    EventPage,
    JobBatchOut,
    JobBatchSubmit,
    JobOut,
    JobPage,
    JobSubmit,
    event_to_wire,
    job_to_wire,
    spec_from_wire,
)

MAX_WAIT = 60.0


def _states(values: list[str]) -> tuple[JobState, ...]:
    try:
        return tuple(JobState(v) for v in values)
    except ValueError:
        allowed = ", ".join(s.value for s in JobState)
        raise ValidationError(f"state must be one of {allowed}") from None


def _labels(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValidationError(f"label filter {value[:80]!r} must look like key=value")
        pairs.append((key, val))
    return tuple(pairs)


Reader = Annotated[Principal, Depends(allow(JOBS_READ))]
Submitter = Annotated[Principal, Depends(allow(JOBS_SUBMIT))]
Controller = Annotated[Principal, Depends(allow(JOBS_CONTROL))]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["jobs"], responses=ERROR_RESPONSES)

    async def visible(principal: Principal, job_id: str) -> None:
        """A namespace-scoped caller only touches jobs of its namespaces."""
        if principal.namespaces:
            require_namespace(principal, (await ctx.svc.get(job_id)).namespace)

    @r.post("/jobs", response_model=JobOut, status_code=201,
            responses={200: {"model": JobOut, "description": "the idempotency key matched "
                             "an existing job (created: false)"}, **TOO_LARGE, **NOT_FOUND},
            openapi_extra=documented(JobSubmit))
    @ctx.hot.add("POST", "/v1/jobs", JOBS_SUBMIT)
    async def submit_job(request: Request, principal: Submitter) -> Response:
        body = await parse(request, JobSubmit)
        require_namespace(principal, body.namespace)
        [sub] = await ctx.svc.submit([spec_from_wire(body)])
        out = job_to_wire(sub.job)
        out["created"] = sub.created
        return json_response(out, 201 if sub.created else 200)

    @r.post("/jobs/batch", response_model=JobBatchOut, status_code=201,
            responses={**TOO_LARGE, **NOT_FOUND}, openapi_extra=documented(JobBatchSubmit))
    @ctx.hot.add("POST", "/v1/jobs/batch", JOBS_SUBMIT)
    async def submit_batch(request: Request, principal: Submitter) -> Response:
        body = await parse(request, JobBatchSubmit)
        specs = []
        for index, item in enumerate(body.jobs):
            require_namespace(principal, item.namespace)
            try:
                specs.append(spec_from_wire(item))
            except HearthError as exc:
                raise type(exc)(f"job {index} of the batch: {exc.message}") from None
        subs = await ctx.svc.submit(specs, batch=True)
        jobs: list[dict[str, Any]] = []
        for sub in subs:
            out = job_to_wire(sub.job)
            out["created"] = sub.created
            jobs.append(out)
        return json_response({"jobs": jobs}, 201 if any(s.created for s in subs) else 200)

    @r.get("/jobs", response_model=JobPage)
    async def list_jobs(
        principal: Reader,
        namespace: str | None = None,
        kind: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        state: Annotated[list[str], Query()] = [],  # noqa: B006
        label: Annotated[list[str], Query(description="key=value")] = [],  # noqa: B006
        worker: str | None = None,
        parent: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: str | None = None,
    ) -> Response:
        flt = JobFilter(namespace=scoped_namespace(principal, namespace), kinds=tuple(kind),
                        states=_states(state), labels=_labels(label), worker=worker,
                        parent=parent)
        page = await ctx.svc.list_jobs(flt, limit=limit, cursor=cursor)
        return json_response({"jobs": [job_to_wire(j) for j in page.jobs],
                              "next_cursor": page.next_cursor})

    @r.get("/jobs/{job_id}", response_model=JobOut, responses=NOT_FOUND)
    async def get_job(job_id: str, principal: Reader) -> Response:
        job = await ctx.svc.get(job_id)
        require_namespace(principal, job.namespace)
        return json_response(job_to_wire(job))

    @r.get("/jobs/{job_id}/events", response_model=EventPage, responses=NOT_FOUND)
    async def job_events(job_id: str, principal: Reader, after: Annotated[int, Query(ge=0)] = 0,
                         limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
        await visible(principal, job_id)
        events = await ctx.svc.events(job_id=job_id, after=after, limit=limit)
        return json_response({"events": [event_to_wire(e) for e in events]})

    @r.get("/jobs/{job_id}/wait", response_model=JobOut, responses=NOT_FOUND)
    async def wait_job(job_id: str, principal: Reader,
                       timeout: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 30.0
                       ) -> Response:
        await visible(principal, job_id)
        return json_response(job_to_wire(await ctx.svc.wait_for(job_id, timeout)))

    @r.post("/jobs/{job_id}/cancel", response_model=JobOut, responses={**NOT_FOUND,
                                                                        **CONFLICT})
    async def cancel_job(job_id: str, principal: Controller) -> Response:
        await visible(principal, job_id)
        return json_response(job_to_wire(await ctx.svc.cancel(job_id)))

    @r.post("/jobs/{job_id}/retry", response_model=JobOut, responses={**NOT_FOUND,
                                                                       **CONFLICT})
    async def retry_job(job_id: str, principal: Controller) -> Response:
        await visible(principal, job_id)
        return json_response(job_to_wire(await ctx.svc.retry(job_id)))

    @r.get("/events", response_model=EventPage)
    async def events(principal: Reader, after: Annotated[int, Query(ge=0)] = 0,
                     namespace: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
        found = await ctx.svc.events(after=after, limit=limit,
                                     namespace=scoped_namespace(principal, namespace))
        return json_response({"events": [event_to_wire(e) for e in found]})

    return r
