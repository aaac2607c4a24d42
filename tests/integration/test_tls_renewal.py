"""The server certificate is renewed before it expires, and a running coordinator
starts handing out the new one without a restart."""

from __future__ import annotations

import socket
from pathlib import Path

from hearth.coordinator import Settings, build_app, serve_in_thread
from hearth.security import local
from hearth.security.bundle import read_bundle
from hearth.security.pki import CertificateAuthority
from hearth.security.tls import local_names


def served_serial(url: str, data: Path) -> str:
    """The serial of the certificate the coordinator presents in a fresh handshake."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = read_bundle(data / "admin.hearth").ssl_context()
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def test_a_running_coordinator_renews_and_serves_the_new_certificate(tmp_path: Path,
                                                                     sqlite_url: str) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, port=0, tls=True, store_url=sqlite_url)
    app = build_app(settings)
    pki = app.state.hearth_pki
    assert isinstance(pki, local.LocalPki)
    with serve_in_thread(settings, app) as url:
        first = served_serial(url, data)
        assert pki.renew_now() is False  # a fresh certificate is not renewed
        assert served_serial(url, data) == first
        # Time passes: the certificate on disk now expires within the renewal window.
        ca = CertificateAuthority.load(data / "ca")
        hosts, ips = local_names()
        short = ca.issue_server(hosts=hosts, ips=ips, validity=5 * 86400.0)
        (data / "ca" / "server.crt").write_bytes(short.cert_pem)
        (data / "ca" / "server.key").write_bytes(short.key_pem)
        assert pki.renew_now() is True
        renewed = served_serial(url, data)
        assert renewed not in (first, short.info.serial)
        on_disk = (data / "ca" / "server.crt").read_bytes()
        assert ca.verify(on_disk).serial == renewed
        assert oct((data / "ca" / "server.key").stat().st_mode & 0o777) == "0o600"

