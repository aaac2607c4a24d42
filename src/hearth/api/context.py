"""What the route handlers share: the services (attached while the app runs), limits,
the authenticator and the auth dependency every ``/v1`` route uses
(:func:`authenticated`, found through ``request.app.state.hearth``).

Routes are built as closures over one :class:`ApiContext`, so a handler reaches the
queue service with an attribute read, not a dependency lookup. It holds no state of
its own beyond references: the store, blobs and feed own theirs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request

from hearth.api.auth import Authenticator, Principal, require
from hearth.api.fastlane import HotRoutes
from hearth.blobs.port import BlobStore
from hearth.engine.metrics import Metrics
from hearth.engine.service import QueueService
from hearth.errors import Unavailable

#: Documents the bearer scheme in OpenAPI; the check itself is the Authenticator's.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="an API token (`hearth token create`) or the "
                           "coordinator's admin token (admin.token); over mutual TLS the "
                           "client certificate identifies the caller instead")

SSE_KEEPALIVE = 15.0


class ApiContext:
    def __init__(self, *, authenticator: Authenticator, metrics: Metrics, max_request: int,
                 max_blob: int, version: str, sse_keepalive: float = SSE_KEEPALIVE,
                 security: Any = None) -> None:
        self.authenticator = authenticator
        #: The :class:`hearth.security.service.SecurityService` (enrollment, tokens,
        #: revocation), or None where the app runs without one (some unit tests).
        self.security = security
        self.metrics = metrics
        self.max_request = max_request
        self.max_blob = max_blob
        self.version = version
        self.sse_keepalive = sse_keepalive
        self.service: QueueService | None = None
        self.blobs: BlobStore | None = None
        #: Routes also served by :class:`hearth.api.fastlane.FastLane`.
        self.hot = HotRoutes()

    @property
    def svc(self) -> QueueService:
        if self.service is None:
            raise Unavailable("the coordinator is starting or stopping; try again shortly")
        return self.service

    @property
    def blob_store(self) -> BlobStore:
        if self.blobs is None:
            raise Unavailable("the coordinator is starting or stopping; try again shortly")
        return self.blobs

    def attach(self, service: QueueService, blobs: BlobStore) -> None:
        self.service, self.blobs = service, blobs

    def detach(self) -> None:
        self.service, self.blobs = None, None

    def drain(self) -> None:
        """Answer long polls and end watches now: the server is shutting down."""
        if self.service is not None:
            self.service.drain()


async def authenticated(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """The auth dependency of every ``/v1`` route: the caller's Principal or 401."""
    ctx: ApiContext = request.app.state.hearth
    return ctx.authenticator.authenticate(request)


#: A handler parameter of this type receives the authenticated caller.
Caller = Annotated[Principal, Depends(authenticated)]


def allow(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, if its role grants ``permission``
    (403 with a sentence otherwise)."""

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    ) -> Principal:
        ctx: ApiContext = request.app.state.hearth
        return require(ctx.authenticator.authenticate(request), permission)

    dependency.__name__ = f"allow_{permission.replace('.', '_')}"
    return dependency
