"""Mutual TLS with Hearth's CA: the coordinator's certificate and the TLS contexts.

Why it exists: :mod:`hearth.security.pki` makes and checks certificates; this module puts
them to use. It keeps ``server.crt``/``server.key`` valid for every name and address of
this host (reissuing when one is missing, the CA changed or expiry is near), and builds
the ``ssl`` contexts both ends use: TLS 1.3 only, the Hearth CA as the only trust
anchor, a client certificate required by the server, the host name checked by the
client.

What it must never do:

- trust the system store or any CA other than Hearth's, accept TLS below 1.3, or let a
  client connect without a certificate;
- turn off host-name checking on the client side;
- write a client's private key to disk: it reaches OpenSSL through an in-memory file
  (memfd), or, where there is none, a 0600 file in a 0700 directory that is removed at
  once; the server key is written only into the data directory, mode 0600, atomically;
- keep using a server key that other users can read (it is replaced), or put a key in
  a message or exception.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from hearth.netif import local_addresses
from hearth.security.pki import (
    HOST_RE,
    SERVER_ROLE,
    CertificateAuthority,
    CertInfo,
    PkiError,
    check_hosts,
    check_ips,
    key_matches,
    load_certificate,
    load_private_key,
    private_dir,
    write_atomic,
)

#: Always in the server certificate: a client on this host may dial either.
LOOPBACK_IPS = ("127.0.0.1", "::1")


def local_names() -> tuple[list[str], list[str]]:
    """This host's DNS names and IP addresses, for the server certificate. Never fails.

    The names are ``localhost``, the host name and ``<short name>.local`` (mDNS); the
    addresses are both loopbacks then every dialable interface address
    (:func:`hearth.netif.local_addresses`).
    """
    hosts = ["localhost"]
    with contextlib.suppress(OSError, UnicodeError):
        host = socket.gethostname().strip().lower().rstrip(".")
        if host and host != "localhost":
            hosts += [host, host.split(".")[0] + ".local"]
    hosts = [h for h in dict.fromkeys(hosts) if len(h) <= 253 and HOST_RE.fullmatch(h)]
    return hosts, list(dict.fromkeys([*LOOPBACK_IPS, *local_addresses()]))


def ensure_server_cert(directory: Path, ca: CertificateAuthority, *, hosts: Sequence[str] = (),
                       ips: Sequence[str] = (), renew_before: float = 30 * 86400.0,
                       now: float | None = None) -> tuple[Path, Path, CertInfo, bool]:
    """Keep ``server.crt``/``server.key`` valid for this host; True when (re)issued."""
    directory = Path(directory)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    local_hosts, local_ips = local_names()
    want_hosts, want_ips = check_hosts([*local_hosts, *hosts]), check_ips([*local_ips, *ips])
    t = time.time() if now is None else now
    info = _usable_server_cert(cert_path, key_path, ca, want_hosts, want_ips,
                               t + renew_before, t)
    if info is not None:
        return cert_path, key_path, info, False
    issued = ca.issue_server(hosts=want_hosts, ips=want_ips, now=t)
    private_dir(directory)
    try:  # key first: a crash in between leaves a mismatched pair, reissued next time
        write_atomic(key_path, issued.key_pem, mode=0o600)
        write_atomic(cert_path, issued.cert_pem, mode=0o644)
    except OSError as exc:
        raise PkiError(f"cannot write the server certificate into {directory}: "
                       f"{exc.strerror}") from None
    return cert_path, key_path, issued.info, True


def _usable_server_cert(cert_path: Path, key_path: Path, ca: CertificateAuthority,
                        hosts: list[str], ips: list[str], until: float, now: float
                        ) -> CertInfo | None:
    """The current server certificate's info, or None when it must be (re)issued."""
    try:
        if os.name == "posix" and key_path.stat().st_mode & 0o077:
            return None  # a key others could read is a key to replace
        cert = load_certificate(cert_path.read_bytes())
        key = load_private_key(key_path.read_bytes())
        info = ca.verify(cert, now=now)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, PkiError, x509.ExtensionNotFound):
        return None
    have_hosts = {h.lower() for h in san.get_values_for_type(x509.DNSName)}
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    if (info.role != SERVER_ROLE or not key_matches(cert, key) or info.not_after < until
            or not set(hosts) <= have_hosts or not set(ips) <= have_ips):
        return None
    return info


def _context(ca_pem: bytes, *, server: bool) -> ssl.SSLContext:
    """The policy both ends share: TLS 1.3 only, the peer must present a certificate,
    and the Hearth CA is the only trust anchor (no system store)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise PkiError("the CA certificate is not valid PEM") from None
    return ctx


def server_ssl_context(ca_pem: bytes, cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """TLS 1.3 only; every client must present a certificate signed by the CA."""
    ctx = _context(ca_pem, server=True)
    reload_server_cert(ctx, cert_path, key_path)
    return ctx


def reload_server_cert(ctx: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    """Load a renewed certificate; handshakes from now on present it."""
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except OSError:  # ssl.SSLError included
        raise PkiError(f"the server certificate {cert_path} and key {key_path} cannot be "
                       "loaded (missing, unreadable or not a pair); delete both and start "
                       "the coordinator again to issue new ones") from None


def client_ssl_context(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """TLS 1.3 only; trusts the Hearth CA alone and checks the server's host name."""
    ctx = _context(ca_pem, server=False)
    ctx.check_hostname = True
    try:
        _load_chain_in_memory(ctx, cert_pem.rstrip(b"\n") + b"\n" + key_pem)
    except OSError:  # ssl.SSLError included
        raise PkiError("the client certificate and key cannot be loaded: they are damaged "
                       "or do not belong together; enroll this node again") from None
    return ctx


def _load_chain_in_memory(ctx: ssl.SSLContext, pem: bytes) -> None:
    """``load_cert_chain`` reads only files: give it one that never reaches a disk."""
    fd = -1
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            fd = os.memfd_create("hearth-client", os.MFD_CLOEXEC)
    if fd >= 0:
        with os.fdopen(fd, "wb") as memfile:
            memfile.write(pem)
            memfile.flush()
            ctx.load_cert_chain(f"/proc/self/fd/{memfile.fileno()}")
        return
    with tempfile.TemporaryDirectory(prefix="hearth-") as tmp:  # made 0700
        path = os.path.join(tmp, "client.pem")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(pem)
        try:
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)


__all__ = ["LOOPBACK_IPS", "client_ssl_context", "ensure_server_cert", "local_names",
           "reload_server_cert", "server_ssl_context"]
