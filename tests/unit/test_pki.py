"""Hearth's CA (``hearth.security.pki``) on real files, and the server certificate and
real TLS 1.3 handshakes (``hearth.security.tls``)."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

import hearth.security
import hearth.security.bundle
import hearth.security.pki
import hearth.security.tls
from hearth.domain.validation import MAX_SECONDS
from hearth.errors import ValidationError
from hearth.security.pki import (
    CLOCK_SKEW,
    CertificateAuthority,
    Issued,
    PkiError,
    client_ssl_context,
    ensure_ca,
    ensure_server_cert,
    identity,
    local_names,
    reload_server_cert,
    server_ssl_context,
)

NOW = 1_700_000_000.0  # in the past: live handshakes use the real clock
DAY = 86400.0


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Test CA", now=NOW)


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return CertificateAuthority.create("Other CA", now=NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_security_api_is_pinned_and_lazy() -> None:
    assert set(hearth.security.__all__) == {
        "FORMAT_VERSION", "MAX_BUNDLE", "Bundle", "BundleError", "CertInfo",
        "CertificateAuthority", "Issued", "PkiError", "check_address", "client_ssl_context",
        "dumps", "ensure_ca", "ensure_server_cert", "identity", "loads", "local_names",
        "make_bundle", "read_bundle", "reload_server_cert", "server_ssl_context",
        "write_bundle"}
    homes = [hearth.security.tls, hearth.security.pki, hearth.security.bundle]
    for name in hearth.security.__all__:
        home = next(m for m in homes if name in vars(m).get("__all__", ()))
        assert getattr(hearth.security, name) is getattr(home, name)
    code = "import sys, hearth.security; assert 'cryptography' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_tls_names_are_still_importable_from_pki_without_an_import_cycle() -> None:
    moved = set(hearth.security.tls.__all__) - {"LOOPBACK_IPS"}
    assert moved <= set(hearth.security.pki.__all__)
    for name in moved:
        assert getattr(hearth.security.pki, name) is getattr(hearth.security.tls, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hearth.security.pki.nothing  # noqa: B018
    for first, then in (("tls", "pki"), ("pki", "tls")):  # either may be imported first
        code = (f"import hearth.security.{first}\n"
                f"from hearth.security.{then} import ensure_server_cert, local_names")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the CA on disk ---------------------------------------------------------------------


def test_save_load_round_trip_with_private_modes(tmp_path: Path, ca: CertificateAuthority
                                                 ) -> None:
    directory = tmp_path / "data" / "ca"
    ca.save(directory)
    assert (mode(directory), mode(directory / "ca.key"), mode(directory / "ca.crt")) == (
        0o700, 0o600, 0o644)
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "ca.key"]
    loaded = CertificateAuthority.load(directory)
    assert (loaded.fingerprint, loaded.name, loaded.cert_pem) == (
        ca.fingerprint, "Test CA", ca.cert_pem)
    assert "PRIVATE" not in repr(loaded)
    issued = loaded.issue_client("w1", "worker", now=NOW)
    assert ca.verify(issued.cert_pem, now=NOW).name == "w1"  # the same key signs


def test_save_refuses_to_replace_a_ca(tmp_path: Path, ca: CertificateAuthority,
                                      other_ca: CertificateAuthority) -> None:
    ca.save(tmp_path)
    with pytest.raises(PkiError, match="already exists"):
        other_ca.save(tmp_path)
    assert CertificateAuthority.load(tmp_path).fingerprint == ca.fingerprint


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660, 0o644, 0o620], ids=oct)
def test_load_refuses_a_key_others_can_read(tmp_path: Path, ca: CertificateAuthority,
                                            loose: int) -> None:
    ca.save(tmp_path)
    (tmp_path / "ca.key").chmod(loose)
    with pytest.raises(PkiError, match="chmod 600") as caught:
        CertificateAuthority.load(tmp_path)
    assert str(tmp_path / "ca.key") in caught.value.message


def _missing_key(d: Path) -> None:
    (d / "ca.key").unlink()


def _missing_crt(d: Path) -> None:
    (d / "ca.crt").unlink()


def _garbage_crt(d: Path) -> None:
    (d / "ca.crt").write_bytes(b"not a certificate")


def _garbage_key(d: Path) -> None:
    (d / "ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def _other_key(d: Path) -> None:
    CertificateAuthority.create("Other", now=NOW).save(d / "x")
    (d / "x" / "ca.key").replace(d / "ca.key")


def _leaf_as_ca(d: Path) -> None:
    issued = CertificateAuthority.load(d).issue_client("w1", "worker", now=NOW)
    (d / "ca.crt").write_bytes(issued.cert_pem)


@pytest.mark.parametrize(("damage", "words"), [
    (_missing_key, "ca.key is missing"),
    (_missing_crt, "ca.crt is missing"),
    (_garbage_crt, "not a valid PEM or DER certificate"),
    (_garbage_key, "not an unencrypted PEM private key"),
    (_other_key, "does not belong to"),
    (_leaf_as_ca, "is not a CA certificate"),
])
def test_load_explains_a_broken_ca(tmp_path: Path, ca: CertificateAuthority,
                                   damage: Callable[[Path], None], words: str) -> None:
    ca.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(PkiError, match=words) as caught:
        CertificateAuthority.load(tmp_path)
    assert "PRIVATE KEY" not in caught.value.message


def test_ensure_ca_creates_once_then_loads(tmp_path: Path) -> None:
    first, created = ensure_ca(tmp_path / "ca", "Home CA")
    again, created_again = ensure_ca(tmp_path / "ca")
    assert (created, created_again) == (True, False)
    assert (again.fingerprint, again.name) == (first.fingerprint, "Home CA")


# -- client certificates and identities -------------------------------------------------


@pytest.mark.parametrize(("name", "role", "kinds", "expected"), [
    ("w1", "worker", (), ()),
    ("gpu-box.2", "worker", ("img.resize", "email.send", "img.resize"),
     ("email.send", "img.resize")),
    ("alice", "admin", (), ()),
])
def test_issue_client_identity_round_trip(ca: CertificateAuthority, name: str, role: str,
                                          kinds: tuple[str, ...], expected: tuple[str, ...]
                                          ) -> None:
    issued = ca.issue_client(name, role, kinds=kinds, validity=10 * DAY, now=NOW)
    assert "PRIVATE" not in repr(issued) and b"PRIVATE KEY" in issued.key_pem
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    for form in (issued.cert_pem, cert.public_bytes(Encoding.DER), cert):
        info = identity(form)
        assert (info.name, info.role, info.kinds) == (name, role, expected)
    assert info.serial == format(cert.serial_number, "x") == info.serial.lower()
    assert (info.not_before, info.not_after) == (NOW - CLOCK_SKEW, NOW + 10 * DAY)
    assert info.fingerprint == issued.info.fingerprint and len(info.fingerprint) == 64
    assert issued.info.issuer_fingerprint == ca.fingerprint
    assert ca.verify(issued.cert_pem, now=NOW) == issued.info


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"name": "bad name"}, "node name"),
    ({"name": ""}, "node name"),
    ({"role": "server"}, "role 'server' is not valid"),
    ({"role": "root"}, "role 'root' is not valid"),
    ({"kinds": ["Email"]}, "job kind"),
    ({"validity": 0}, "validity"),
    ({"validity": -5.0}, "validity"),
    ({"validity": MAX_SECONDS + 1}, "validity"),
    ({"validity": float("nan")}, "validity"),
])
def test_issue_client_rejects_bad_input(ca: CertificateAuthority, kwargs: dict[str, Any],
                                        words: str) -> None:
    args: dict[str, Any] = {"name": "w1", "role": "worker", **kwargs}
    with pytest.raises(ValidationError, match=words):
        ca.issue_client(args.pop("name"), args.pop("role"), now=NOW, **args)


def test_issued_certificates_never_outlive_the_ca() -> None:
    short = CertificateAuthority.create("Short", validity_days=30, now=NOW)
    info = short.issue_client("w1", "worker", validity=90 * DAY, now=NOW).info
    assert info.not_after == NOW + 30 * DAY
    with pytest.raises(PkiError, match="expired"):
        short.issue_client("w1", "worker", now=NOW + 31 * DAY)


def test_verify_rejects_foreign_expired_and_future(ca: CertificateAuthority,
                                                   other_ca: CertificateAuthority) -> None:
    foreign = other_ca.issue_client("w1", "worker", now=NOW).cert_pem
    with pytest.raises(PkiError, match="foreign"):
        ca.verify(foreign, now=NOW)
    own = ca.issue_client("w1", "worker", validity=DAY, now=NOW).cert_pem
    with pytest.raises(PkiError, match="expired on 2023-11-15"):
        ca.verify(own, now=NOW + 2 * DAY)
    with pytest.raises(PkiError, match="not valid until"):
        ca.verify(own, now=NOW - DAY)
    assert ca.verify(own, now=NOW + DAY - 1).name == "w1"


def test_identity_refuses_what_is_not_a_client_certificate(ca: CertificateAuthority) -> None:
    server = ca.issue_server(hosts=["localhost"], ips=[], now=NOW).cert_pem
    for cert in (ca.cert_pem, server):
        with pytest.raises(PkiError, match="not a Hearth client certificate"):
            identity(cert)
    for junk in (b"", b"junk", b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----"):
        with pytest.raises(PkiError, match="not a valid PEM or DER certificate"):
            identity(junk)


# -- this host and the server certificate ----------------------------------------------


def test_local_names_cover_this_host() -> None:
    hosts, ips = local_names()
    assert hosts[0] == "localhost" and socket.gethostname().lower() in hosts
    assert ips[:2] == ["127.0.0.1", "::1"]
    assert len(set(hosts)) == len(hosts) and len(set(ips)) == len(ips)
    assert not any(ipaddress.ip_address(ip).is_link_local for ip in ips)


def sans(cert_path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(ip) for ip in san.get_values_for_type(x509.IPAddress)})


def test_server_cert_covers_this_host_and_is_kept(tmp_path: Path, ca: CertificateAuthority
                                                  ) -> None:
    crt, key, info, renewed = ensure_server_cert(tmp_path, ca, hosts=["Hearth.Example."],
                                                 ips=["10.1.2.3"], now=NOW)
    assert renewed and (crt, key) == (tmp_path / "server.crt", tmp_path / "server.key")
    assert (mode(key), info.role, info.issuer_fingerprint) == (0o600, "server", ca.fingerprint)
    dns, ips = sans(crt)
    local_hosts, local_ips = local_names()
    assert {"localhost", socket.gethostname().lower(), "hearth.example"} <= dns
    assert {"127.0.0.1", "::1", "10.1.2.3", *local_ips} <= ips and set(local_hosts) <= dns
    again = ensure_server_cert(tmp_path, ca, hosts=["hearth.example"], ips=["10.1.2.3"],
                               now=NOW + 100 * DAY)
    assert again == (crt, key, info, False)


def _near_expiry(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    return {"now": NOW + 380 * DAY}


def _other_ca(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    ensure_server_cert(d, CertificateAuthority.create("Other", now=NOW), now=NOW)
    return {}


def _new_host(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    return {"hosts": ["new.example"]}


def _new_ip(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    return {"ips": ["192.0.2.77"]}


def _no_server_key(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    (d / "server.key").unlink()
    return {}


def _garbage_cert(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    (d / "server.crt").write_bytes(b"garbage")
    return {}


def _loose_key(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    (d / "server.key").chmod(0o644)
    return {}


def _client_cert(d: Path, ca: CertificateAuthority) -> dict[str, Any]:
    issued = ca.issue_client("w1", "worker", now=NOW)
    (d / "server.crt").write_bytes(issued.cert_pem)
    (d / "server.key").write_bytes(issued.key_pem)
    return {}


@pytest.mark.parametrize("change", [_near_expiry, _other_ca, _new_host, _new_ip, _no_server_key,
                                    _garbage_cert, _loose_key, _client_cert])
def test_server_cert_is_reissued_when_it_no_longer_fits(
        tmp_path: Path, ca: CertificateAuthority,
        change: Callable[[Path, CertificateAuthority], dict[str, Any]]) -> None:
    _, _, first, _ = ensure_server_cert(tmp_path, ca, now=NOW)
    kwargs: dict[str, Any] = {"now": NOW, **change(tmp_path, ca)}
    crt, key, info, renewed = ensure_server_cert(tmp_path, ca, **kwargs)
    assert renewed and info.fingerprint != first.fingerprint
    assert ca.verify(crt.read_bytes(), now=kwargs["now"]) == info and mode(key) == 0o600
    assert ensure_server_cert(tmp_path, ca, **kwargs)[3] is False


def test_server_cert_rejects_bad_names(tmp_path: Path, ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="host name 'bad host'"):
        ensure_server_cert(tmp_path, ca, hosts=["bad host"], now=NOW)
    with pytest.raises(PkiError, match=r"'10\.0\.0\.300' is not an IP address"):
        ensure_server_cert(tmp_path, ca, ips=["10.0.0.300"], now=NOW)


# -- TLS 1.3 handshakes ----------------------------------------------------------------


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, *,
              hostname: str = "localhost") -> tuple[Any, Any]:
    """Connect over a socketpair. Returns (what the server saw, what the client saw):
    the peer's DER certificate on success, else the exception."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(10)
    client_sock.settimeout(10)
    seen: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                seen["server"] = tls.getpeercert(binary_form=True)
                tls.sendall(b"ok")
        except (OSError, ValueError) as exc:
            seen["server"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=hostname) as tls:
            assert tls.version() == "TLSv1.3"
            der = tls.getpeercert(binary_form=True)
            got = tls.recv(2)
            seen["client"] = der if got == b"ok" else ConnectionError("closed")
    except (OSError, ValueError) as exc:
        seen["client"] = exc
    finally:
        thread.join(10)
        server_sock.close()
        client_sock.close()
    return seen["server"], seen["client"]


@pytest.fixture
def server(tmp_path: Path, ca: CertificateAuthority) -> tuple[ssl.SSLContext, Path, Path]:
    crt, key, _, _ = ensure_server_cert(tmp_path, ca)
    return server_ssl_context(ca.cert_pem, crt, key), crt, key


def client_for(ca: CertificateAuthority, issued: Issued) -> ssl.SSLContext:
    return client_ssl_context(ca.cert_pem, issued.cert_pem, issued.key_pem)


def test_mutual_tls_handshake_gives_the_server_the_client_identity(
        ca: CertificateAuthority, server: tuple[ssl.SSLContext, Path, Path]) -> None:
    issued = ca.issue_client("w7", "worker", kinds=["email.send"])
    seen_by_server, seen_by_client = handshake(server[0], client_for(ca, issued))
    assert isinstance(seen_by_server, bytes), seen_by_server
    info = identity(seen_by_server)
    assert (info.name, info.role, info.kinds) == ("w7", "worker", ("email.send",))
    assert ca.verify(seen_by_client).role == "server"


def test_reloaded_server_cert_is_used_by_new_handshakes(
        tmp_path: Path, ca: CertificateAuthority,
        server: tuple[ssl.SSLContext, Path, Path]) -> None:
    ctx, crt, key = server
    client = client_for(ca, ca.issue_client("w1", "worker"))
    before = handshake(ctx, client)[1]
    _, _, renewed, _ = ensure_server_cert(tmp_path, ca, hosts=["new.example"])
    reload_server_cert(ctx, crt, key)
    after = handshake(ctx, client)[1]
    assert identity_fp(before) != identity_fp(after) == renewed.fingerprint


def identity_fp(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()


def test_a_client_from_another_ca_is_refused(ca: CertificateAuthority,
                                            other_ca: CertificateAuthority,
                                            server: tuple[ssl.SSLContext, Path, Path]) -> None:
    foreign = other_ca.issue_client("w1", "worker")
    seen_by_server, seen_by_client = handshake(
        server[0], client_ssl_context(ca.cert_pem, foreign.cert_pem, foreign.key_pem))
    assert isinstance(seen_by_server, ssl.SSLError)
    assert isinstance(seen_by_client, OSError)


def test_a_client_without_a_certificate_is_refused(ca: CertificateAuthority,
                                                   server: tuple[ssl.SSLContext, Path, Path]
                                                   ) -> None:
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.load_verify_locations(cadata=ca.cert_pem.decode())
    seen_by_server, seen_by_client = handshake(server[0], bare)
    assert isinstance(seen_by_server, ssl.SSLError)
    assert isinstance(seen_by_client, OSError)


def test_the_client_checks_the_server_name_and_ca(ca: CertificateAuthority,
                                                  other_ca: CertificateAuthority,
                                                  server: tuple[ssl.SSLContext, Path, Path]
                                                  ) -> None:
    client = client_for(ca, ca.issue_client("w1", "worker"))
    assert isinstance(handshake(server[0], client, hostname="elsewhere.example")[1],
                      ssl.SSLCertVerificationError)
    other = other_ca.issue_client("w1", "worker")
    trusting_other = client_ssl_context(other_ca.cert_pem, other.cert_pem, other.key_pem)
    assert isinstance(handshake(server[0], trusting_other)[1], ssl.SSLCertVerificationError)


def test_client_context_leaves_no_key_file_and_rejects_a_mismatched_pair(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    one, two = ca.issue_client("w1", "worker"), ca.issue_client("w2", "worker")
    if os.path.isdir("/proc/self/fd"):  # the memfd holding the key is closed again
        before = sorted(os.listdir("/proc/self/fd"))
        client_for(ca, one)
        assert sorted(os.listdir("/proc/self/fd")) == before
    else:
        client_for(ca, one)
    with pytest.raises(PkiError, match="do not belong together") as caught:
        client_ssl_context(ca.cert_pem, one.cert_pem, two.key_pem)
    assert "PRIVATE KEY" not in caught.value.message
    with pytest.raises(PkiError, match="CA certificate is not valid PEM"):
        client_ssl_context(b"junk", one.cert_pem, one.key_pem)
