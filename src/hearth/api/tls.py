"""The TLS peer certificate, handed to the app in the ASGI scope.

uvicorn terminates TLS but does not tell the application who the verified client is.
Identity must come from the certificate the TLS layer verified, never from a name the
client sends, so this module subclasses uvicorn's httptools protocol and adds the
ASGI TLS extension (``scope["extensions"]["tls"]``, see the ASGI spec's "TLS
extension") to every request of a TLS connection:

- ``client_cert_chain``: the verified client certificate as PEM (a one-item list);
- ``tls_version`` and ``cipher_suite`` as the spec describes them;
- ``hearth_peer_der``: the same certificate as DER bytes (what the authenticator
  parses, so it need not decode PEM on every request).

The certificate is read once per connection, right after the handshake, from the
``ssl_object`` of the transport. The patch is deliberately this small: it copies
nothing from uvicorn and overrides one hook; ``tests/unit/test_tls_scope.py`` pins it
against the installed uvicorn, so an upgrade that moves the hook fails a test rather
than silently dropping identities (the authenticator then refuses: no certificate,
no access).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: TLS protocol version numbers of the ASGI TLS extension.
_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def peer_tls_info(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension for a connection, or None for plain TCP."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None if cipher is None else cipher[0],
        "hearth_peer_der": der or None,
    }


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the ``tls`` scope extension."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = peer_tls_info(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]


def peer_certificate(scope: Any) -> bytes | None:
    """The verified client certificate (DER) of a request, if its connection has one."""
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls:
        return None
    der = tls.get("hearth_peer_der")
    return der if isinstance(der, bytes) else None
