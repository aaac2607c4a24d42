"""How a bundle worker picks its coordinator's address: the first that answers and
proves, in a TLS handshake, that it holds a certificate of the bundle's CA."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hearth.security.bundle import Bundle, make_bundle
from hearth.security.pki import CertificateAuthority
from hearth.worker.connect import coordinator_url, first_reachable, rediscover


@contextmanager
def tls_server(ca: CertificateAuthority, tmp: Path, name: str) -> Iterator[str]:
    """A TLS listener on 127.0.0.1 presenting a server certificate of ``ca``."""
    issued = ca.issue_server(hosts=["localhost"], ips=["127.0.0.1"])
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def bundle_of(ca: CertificateAuthority, addresses: list[str]) -> Bundle:
    return make_bundle(ca, ca.issue_client("w1", "worker"), addresses=addresses)


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_stranger_at_a_bundle_address_is_passed_over(tmp_path: Path) -> None:
    ours, theirs = CertificateAuthority.create("ours"), CertificateAuthority.create("theirs")
    with tls_server(theirs, tmp_path, "stranger") as stranger, \
            tls_server(ours, tmp_path, "real") as real:
        bundle = bundle_of(ours, [closed_port(), stranger, real])
        assert coordinator_url(bundle, mdns=False) == f"https://{real}"
        context = bundle.ssl_context()
        assert first_reachable([stranger], context=context) is None
        assert first_reachable([stranger]) == stranger  # TCP alone cannot tell


def test_addr_overrides_and_rediscover_looks_elsewhere(tmp_path: Path) -> None:
    ours = CertificateAuthority.create("ours")
    with tls_server(ours, tmp_path, "a") as first, tls_server(ours, tmp_path, "b") as second:
        bundle = bundle_of(ours, [first, second])
        assert coordinator_url(bundle, addr="10.9.9.9:7843") == "https://10.9.9.9:7843"
        assert rediscover(bundle, f"https://{first}", mdns=False) == f"https://{second}"
        assert rediscover(bundle_of(ours, [first]), f"https://{first}", mdns=False) is None


def test_looking_stops_when_asked(tmp_path: Path) -> None:
    ours = CertificateAuthority.create("ours")
    bundle = bundle_of(ours, [closed_port(), closed_port()])
    calls: list[float] = []
    stopped = iter([False, False, True])
    url = coordinator_url(bundle, mdns=False, stopped=lambda: next(stopped),
                          sleep=calls.append)
    assert url is None and calls == [0.5, 1.0]
