"""The hot routes, served without FastAPI's per-request machinery.

FastAPI resolves a route's dependencies, and matches it through its included routers,
on every request. For the four routes that carry all job traffic (submitting one or
a batch, leasing, finishing) that took 0.4-0.5 ms of a 1.8 ms submit on this
project's 2-core machine, more than the database did. :class:`FastLane` answers
exactly those (method, path) pairs itself:

- the very same handler functions as the FastAPI routes (registered with
  :func:`hot`), so there is one implementation and the OpenAPI document is unchanged;
- the same authentication and permission check as their dependency
  (:func:`hearth.api.context.allow`), before the body is read;
- the same error answers (:func:`hearth.api.errors.answer`);
- inside the app's own middleware, so body limits and request counts apply as to
  every route (``scope["route"]`` names the route, as routing would).

Everything else goes on to FastAPI. Nothing is decided here: no rules, no access
policy beyond calling the shared check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.api.auth import Principal, require
from hearth.api.errors import answer

if TYPE_CHECKING:
    from hearth.api.context import ApiContext

Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    permission: str
    handler: Handler
    #: The FastAPI route of the same method and path (for ``scope["route"]``).
    route: Any = None


class HotRoutes:
    """The (method, path) -> handler table that routers fill and the lane reads."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], HotRoute] = {}

    def add(self, method: str, path: str, permission: str) -> Callable[[Handler], Handler]:
        """Register a route handler for the lane too (apply under FastAPI's decorator,
        so the same function object serves both)."""

        def register(fn: Handler) -> Handler:
            self.table[(method, path)] = HotRoute(permission, fn)
            return fn
        return register

    def bind(self, routes: list[Any]) -> None:
        """Attach the FastAPI route objects, once the app has all its routes; a hot
        route that FastAPI does not also serve is a programming error."""
        flat = list(_flatten(routes))
        for key, hot in list(self.table.items()):
            method, path = key
            found = [r for r in flat if getattr(r, "path", None) == path
                     and method in (getattr(r, "methods", None) or ())]
            if len(found) != 1:
                raise RuntimeError(f"the hot route {method} {path} must also be a FastAPI "
                                   f"route (found {len(found)})")
            self.table[key] = HotRoute(hot.permission, hot.handler, found[0])


def _flatten(routes: list[Any]) -> Any:
    """Every route, including those of included routers (FastAPI keeps an included
    router as one entry that refers to the original)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


class FastLane:
    """ASGI middleware: serve the hot routes directly, pass everything else on."""

    def __init__(self, app: ASGIApp, *, routes: HotRoutes, ctx: ApiContext) -> None:
        self.app = app
        self._table = routes.table
        self._ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = (self._table.get((scope["method"], scope["path"]))
               if scope["type"] == "http" else None)
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = hot.route
        request = Request(scope, receive)
        try:
            principal = require(self._ctx.authenticator.authenticate(request), hot.permission)
            response = await hot.handler(request, principal)
        except Exception as exc:
            response = await answer(request, exc)
        await response(scope, receive, send)


__all__ = ["FastLane", "HotRoute", "HotRoutes"]
