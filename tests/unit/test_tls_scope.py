"""Pins the uvicorn patch of :mod:`hearth.api.tls` against the installed uvicorn.

The patch overrides two hooks of uvicorn's httptools protocol. If an upgrade renames
or moves them, the override silently stops running and every certificate caller gets
401; these tests fail first: one checks the hooks are still uvicorn's, one serves a
real TLS coordinator and asks it who a client certificate is.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hearth.api.tls import TlsHttpToolsProtocol, peer_certificate, peer_tls_info
from hearth.coordinator import Settings, serve_in_thread
from hearth.security.pki import CertificateAuthority
from hearth.security.tls import client_ssl_context


def test_the_patch_subclasses_uvicorns_httptools_protocol() -> None:
    assert issubclass(TlsHttpToolsProtocol, HttpToolsProtocol)
    assert TlsHttpToolsProtocol.__mro__[1] is HttpToolsProtocol


@pytest.mark.parametrize("hook", ["connection_made", "on_message_begin"])
def test_the_hooks_it_overrides_are_defined_by_uvicorns_protocol(hook: str) -> None:
    # Defined on HttpToolsProtocol itself (connection_made exists on asyncio.Protocol
    # too, where overriding it would be too late to matter), and overridden here.
    assert hook in vars(HttpToolsProtocol), f"uvicorn's HttpToolsProtocol has no {hook}"
    assert hook in vars(TlsHttpToolsProtocol)
    parent = inspect.signature(getattr(HttpToolsProtocol, hook))
    ours = inspect.signature(getattr(TlsHttpToolsProtocol, hook))
    assert list(parent.parameters) == list(ours.parameters)


def test_on_message_begin_still_makes_the_scope_the_patch_extends() -> None:
    # The override writes self.scope["extensions"] after the parent built self.scope.
    assert "self.scope" in inspect.getsource(HttpToolsProtocol.on_message_begin)


class _PlainTransport:
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_a_plain_tcp_connection_has_no_tls_extension() -> None:
    assert peer_tls_info(_PlainTransport()) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", [
    {}, {"extensions": None}, {"extensions": {}}, {"extensions": {"tls": None}},
    {"extensions": {"tls": {"hearth_peer_der": None}}},
    {"extensions": {"tls": {"hearth_peer_der": "pem text"}}},
])
def test_peer_certificate_is_none_without_der(scope: dict[str, Any]) -> None:
    assert peer_certificate(scope) is None


def test_peer_certificate_reads_the_der() -> None:
    assert peer_certificate({"extensions": {"tls": {"hearth_peer_der": b"\x30"}}}) == b"\x30"


# -- a real TLS coordinator --------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("tls") / "data"
    settings = Settings(data_dir=data, host="127.0.0.1", port=0, tls=True, mdns=False)
    with serve_in_thread(settings) as url:
        yield url, data


def client_context(data: Path, name: str, role: str, kinds: list[str] | None = None
                   ) -> tuple[ssl.SSLContext, str]:
    ca = CertificateAuthority.load(data / "ca")
    issued = ca.issue_client(name, role, kinds=kinds or [])
    return client_ssl_context(ca.cert_pem, issued.cert_pem, issued.key_pem), issued.info.serial


def test_the_coordinator_speaks_tls(tls_coordinator: tuple[str, Path]) -> None:
    url, _ = tls_coordinator
    assert url.startswith("https://127.0.0.1:")


def test_whoami_names_the_client_certificate(tls_coordinator: tuple[str, Path]) -> None:
    url, data = tls_coordinator
    context, serial = client_context(data, "w-tls", "worker", ["img.resize", "email.send"])
    with httpx.Client(base_url=url, verify=context, timeout=30) as http:
        r = http.get("/v1/whoami")
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "w-tls", "role": "worker", "via": "cert",
                            "namespaces": [], "kinds": ["email.send", "img.resize"],
                            "ident": serial}
        # Every request of the keep-alive connection carries the extension.
        assert http.get("/v1/whoami").json()["ident"] == serial


def test_an_admin_certificate_is_admin_over_tls(tls_coordinator: tuple[str, Path]) -> None:
    url, data = tls_coordinator
    context, serial = client_context(data, "laptop", "admin")
    with httpx.Client(base_url=url, verify=context, timeout=30) as http:
        me = http.get("/v1/whoami").json()
        assert (me["name"], me["role"], me["via"], me["ident"]) == (
            "laptop", "admin", "cert", serial)
        assert http.get("/v1/jobs").status_code == 200


def test_a_token_over_mutual_tls_decides_the_role(tls_coordinator: tuple[str, Path]) -> None:
    url, data = tls_coordinator
    context, _ = client_context(data, "w-tok", "worker")
    token = (data / "admin.token").read_text().strip()
    with httpx.Client(base_url=url, verify=context, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        me = http.get("/v1/whoami").json()
        assert (me["name"], me["role"], me["via"]) == ("admin", "admin", "admin-token")
