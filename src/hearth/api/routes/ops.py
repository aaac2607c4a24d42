"""Operations routes, open without a token: ``/healthz`` and ``/metrics``.

They reveal no job data: health is the store's reachability and the version, metrics
are counts by namespace, kind and state.
"""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.responses import Response

from hearth.api.context import ApiContext
from hearth.api.encode import json_response
from hearth.errors import HearthError


class Health(BaseModel):
    status: str
    store: str
    version: str


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["operations"])

    @r.get("/healthz", response_model=Health,
           responses={503: {"model": Health, "description": "the store does not answer"}})
    async def healthz() -> Response:
        backend = ctx.service.store.backend if ctx.service is not None else "unknown"
        try:
            await ctx.svc.ping()
        except HearthError:
            return json_response({"status": "unavailable", "store": backend,
                                  "version": ctx.version}, 503)
        return json_response({"status": "ok", "store": backend, "version": ctx.version})

    @r.get("/metrics", response_class=Response, responses={200: {
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        "description": "Prometheus text exposition"}})
    async def metrics() -> Response:
        counts = await ctx.svc.counts()
        return Response(ctx.metrics.render(counts), media_type=CONTENT_TYPE_LATEST)

    return r
