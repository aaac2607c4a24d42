"""The security routes of the client: whoami, enrollment, certificates, tokens.

A mixin of :class:`hearth.client.AsyncClient` (one implementation, so the blocking
client derives these too). The enrollment answer is the bundle's bytes: the caller
writes them with mode 0600 (``hearth.security.bundle.write_bundle``); a token's value
comes back once, in :class:`hearth.security.wire.TokenCreated`. Neither is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from hearth.client.build import build_model
from hearth.client.http import HttpCore, model_body
from hearth.security.wire import (
    CertList,
    CertOut,
    EnrollIn,
    RevokeIn,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    WhoAmI,
)


class AdminMethods:
    _core: HttpCore

    async def whoami(self) -> WhoAmI:
        """Who the coordinator takes this client for (name, role, how it knows)."""
        response = await self._core.request("GET", "/v1/whoami")
        return WhoAmI.model_validate_json(response.content)

    async def enroll(self, name: str, *, role: str = "worker", kinds: Sequence[str] = (),
                     validity: float = 90 * 86400.0,
                     addresses: Sequence[str] | None = None) -> bytes:
        """Issue a bundle for ``name`` (admin only); returns the bundle file's bytes.
        ``addresses`` None = the coordinator's own LAN addresses; empty = none (mDNS)."""
        body = build_model(EnrollIn, name=name, role=role, kinds=list(kinds),
                           validity=validity,
                           addresses=None if addresses is None else list(addresses))
        response = await self._core.request("POST", "/v1/enrollments",
                                            body=model_body(body))
        return response.content

    async def certificates(self, name: str | None = None) -> list[CertOut]:
        params = {"name": name} if name else None
        response = await self._core.request("GET", "/v1/certificates", params=params)
        return CertList.model_validate_json(response.content).certificates

    async def revoke(self, *, name: str | None = None, serial: str | None = None
                     ) -> list[CertOut]:
        """Revoke every certificate of ``name``, or the one with ``serial``."""
        body = build_model(RevokeIn, name=name, serial=serial)
        response = await self._core.request("POST", "/v1/certificates/revoke",
                                            body=model_body(body))
        return CertList.model_validate_json(response.content).certificates

    async def create_token(self, name: str, *, role: str, namespaces: Sequence[str] = (),
                           expires_in: float | None = None) -> TokenCreated:
        body = build_model(TokenCreate, name=name, role=role, namespaces=list(namespaces),
                           expires_in=expires_in)
        response = await self._core.request("POST", "/v1/tokens", body=model_body(body))
        return TokenCreated.model_validate_json(response.content)

    async def tokens(self) -> list[TokenOut]:
        response = await self._core.request("GET", "/v1/tokens")
        return TokenList.model_validate_json(response.content).tokens

    async def revoke_token(self, id_or_name: str) -> TokenOut:
        response = await self._core.request("DELETE",
                                            f"/v1/tokens/{quote(id_or_name, safe='')}")
        return TokenOut.model_validate_json(response.content)


__all__ = ["AdminMethods"]
