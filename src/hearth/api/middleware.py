"""Two small ASGI middleware at the HTTP edge: request-size limits and request counts.

:class:`BodyLimit` refuses bodies over the limit with 413 and a sentence: at once when
``Content-Length`` says so (nothing is read), or as soon as a streamed body crosses
the limit (the handler's read fails, nothing is stored). Blob routes have their own,
larger limit. :class:`RequestCounter` counts answers per route template and status
in a dict (see :mod:`hearth.engine.metrics`). Both are pure ASGI (no per-request
``BaseHTTPMiddleware`` task) and never look at bodies' content.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.api.encode import error_response
from hearth.engine.metrics import Metrics

BLOB_PREFIX = "/v1/blobs"


def _too_large(limit: int) -> str:
    return (f"the request body is larger than the limit of {limit} bytes; send smaller "
            "batches, or put large data in a blob (POST /v1/blobs)")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_request: int, max_blob: int) -> None:
        self.app = app
        self.max_request = max_request
        self.max_blob = max_blob

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_blob if scope["path"].startswith(BLOB_PREFIX) else self.max_request
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    response = error_response(_too_large(limit), "too_large", 413,
                                              {"Connection": "close"})
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI lets HTTPException out of its body reading unchanged.
                    raise HTTPException(413, _too_large(limit), {"Connection": "close"})
            return message

        await self.app(scope, limited_receive, send)


class RequestCounter:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            route = scope.get("route")
            self.metrics.http_request(getattr(route, "path", "unmatched"), status)
