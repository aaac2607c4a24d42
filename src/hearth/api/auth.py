"""Who is calling: the Authenticator seam and the one worker-identity rule.

Today the only credential is ``Authorization: Bearer <admin token>``, compared in
constant time. Mutual TLS certificate identities will arrive as another
:class:`Authenticator` (reading the peer certificate from the ASGI scope) without any
route changing: routes only see a :class:`Principal`, and "may this principal act as
worker X" is decided in exactly one function, :func:`may_act_as_worker`.

Never log, echo or put a token in an error message.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from hearth.errors import Forbidden, Unauthorized

ADMIN = "admin"
WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``role`` is ``admin`` or ``worker``."""

    name: str
    role: str


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Principal:
        """The caller's identity, or ``Unauthorized``."""
        ...


class BearerTokenAuthenticator:
    """Accepts exactly one token, the admin token of this coordinator."""

    def __init__(self, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("the admin token must not be empty")
        self._token = admin_token.encode()
        self._admin = Principal(name=ADMIN, role=ADMIN)

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise Unauthorized(
                "this route needs a token: send 'Authorization: Bearer <token>' (the admin "
                "token is in <data dir>/admin.token)")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        if not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise Unauthorized("the token is not valid for this coordinator; use the token "
                               "from its data dir (admin.token)")
        return self._admin


def may_act_as_worker(principal: Principal, worker: str) -> bool:
    """The one rule for worker identity: admin acts as anyone, a worker only as itself."""
    if principal.role == ADMIN:
        return True
    return principal.role == WORKER and principal.name == worker


def require_worker(principal: Principal, worker: str) -> None:
    if not may_act_as_worker(principal, worker):
        raise Forbidden(f"{principal.name} may not act as worker {worker!r}; a worker may "
                        "only lease, heartbeat and finish under its own name")
