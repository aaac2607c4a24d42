"""Who is calling, and what they may do.

Identity comes from exactly two places, both verified by the coordinator itself:

- the **client certificate** the TLS layer verified against Hearth's CA (the ASGI
  ``tls`` extension of :mod:`hearth.api.tls`): its common name is the name, its
  organisational unit the role (``worker`` or ``admin``), its kind URIs the job kinds
  a worker may run; a revoked serial is refused on its next request;
- a **bearer token**: the coordinator's admin token (``<data>/admin.token``, compared
  in constant time) or an API token whose hashed record carries a role and namespace
  scopes. A token sent over a mutually authenticated connection decides the role: the
  certificate proved the device, the token names the person.

Never a name the client claims. What each role may do is the one table
:data:`ROLE_PERMISSIONS`; whether a principal may act as worker X is the one function
:func:`may_act_as_worker`; namespace scopes are checked by :func:`require_namespace`.
Never log, echo or put a token or certificate in an error message.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from starlette.requests import Request

from hearth.api.tls import peer_certificate
from hearth.errors import Forbidden, HearthError, Unauthorized
from hearth.security import tokens
from hearth.store.port import TokenRecord

ADMIN = "admin"
OPERATOR = "operator"
APPROVER = "approver"
VIEWER = "viewer"
WORKER = "worker"

# Permissions: what a route needs.
JOBS_READ = "jobs.read"
JOBS_SUBMIT = "jobs.submit"
JOBS_CONTROL = "jobs.control"
APPROVE = "approve"
BLOBS_READ = "blobs.read"
BLOBS_WRITE = "blobs.write"
NODES_READ = "nodes.read"
WORK = "work"
ADMINISTER = "administer"

_PEOPLE_READ = frozenset({JOBS_READ, BLOBS_READ, NODES_READ})

#: The one table of who may do what. ``work`` is further limited to the worker's own
#: name by :func:`may_act_as_worker`.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    ADMIN: frozenset({JOBS_READ, JOBS_SUBMIT, JOBS_CONTROL, APPROVE, BLOBS_READ,
                      BLOBS_WRITE, NODES_READ, WORK, ADMINISTER}),
    OPERATOR: _PEOPLE_READ | {JOBS_SUBMIT, JOBS_CONTROL, APPROVE, BLOBS_WRITE},
    APPROVER: _PEOPLE_READ | {APPROVE},
    VIEWER: _PEOPLE_READ,
    WORKER: frozenset({WORK, BLOBS_READ, BLOBS_WRITE}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``via`` is ``cert``, ``token`` or ``admin-token``; ``namespaces`` empty means every
    namespace; ``kinds`` empty means any kind (workers only); ``ident`` is the
    certificate serial or token id (for audit and revocation, never a secret)."""

    name: str
    role: str
    via: str = "admin-token"
    namespaces: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    ident: str = ""

    def may(self, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Principal:
        """The caller's identity, or ``Unauthorized``."""
        ...

    def recheck(self, principal: Principal) -> None:
        """``Unauthorized`` if the principal's credential was revoked or expired since
        it was authenticated (a long poll re-checks before handing out work)."""
        ...


class Credentials(Protocol):
    """What the authenticator asks of the security service (in memory, no I/O)."""

    def token(self, token_id: str) -> TokenRecord | None: ...

    def is_revoked(self, serial: str) -> bool: ...


@lru_cache(maxsize=1024)
def _cert_identity(der: bytes) -> tuple[str, str, tuple[str, ...], str, float] | None:
    from hearth.security.pki import identity

    try:
        info = identity(der)
    except HearthError:
        return None
    return info.name, info.role, info.kinds, info.serial, info.not_after


class RequestAuthenticator:
    """Certificates and tokens, as the module docstring describes."""

    def __init__(self, admin_token: str, credentials: Credentials | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        if not admin_token:
            raise ValueError("the admin token must not be empty")
        self._admin_token = admin_token.encode()
        self._admin = Principal(name=ADMIN, role=ADMIN)
        self._credentials = credentials
        self._clock = clock

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        der = peer_certificate(request.scope)
        if header:
            if der is not None:  # the device must still be in good standing
                self._from_certificate(der)
            return self._from_token(header)
        if der is not None:
            return self._from_certificate(der)
        raise Unauthorized(
            "this route needs credentials: a client certificate (a bundle made by "
            "`hearth enroll`) or 'Authorization: Bearer <token>' (`hearth token create`; "
            "the admin token is in <data dir>/admin.token)")

    def recheck(self, principal: Principal) -> None:
        if self._credentials is None:
            return
        if principal.via == "cert" and self._credentials.is_revoked(principal.ident):
            raise Unauthorized(f"the certificate of {principal.name} (serial "
                               f"{principal.ident}) has been revoked")
        if principal.via == "token":
            record = self._credentials.token(principal.ident)
            if record is None or record.revoked_at is not None or (
                    record.expires_at is not None and self._clock() >= record.expires_at):
                raise Unauthorized(f"token {principal.ident} ({principal.name}) is no "
                                   "longer valid")

    def _from_token(self, header: str) -> Principal:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        if hmac.compare_digest(value.encode(), self._admin_token):
            return self._admin
        parsed = tokens.parse(value)
        record = None
        if parsed is not None and self._credentials is not None:
            record = self._credentials.token(parsed[0])
        if record is None or parsed is None or not tokens.matches(parsed[1],
                                                                   record.secret_hash):
            raise Unauthorized("the token is not valid for this coordinator: check it, or "
                               "ask an admin for one (`hearth token create`)")
        if record.revoked_at is not None:
            raise Unauthorized(f"token {record.id} ({record.name}) was revoked; ask an admin "
                               "for a new one")
        if record.expires_at is not None and self._clock() >= record.expires_at:
            raise Unauthorized(f"token {record.id} ({record.name}) has expired; ask an admin "
                               "for a new one")
        return Principal(name=record.name, role=record.role, via="token",
                         namespaces=record.namespaces, ident=record.id)

    def _from_certificate(self, der: bytes) -> Principal:
        found = _cert_identity(der)
        if found is None:
            raise Unauthorized("the client certificate is not a Hearth identity; use a "
                               "bundle made by `hearth enroll`")
        name, role, kinds, serial, not_after = found
        if self._credentials is not None and self._credentials.is_revoked(serial):
            raise Unauthorized(f"the certificate of {name} (serial {serial}) has been "
                               "revoked; ask the coordinator's admin to enroll it again")
        if self._clock() >= not_after:
            raise Unauthorized(f"the certificate of {name} has expired; ask the "
                               f"coordinator's admin for a new bundle (hearth enroll {name})")
        return Principal(name=name, role=role, via="cert", kinds=kinds, ident=serial)


def require(principal: Principal, permission: str) -> Principal:
    if not principal.may(permission):
        raise Forbidden(f"{principal.role} {principal.name!r} may not do this "
                        f"(it needs the {permission} permission); see docs/security.md "
                        "for what each role may do")
    return principal


def may_act_as_worker(principal: Principal, worker: str) -> bool:
    """The one rule for worker identity: admin acts as anyone, a worker only as itself."""
    if principal.role == ADMIN:
        return True
    return principal.role == WORKER and principal.name == worker


def require_worker(principal: Principal, worker: str) -> None:
    if not may_act_as_worker(principal, worker):
        raise Forbidden(f"{principal.name} may not act as worker {worker!r}; a worker may "
                        "only register, lease, heartbeat and finish under its own name")


def require_kinds(principal: Principal, kinds: Iterable[str]) -> None:
    """A worker certificate enrolled with ``--kinds`` leases only those kinds."""
    if not principal.kinds:
        return
    outside = sorted(set(kinds) - set(principal.kinds))
    if outside:
        raise Forbidden(f"worker {principal.name} is enrolled for kinds "
                        f"{', '.join(principal.kinds)} only, not {', '.join(outside)}")


def in_scope(principal: Principal, namespace: str) -> bool:
    return not principal.namespaces or namespace in principal.namespaces


def require_namespace(principal: Principal, namespace: str) -> None:
    if not in_scope(principal, namespace):
        raise Forbidden(f"{principal.name!r} is limited to namespace"
                        f"{'s' if len(principal.namespaces) > 1 else ''} "
                        f"{', '.join(principal.namespaces)}, not {namespace!r}")


def scoped_namespace(principal: Principal, namespace: str | None) -> str | None:
    """The namespace filter a scoped principal's listing must use."""
    if namespace is not None:
        require_namespace(principal, namespace)
        return namespace
    if not principal.namespaces:
        return None
    if len(principal.namespaces) == 1:
        return principal.namespaces[0]
    raise Forbidden(f"{principal.name!r} is limited to namespaces "
                    f"{', '.join(principal.namespaces)}: name one (namespace=...)")
