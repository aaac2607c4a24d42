"""Worker routes: node registration, long-poll batch leasing, heartbeats and outcomes.

These are the hot paths: answers are orjson bytes built by hand, batch routes answer
per item (one stale token never fails its neighbours), and the single-item forms turn
an item's error into a real HTTP error. Whether the caller may act as the named
worker is decided by :func:`hearth.api.auth.require_worker`, nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from hearth.api.auth import NODES_READ, WORK, Principal, require_kinds, require_worker
from hearth.api.body import documented, parse
from hearth.api.context import ApiContext, allow
from hearth.api.encode import item_to_wire, json_response
from hearth.api.routes import CONFLICT, ERROR_RESPONSES, NOT_FOUND, TOO_LARGE
from hearth.domain.jobs import Job
from hearth.errors import HearthError, ValidationError
from hearth.store.port import FinishItem, HeartbeatItem, ItemResult, Node
from hearth.wire import (
    FinishBatch,
    FinishIn,
    HeartbeatBatch,
    HeartbeatIn,
    ItemBatchOut,
    ItemOut,
    LeaseBatch,
    LeaseRequest,
    NodeList,
    NodeOut,
    NodeRegister,
    error_from_wire,
    job_to_wire,
    progress_from_wire,
    result_from_wire,
)

_WORKER = "the worker holding the lease"


def _node_to_wire(node: Node) -> dict[str, object]:
    return {"name": node.name, "kinds": list(node.kinds), "host": node.host,
            "version": node.version, "concurrency": node.concurrency,
            "registered_at": node.registered_at, "last_seen": node.last_seen,
            "in_flight": node.in_flight, "status": node.status, "labels": dict(node.labels),
            "released": node.released}


def _finish_item(item: FinishIn) -> FinishItem:
    result = result_from_wire(item.result) if item.outcome == "succeeded" else None
    error = error_from_wire(item.error) if item.outcome == "failed" else None
    return FinishItem(item.job_id, item.token, item.outcome, result, error)


def _heartbeat_item(item: HeartbeatIn) -> HeartbeatItem:
    return HeartbeatItem(item.job_id, item.token, progress_from_wire(item.progress))


async def _finish(ctx: ApiContext, items: Sequence[FinishIn], worker: str
                  ) -> list[ItemResult]:
    """Convert each item (a bad one fails alone), then record the good ones."""
    answers: dict[int, ItemResult] = {}
    good: list[FinishItem] = []
    where: list[int] = []
    for index, item in enumerate(items):
        try:
            good.append(_finish_item(item))
            where.append(index)
        except HearthError as exc:
            answers[index] = ItemResult(item.job_id, error=exc)
    if good:
        results = await ctx.svc.finish(good, worker=worker)
        answers.update(zip(where, results, strict=True))
    return [answers[i] for i in range(len(items))]


def _until_disconnect(receive: Receive) -> Callable[[], Awaitable[None]]:
    """A waiter that completes when the client hangs up (the body was already read)."""

    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
    return wait


async def _still_valid(ctx: ApiContext, principal: Principal, jobs: Sequence[Job],
                       worker: str) -> None:
    try:
        ctx.authenticator.recheck(principal)
    except HearthError:
        await ctx.svc.finish([FinishItem(j.id, j.lease_token or "", "released", None, None)
                              for j in jobs], worker=worker)
        raise


def _same_job(path_id: str, body_id: str) -> None:
    if path_id != body_id:
        raise ValidationError(f"the body is about job {body_id!r} but the path names job "
                              f"{path_id!r}; they must be the same")


Worker = Annotated[Principal, Depends(allow(WORK))]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["workers"], responses=ERROR_RESPONSES)

    @r.post("/nodes", response_model=NodeOut, openapi_extra=documented(NodeRegister))
    async def register_node(request: Request, principal: Worker) -> Response:
        body = await parse(request, NodeRegister)  # after authentication, like every body
        require_worker(principal, body.name)
        require_kinds(principal, body.kinds)
        node = await ctx.svc.register_node(Node(
            name=body.name, kinds=tuple(body.kinds), host=body.host, version=body.version,
            concurrency=body.concurrency, labels=dict(body.labels), session=body.session))
        return json_response(_node_to_wire(node))

    @r.get("/nodes", response_model=NodeList, dependencies=[Depends(allow(NODES_READ))])
    async def list_nodes() -> Response:
        nodes = await ctx.svc.list_nodes()
        revoked = ctx.security.revoked_names() if ctx.security is not None else set()
        out = []
        for node in nodes:
            wire = _node_to_wire(node)
            if node.name in revoked:
                wire["status"] = "revoked"
            out.append(wire)
        return json_response({"nodes": out})

    @r.post("/leases", response_model=LeaseBatch, openapi_extra=documented(LeaseRequest))
    @ctx.hot.add("POST", "/v1/leases", WORK)
    async def lease(request: Request, principal: Worker) -> Response:
        body = await parse(request, LeaseRequest)
        require_worker(principal, body.worker)
        require_kinds(principal, body.kinds)
        jobs = await ctx.svc.lease(worker=body.worker, kinds=body.kinds,
                                   max_jobs=body.max_jobs, wait=body.wait,
                                   namespaces=body.namespaces,
                                   disconnected=_until_disconnect(request.receive))
        if jobs and principal.via != "admin-token":
            # Revoked while this long poll waited: hand the jobs straight back.
            await _still_valid(ctx, principal, jobs, body.worker)
        return json_response({"leases": [{"job": job_to_wire(j), "token": j.lease_token}
                                         for j in jobs]})

    @r.post("/leases/heartbeat", response_model=ItemBatchOut,
            openapi_extra=documented(HeartbeatBatch))
    @ctx.hot.add("POST", "/v1/leases/heartbeat", WORK)
    async def heartbeat_batch(request: Request, principal: Worker) -> Response:
        body = await parse(request, HeartbeatBatch)
        require_worker(principal, body.worker)
        results = await ctx.svc.heartbeat([_heartbeat_item(i) for i in body.items],
                                          worker=body.worker)
        return json_response({"items": [item_to_wire(res) for res in results]})

    @r.post("/leases/finish", response_model=ItemBatchOut,
            openapi_extra=documented(FinishBatch))
    @ctx.hot.add("POST", "/v1/leases/finish", WORK)
    async def finish_batch(request: Request, principal: Worker) -> Response:
        body = await parse(request, FinishBatch)
        require_worker(principal, body.worker)
        results = await _finish(ctx, body.items, body.worker)
        return json_response({"items": [item_to_wire(res) for res in results]})

    @r.post("/jobs/{job_id}/heartbeat", response_model=ItemOut,
            responses={**NOT_FOUND, **CONFLICT}, openapi_extra=documented(HeartbeatIn))
    async def heartbeat_one(job_id: str, request: Request,
                            worker: Annotated[str, Query(description=_WORKER)],
                            principal: Worker) -> Response:
        body = await parse(request, HeartbeatIn)
        require_worker(principal, worker)
        _same_job(job_id, body.job_id)
        [res] = await ctx.svc.heartbeat([_heartbeat_item(body)], worker=worker)
        if res.error is not None:
            raise res.error
        return json_response(item_to_wire(res))

    @r.post("/jobs/{job_id}/finish", response_model=ItemOut,
            responses={**NOT_FOUND, **CONFLICT, **TOO_LARGE}, openapi_extra=documented(FinishIn))
    async def finish_one(job_id: str, request: Request,
                         worker: Annotated[str, Query(description=_WORKER)],
                         principal: Worker) -> Response:
        body = await parse(request, FinishIn)
        require_worker(principal, worker)
        _same_job(job_id, body.job_id)
        [res] = await _finish(ctx, [body], worker)
        if res.error is not None:
            raise res.error
        return json_response(item_to_wire(res))

    return r
