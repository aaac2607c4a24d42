"""Hearth's security: its own certificate authority, mutual TLS and enrollment bundles.

``pki`` is the CA (issue, verify, read identities); ``tls`` keeps the server
certificate current and builds the TLS contexts; ``bundle`` is the one-file
``NAME.hearth`` a node enrolls with. The names below are re-exported on first
use, not at import, so importing a light submodule (``hearth.security.tokens``) does not
load ``cryptography``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hearth._lazy import lazy_exports

if TYPE_CHECKING:
    from hearth.security.bundle import (
        FORMAT_VERSION,
        MAX_BUNDLE,
        Bundle,
        BundleError,
        check_address,
        dumps,
        loads,
        make_bundle,
        read_bundle,
        write_bundle,
    )
    from hearth.security.pki import (
        CertificateAuthority,
        CertInfo,
        Issued,
        PkiError,
        ensure_ca,
        identity,
    )
    from hearth.security.tls import (
        client_ssl_context,
        ensure_server_cert,
        local_names,
        reload_server_cert,
        server_ssl_context,
    )

_PKI = ("CertInfo", "CertificateAuthority", "Issued", "PkiError", "ensure_ca", "identity")
_TLS = ("client_ssl_context", "ensure_server_cert", "local_names", "reload_server_cert",
        "server_ssl_context")
_BUNDLE = ("FORMAT_VERSION", "MAX_BUNDLE", "Bundle", "BundleError", "check_address", "dumps",
           "loads", "make_bundle", "read_bundle", "write_bundle")
_LAZY = {**dict.fromkeys(_PKI, "hearth.security.pki"),
         **dict.fromkeys(_TLS, "hearth.security.tls"),
         **dict.fromkeys(_BUNDLE, "hearth.security.bundle")}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "FORMAT_VERSION",
    "MAX_BUNDLE",
    "Bundle",
    "BundleError",
    "CertInfo",
    "CertificateAuthority",
    "Issued",
    "PkiError",
    "check_address",
    "client_ssl_context",
    "dumps",
    "ensure_ca",
    "ensure_server_cert",
    "identity",
    "loads",
    "local_names",
    "make_bundle",
    "read_bundle",
    "reload_server_cert",
    "server_ssl_context",
    "write_bundle",
]
