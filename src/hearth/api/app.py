"""The FastAPI application: routers, error handlers and edge middleware, no lifecycle.

:func:`create_app` wires the routes of ``docs/api.md`` over an :class:`ApiContext`.
Opening the store and starting controllers is the composition root's job
(:mod:`hearth.coordinator`), passed in as ``lifespan``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from hearth.api import body, errors
from hearth.api.context import ApiContext
from hearth.api.fastlane import FastLane
from hearth.api.middleware import BodyLimit, RequestCounter
from hearth.api.routes import blobs, jobs, ops, security, watch, workers

DESCRIPTION = ("Hearth runs work durably: submit jobs, lease them from workers with "
               "fencing tokens, watch their history. Every /v1 route needs a verified "
               "client certificate (mutual TLS, a bundle from `hearth enroll`) or "
               "'Authorization: Bearer <token>'.")


def create_app(ctx: ApiContext, *,
               lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None
               ) -> FastAPI:
    app = FastAPI(title="Hearth", version=ctx.version, description=DESCRIPTION,
                  lifespan=lifespan)
    errors.install(app)
    for module in (jobs, workers, watch, blobs, security, ops):
        app.include_router(module.router(ctx))
    ctx.hot.bind(app.routes)
    # Added last = outermost: the counter also sees the limit's 413 answers, and the
    # fast lane (innermost) is inside both.
    app.add_middleware(FastLane, routes=ctx.hot, ctx=ctx)
    app.add_middleware(BodyLimit, max_request=ctx.max_request, max_blob=ctx.max_blob)
    app.add_middleware(RequestCounter, metrics=ctx.metrics)
    body.register_schemas(app)
    app.state.hearth = ctx
    return app
