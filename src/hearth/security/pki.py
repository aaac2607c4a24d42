"""Hearth's certificate authority: who may talk to the coordinator, proven by mutual TLS.

Why it exists: nodes authenticate with client certificates signed by a small private CA
that the coordinator keeps in its data directory (ECDSA P-256, SHA-256). A peer is
trusted when its certificate chains to this CA, never to the system trust store. A
client's identity is read from its certificate alone: ``CN=<name>``, ``O=hearth``,
``OU=<role>`` (worker or admin), and one SAN URI ``urn:hearth:kind:<kind>`` per job kind
a worker may run (none means any kind). The server certificate carries ``OU=server`` and
``serverAuth`` only, so it can never pass as a client.

This module makes and checks certificates; :mod:`hearth.security.tls` keeps the server
certificate current and builds the TLS contexts. Its names are still importable from
here, loaded on first use (tls imports this module, never the other way at import time).

What it must never do:

- write a private key unencrypted anywhere but the data directory (mode 0600, written
  atomically so no reader sees half a key) or an enrollment bundle;
- log a key, or put one in a message, an exception or a ``repr`` (fingerprints and
  serials are what get logged);
- trust a certificate it did not sign, or use a CA key that other users can read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import math
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hearth.domain.validation import MAX_SECONDS, check_kind, check_node_name
from hearth.errors import ValidationError

if TYPE_CHECKING:  # at run time these load on first use, see __getattr__ below
    from hearth.security.tls import (
        client_ssl_context,
        ensure_server_cert,
        local_names,
        reload_server_cert,
        server_ssl_context,
    )

ORG = "hearth"
CLIENT_ROLES = ("admin", "worker")
SERVER_ROLE = "server"
KIND_URI = "urn:hearth:kind:"
#: Certificates start this long before "now", so a peer whose clock is a little behind
#: does not see a certificate that is not valid yet.
CLOCK_SKEW = 300.0
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
#: A DNS name (also matches a dotted IPv4 address).
HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class PkiError(ValidationError):
    """A certificate, key or CA directory that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a certificate says, in plain values. Times are unix seconds."""

    name: str
    role: str
    kinds: tuple[str, ...]
    serial: str  # lowercase hex
    not_before: float
    not_after: float
    fingerprint: str  # SHA-256 of the DER, lowercase hex
    issuer_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    """A new certificate with its key. The repr shows neither."""

    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    info: CertInfo


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def utc_date(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m-%d %H:%M UTC")


def _shown(text: str) -> str:
    return repr(text[:64])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def load_certificate(data: bytes | x509.Certificate, *, what: str = "the certificate"
                     ) -> x509.Certificate:
    """Parse PEM or DER; ``PkiError`` naming ``what`` otherwise."""
    if isinstance(data, x509.Certificate):
        return data
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (ValueError, TypeError, AttributeError):
        raise PkiError(f"{what} is not a valid PEM or DER certificate") from None


def load_private_key(data: bytes, *, what: str = "the key") -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM EC key. The message never quotes the input."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PkiError(f"{what} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{what} is not an ECDSA key; Hearth keys are ECDSA P-256")
    return key


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if len(values) == 1 else ""


def _describe(cert: x509.Certificate, issuer_fingerprint: str | None = None) -> CertInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return CertInfo(
        name=_attr(cert.subject, NameOID.COMMON_NAME),
        role=_attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        kinds=tuple(u.removeprefix(KIND_URI) for u in uris if u.startswith(KIND_URI)),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        issuer_fingerprint=issuer_fingerprint,
    )


def identity(cert: bytes | x509.Certificate) -> CertInfo:
    """The Hearth identity in a client certificate (DER or PEM); checks no signature."""
    parsed = load_certificate(cert)
    try:
        info = _describe(parsed)
    except ValueError:
        raise PkiError("the certificate has malformed extensions; it was not made by "
                       "Hearth") from None
    if (_attr(parsed.subject, NameOID.ORGANIZATION_NAME) != ORG or not info.name
            or info.role not in CLIENT_ROLES):
        raise PkiError(f"certificate {_shown(info.name)} is not a Hearth client certificate: "
                       "it needs CN=<name>, O=hearth and OU=worker or OU=admin")
    try:
        check_node_name(info.name)
        for kind in info.kinds:
            check_kind(kind)
    except ValidationError as exc:
        raise PkiError(f"certificate {_shown(info.name)} is not usable: {exc.message}") from None
    return info


def _subject(common_name: str, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)]
    if unit is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attrs)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                         decipher_only=False)


def check_hosts(hosts: Sequence[str]) -> list[str]:
    """DNS names for a certificate: lowercased, no trailing dot, no repeats."""
    found = []
    for host in hosts:
        name = host.strip().lower().rstrip(".") if isinstance(host, str) else ""
        if len(name) > 253 or not HOST_RE.fullmatch(name):
            raise PkiError(f"host name {_shown(str(host))} is not valid: use letters, digits, "
                           "'-' and '.' (an IP address goes in ips)")
        found.append(name)
    return list(dict.fromkeys(found))


def check_ips(ips: Sequence[str]) -> list[str]:
    """IP addresses for a certificate, in canonical form, no repeats."""
    found = []
    for ip in ips:
        try:
            found.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise PkiError(f"{_shown(str(ip))} is not an IP address") from None
    return list(dict.fromkeys(found))


class CertificateAuthority:
    """The CA: a self-signed certificate and its key. Issues and verifies."""

    __slots__ = ("_key", "cert")

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key

    def __repr__(self) -> str:
        return f"CertificateAuthority(name={self.name!r}, fingerprint={self.fingerprint!r})"

    @classmethod
    def create(cls, name: str = "Hearth CA", *, validity_days: int = 3650,
               now: float | None = None) -> CertificateAuthority:
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise PkiError("the CA name must be 1-64 characters")
        if not isinstance(validity_days, int) or not 0 < validity_days <= 36500:
            raise PkiError("the CA validity must be 1 to 36500 days")
        t = _now(now)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _subject(name)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(_utc(t - CLOCK_SKEW))
                .not_valid_after(_utc(t + validity_days * 86400.0))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_key_usage(ca=True), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Read ``ca.crt`` and ``ca.key``; refuse a key that other users can read."""
        directory = Path(directory)
        crt_path, key_path = directory / "ca.crt", directory / "ca.key"
        raw: dict[str, bytes] = {}
        for path in (crt_path, key_path):
            try:
                raw[path.name] = path.read_bytes()
            except FileNotFoundError:
                raise PkiError(f"{path} is missing, so the CA in {directory} cannot be used; "
                               "restore it from a backup, or move the directory aside to make "
                               "a new CA (every node must then enroll again)") from None
            except OSError as exc:
                raise PkiError(f"{path} cannot be read ({exc.strerror}); check its owner "
                               "and permissions") from None
        mode = key_path.stat().st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            raise PkiError(f"{key_path} can be read by other users (mode {mode:03o}); run "
                           f"`chmod 600 {key_path}` and start again")
        cert = load_certificate(raw["ca.crt"], what=str(crt_path))
        key = load_private_key(raw["ca.key"], what=str(key_path))
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (x509.ExtensionNotFound, ValueError):
            is_ca = False
        if not is_ca:
            raise PkiError(f"{crt_path} is not a CA certificate")
        if not key_matches(cert, key):
            raise PkiError(f"{key_path} does not belong to {crt_path}; restore both files "
                           "from the same backup")
        return cls(cert, key)

    def save(self, directory: Path) -> None:
        """Write ``ca.key`` (0600) and ``ca.crt`` (0644) into a 0700 directory."""
        directory = Path(directory)
        private_dir(directory)
        for name in ("ca.crt", "ca.key"):
            if (directory / name).exists():
                raise PkiError(f"a CA already exists in {directory} ({name}); load it "
                               "instead of saving over it")
        try:
            write_atomic(directory / "ca.key", _key_pem(self._key), mode=0o600, overwrite=False)
            write_atomic(directory / "ca.crt", self.cert_pem, mode=0o644, overwrite=False)
        except FileExistsError:
            raise PkiError(f"a CA was saved in {directory} at the same time; load it") from None
        except OSError as exc:
            raise PkiError(f"cannot write the CA into {directory}: {exc.strerror}") from None

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def name(self) -> str:
        return _attr(self.cert.subject, NameOID.COMMON_NAME)

    def issue_client(self, name: str, role: str, *, kinds: Sequence[str] = (),
                     validity: float = 90 * 86400.0, now: float | None = None) -> Issued:
        """A client certificate; ``kinds`` limit what a worker may run (none: any)."""
        check_node_name(name)
        if role not in CLIENT_ROLES:
            raise PkiError(f"role {_shown(str(role))} is not valid: use worker or admin")
        kinds = sorted({check_kind(k) for k in kinds})
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(KIND_URI + k)
                                        for k in kinds]
        return self._issue(_subject(name, role), sans, ExtendedKeyUsageOID.CLIENT_AUTH,
                           validity, now)

    def issue_server(self, *, hosts: Sequence[str], ips: Sequence[str],
                     validity: float = 397 * 86400.0, now: float | None = None) -> Issued:
        """The coordinator's certificate, valid for these DNS names and IP addresses."""
        names, addrs = check_hosts(hosts), check_ips(ips)
        if not names and not addrs:
            raise PkiError("a server certificate needs at least one host name or IP address")
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in addrs]
        return self._issue(_subject("Hearth server", SERVER_ROLE), sans,
                           ExtendedKeyUsageOID.SERVER_AUTH, validity, now)

    def _issue(self, subject: x509.Name, sans: list[x509.GeneralName],
               usage: x509.ObjectIdentifier, validity: float, now: float | None) -> Issued:
        if (not isinstance(validity, int | float) or not math.isfinite(validity)
                or not 0 < validity <= MAX_SECONDS):
            raise PkiError("validity must be more than 0 seconds and at most ten years")
        t = _now(now)
        ca_end = self.cert.not_valid_after_utc.timestamp()
        if t >= ca_end:
            raise PkiError(f"the CA {_shown(self.name)} expired on {utc_date(ca_end)}; make a "
                           "new CA and enroll every node again")
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_utc(t - CLOCK_SKEW))
            .not_valid_after(_utc(min(t + validity, ca_end)))  # never outlive the CA
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key),
                      _describe(cert, self.fingerprint))

    def verify(self, cert_pem_or_der: bytes | x509.Certificate, *,
               now: float | None = None) -> CertInfo:
        """Check that this CA signed the certificate and that it is valid at ``now``."""
        cert = load_certificate(cert_pem_or_der)
        info = _describe(cert, self.fingerprint)
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            raise PkiError(f"certificate {_shown(info.name)} was not issued by this Hearth CA "
                           f"({self.name}): it is foreign; enroll the node again with "
                           "`hearth enroll`") from None
        t = _now(now)
        if t < info.not_before:
            raise PkiError(f"certificate {_shown(info.name)} is not valid until "
                           f"{utc_date(info.not_before)}; check this machine's clock")
        if t > info.not_after:
            raise PkiError(f"certificate {_shown(info.name)} expired on "
                           f"{utc_date(info.not_after)}; issue a new one")
        return info


def private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) as 0700 if it does not exist."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise PkiError(f"cannot create {directory}: {exc.strerror}") from None


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = True) -> None:
    """Write all of ``data`` or nothing: a temporary file made with O_EXCL and mode 0600,
    fsynced, set to ``mode``, then renamed over ``path`` (or hard-linked when not
    ``overwrite``, which raises ``FileExistsError`` rather than replace a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # no hard links on this filesystem: check, then rename
                if path.exists():
                    raise FileExistsError(17, "File exists", str(path)) from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def ensure_ca(directory: Path, name: str | None = None) -> tuple[CertificateAuthority, bool]:
    """Load the CA in ``directory``, or create and save one; True when created."""
    directory = Path(directory)
    if (directory / "ca.crt").exists() or (directory / "ca.key").exists():
        return CertificateAuthority.load(directory), False
    ca = CertificateAuthority.create(name or "Hearth CA")
    ca.save(directory)
    return ca, True


#: Moved to :mod:`hearth.security.tls`; still importable from here.
_TLS_NAMES = frozenset({"client_ssl_context", "ensure_server_cert", "local_names",
                        "reload_server_cert", "server_ssl_context"})

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute

    def __getattr__(name: str) -> Any:
        if name not in _TLS_NAMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from hearth.security import tls

        value = getattr(tls, name)
        globals()[name] = value  # later lookups skip this function
        return value


__all__ = [
    "CLIENT_ROLES", "KIND_URI", "CertInfo", "CertificateAuthority", "Issued", "PkiError",
    "check_hosts", "check_ips", "client_ssl_context", "ensure_ca", "ensure_server_cert",
    "identity", "key_matches", "load_certificate", "load_private_key", "local_names",
    "reload_server_cert", "server_ssl_context", "utc_date", "write_atomic",
]
