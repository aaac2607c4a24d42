"""Security routes: enrollment, certificates and revocation, API tokens, whoami.

Everything but ``/v1/whoami`` needs the ``administer`` permission (admin role): a
worker certificate or an operator token gets 403. The enrollment answer is the bundle
file itself; a token's value is in the creation answer only. Neither is ever logged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from hearth.api.auth import ADMINISTER, Principal
from hearth.api.body import documented, parse
from hearth.api.context import ApiContext, Caller, allow
from hearth.api.encode import json_response
from hearth.api.routes import CONFLICT, ERROR_RESPONSES, NOT_FOUND
from hearth.errors import Unavailable
from hearth.security.wire import (
    BUNDLE_MEDIA_TYPE,
    CertList,
    EnrollIn,
    RevokeIn,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    WhoAmI,
    cert_to_wire,
    token_to_wire,
)

Admin = Annotated[Principal, Depends(allow(ADMINISTER))]

_BUNDLE: dict[int | str, dict[str, Any]] = {200: {"content": {BUNDLE_MEDIA_TYPE: {
    "schema": {"type": "string", "format": "binary"}}},
    "description": "the bundle file (NAME.hearth): keep it secret, it holds a private key"}}


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["security"], responses=ERROR_RESPONSES)

    def security() -> Any:
        if ctx.security is None:
            raise Unavailable("this coordinator runs without its security service")
        return ctx.security

    @r.get("/whoami", response_model=WhoAmI)
    async def whoami(principal: Caller) -> Response:
        return json_response({"name": principal.name, "role": principal.role,
                              "via": principal.via, "namespaces": list(principal.namespaces),
                              "kinds": list(principal.kinds), "ident": principal.ident})

    @r.post("/enrollments", response_class=Response, responses=_BUNDLE,
            openapi_extra=documented(EnrollIn))
    async def enroll(request: Request, _: Admin) -> Response:
        from hearth.security.bundle import dumps

        body = await parse(request, EnrollIn)  # after authentication, like every body
        bundle = await security().enroll(body.name, role=body.role, kinds=body.kinds,
                                         validity=body.validity, addresses=body.addresses)
        return Response(dumps(bundle), media_type=BUNDLE_MEDIA_TYPE, headers={
            "Content-Disposition": f'attachment; filename="{bundle.name}.hearth"',
            "Cache-Control": "no-store"})

    @r.get("/certificates", response_model=CertList)
    async def certificates(_: Admin, name: str | None = None) -> Response:
        found = await security().certificates(name)
        return json_response({"certificates": [cert_to_wire(c) for c in found]})

    @r.post("/certificates/revoke", response_model=CertList, responses=NOT_FOUND,
            openapi_extra=documented(RevokeIn))
    async def revoke(request: Request, _: Admin) -> Response:
        body = await parse(request, RevokeIn)
        found = await security().revoke(name=body.name, serial=body.serial)
        return json_response({"certificates": [cert_to_wire(c) for c in found]})

    @r.post("/tokens", response_model=TokenCreated, status_code=201, responses=CONFLICT,
            openapi_extra=documented(TokenCreate))
    async def create_token(request: Request, _: Admin) -> Response:
        body = await parse(request, TokenCreate)
        record, value = await security().create_token(
            body.name, role=body.role, namespaces=body.namespaces,
            expires_in=body.expires_in)
        return json_response({**token_to_wire(record), "token": value}, 201,
                             headers={"Cache-Control": "no-store"})

    @r.get("/tokens", response_model=TokenList)
    async def list_tokens(_: Admin) -> Response:
        return json_response({"tokens": [token_to_wire(t) for t in await security().tokens()]})

    @r.delete("/tokens/{id_or_name}", response_model=TokenOut, responses=NOT_FOUND)
    async def revoke_token(id_or_name: str, _: Admin) -> Response:
        return json_response(token_to_wire(await security().revoke_token(id_or_name)))

    return r
