"""The JSON shapes of the security routes (enrollment, certificates, tokens, whoami),
shared by the API and the client like :mod:`hearth.wire`.

A token's value appears in exactly one shape, :class:`TokenCreated`, answered once.
No shape ever carries a private key except the enrollment answer, which is the bundle
file itself (``application/x-hearth-bundle``), not JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from hearth.store.port import CertRecord, TokenRecord
from hearth.wire import WireModel

#: Request bodies: unknown fields are refused, and so are values of the wrong JSON
#: type ("3" or true where a number belongs); an integer is accepted for a float.
_STRICT = ConfigDict(extra="forbid", strict=True)

BUNDLE_MEDIA_TYPE = "application/x-hearth-bundle"


class EnrollIn(WireModel):
    model_config = _STRICT
    name: str
    role: str = "worker"
    kinds: list[str] = Field(default_factory=list, max_length=256)
    #: Seconds the certificate is valid.
    validity: float = 90 * 86400.0
    #: ``host:port`` the worker dials; None = the coordinator's own LAN addresses;
    #: an empty list = none (the worker discovers the coordinator over mDNS).
    addresses: list[str] | None = Field(default=None, max_length=64)


class RevokeIn(WireModel):
    model_config = _STRICT
    name: str | None = None
    serial: str | None = None


class CertOut(WireModel):
    serial: str
    name: str
    role: str
    kinds: list[str]
    fingerprint: str
    issued_at: float
    not_after: float
    revoked_at: float | None


class CertList(WireModel):
    certificates: list[CertOut]


class TokenCreate(WireModel):
    model_config = _STRICT
    name: str
    role: str
    namespaces: list[str] = Field(default_factory=list, max_length=256)
    #: Seconds until the token expires; None = never.
    expires_in: float | None = None


class TokenOut(WireModel):
    id: str
    name: str
    role: str
    namespaces: list[str]
    created_at: float
    expires_at: float | None
    revoked_at: float | None


class TokenCreated(TokenOut):
    #: The token itself. Shown once: only its hash is stored.
    token: str


class TokenList(WireModel):
    tokens: list[TokenOut]


class WhoAmI(WireModel):
    name: str
    role: str
    via: str
    namespaces: list[str]
    kinds: list[str]
    ident: str


def cert_to_wire(cert: CertRecord) -> dict[str, Any]:
    return {"serial": cert.serial, "name": cert.name, "role": cert.role,
            "kinds": list(cert.kinds), "fingerprint": cert.fingerprint,
            "issued_at": cert.issued_at, "not_after": cert.not_after,
            "revoked_at": cert.revoked_at}


def token_to_wire(token: TokenRecord) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "role": token.role,
            "namespaces": list(token.namespaces), "created_at": token.created_at,
            "expires_at": token.expires_at, "revoked_at": token.revoked_at}
