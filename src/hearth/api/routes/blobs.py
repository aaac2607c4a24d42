"""Blob routes: streamed upload (server-computed or verified digest), download, HEAD.

The digest in a path is validated before anything else happens, so a path-like value
(``../../etc/passwd``) is a 422 that touches no file. Bodies are streamed into the
BlobStore chunk by chunk, never held whole in memory, under the blob size limit.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.background import BackgroundTask
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hearth.api.auth import BLOBS_READ, BLOBS_WRITE
from hearth.api.context import ApiContext, allow
from hearth.api.encode import json_response
from hearth.api.routes import ERROR_RESPONSES, NOT_FOUND, TOO_LARGE
from hearth.domain.validation import check_digest
from hearth.wire import BlobOut

_RAW_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
_BYTES: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}, "description": "the blob's bytes"}}


class _AnyText(Convertor[str]):
    """Starlette's ``path`` convertor with newlines too: its ``.*`` stops at one, so a
    digest with a newline inside matched no route and was a 404. With this every value
    reaches the handler, which answers 422 for anything but a digest."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["blobs"], responses={**ERROR_RESPONSES, **TOO_LARGE})
    read = [Depends(allow(BLOBS_READ))]
    write = [Depends(allow(BLOBS_WRITE))]

    @r.post("/blobs", response_model=BlobOut, openapi_extra=_RAW_BODY, dependencies=write)
    async def upload(request: Request) -> Response:
        info = await ctx.blob_store.put(request.stream(), max_size=ctx.max_blob)
        return json_response({"digest": info.digest, "size": info.size})

    @r.put("/blobs/{digest:anytext}", response_model=BlobOut, openapi_extra=_RAW_BODY,
           dependencies=write)
    async def upload_as(digest: str, request: Request) -> Response:
        check_digest(digest)
        info = await ctx.blob_store.put(request.stream(), expected=digest,
                                        max_size=ctx.max_blob)
        return json_response({"digest": info.digest, "size": info.size})

    @r.get("/blobs/{digest:anytext}", response_class=Response, responses={**_BYTES, **NOT_FOUND},
           dependencies=read)
    async def download(digest: str, request: Request) -> Response:
        check_digest(digest)
        etag = f'"{digest}"'
        if request.headers.get("if-none-match") == etag:
            await ctx.blob_store.size(digest)  # still 404 if it is gone
            return Response(status_code=304, headers={"ETag": etag})
        reader = await ctx.blob_store.open(digest)
        return StreamingResponse(
            reader.chunks(), media_type="application/octet-stream",
            headers={"Content-Length": str(reader.size), "ETag": etag},
            background=BackgroundTask(reader.aclose))

    @r.head("/blobs/{digest:anytext}", response_class=Response, responses=NOT_FOUND,
            dependencies=read)
    async def head(digest: str) -> Response:
        size = await ctx.blob_store.size(check_digest(digest))
        return Response(headers={"Content-Length": str(size), "ETag": f'"{digest}"'},
                        media_type="application/octet-stream")

    return r
