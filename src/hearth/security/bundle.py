"""The enrollment bundle ``NAME.hearth``: everything one node needs to join, in one file.

Why it exists: enrolling a worker or an admin must be one copy of one small file. A
bundle is a gzip'd tar of exactly four members, ``manifest.json``, ``ca.crt``,
``client.crt`` and ``client.key``, written deterministically (fixed order, mtime from
``issued_at``, uid/gid 0, mode 0600), so the same bundle always has the same bytes.

Whoever hands over a bundle decides which coordinator the node trusts: its ``ca.crt``
is the only trust anchor the node's TLS uses. So a bundle is checked whole before it is
used: the key must match the certificate, the certificate must be signed by the
bundle's CA, and the manifest must agree with the certificate.

What it must never do: put key material in a message, an exception or a ``repr``;
extract members to disk (they are read in memory, so ``../`` names and links cannot
escape); read without bounds (``MAX_BUNDLE`` packed, ``MAX_UNPACKED`` unpacked).
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import math
import os
import ssl
import tarfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from hearth.security.pki import (
    HOST_RE,
    CertificateAuthority,
    CertInfo,
    Issued,
    PkiError,
    client_ssl_context,
    identity,
    key_matches,
    load_certificate,
    load_private_key,
    utc_date,
    write_atomic,
)

FORMAT = "hearth-bundle"
FORMAT_VERSION = 1
MAX_BUNDLE = 64 * 1024
#: A real bundle's tar is 10 KiB (one tar record); anything far larger is not a bundle.
MAX_UNPACKED = 256 * 1024
MEMBERS = ("manifest.json", "ca.crt", "client.crt", "client.key")
_AGAIN = "make a new one with `hearth enroll`"


class BundleError(PkiError):
    """A bundle that cannot be read, written or used; the message names it and says why."""


@dataclass(frozen=True, slots=True, repr=False)
class Bundle:
    """One node's credentials and where to find its coordinator."""

    name: str
    role: str
    kinds: tuple[str, ...]
    addresses: tuple[str, ...]
    issued_at: float
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # never the key, nor the certificates
        return (f"Bundle(name={self.name!r}, role={self.role!r}, kinds={self.kinds!r}, "
                f"addresses={self.addresses!r}, issued_at={self.issued_at!r})")

    def info(self) -> CertInfo:
        return replace(identity(self.cert_pem), issuer_fingerprint=self.ca_fingerprint)

    @property
    def ca_fingerprint(self) -> str:
        return load_certificate(self.ca_pem).fingerprint(hashes.SHA256()).hex()

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS 1.3 client context that trusts this bundle's CA alone."""
        return client_ssl_context(self.ca_pem, self.cert_pem, self.key_pem)

    def with_addresses(self, addresses: Sequence[str]) -> Bundle:
        return replace(self, addresses=tuple(check_address(a) for a in addresses))


def check_address(text: str) -> str:
    """``host:port`` or ``[IPv6]:port`` with a port from 1 to 65535; returned unchanged."""
    host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    if host.startswith("[") and host.endswith("]"):
        try:
            ok = bool(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            ok = False
    else:
        ok = len(host) <= 253 and HOST_RE.fullmatch(host) is not None
    if not (sep and ok and port.isascii() and port.isdigit() and len(port) <= 5
            and 1 <= int(port) <= 65535):
        shown = repr(text[:80]) if isinstance(text, str) else "<not text>"
        raise BundleError(f"address {shown} is not valid: use host:port or [IPv6]:port "
                          "with a port from 1 to 65535")
    return text


def make_bundle(ca: CertificateAuthority, issued: Issued, *, addresses: Sequence[str] = (),
                now: float | None = None) -> Bundle:
    """Package a client certificate this CA issued, with the coordinator's addresses."""
    ca.verify(issued.cert_pem, now=now)
    info = identity(issued.cert_pem)
    return Bundle(name=info.name, role=info.role, kinds=info.kinds,
                  addresses=tuple(check_address(a) for a in addresses),
                  issued_at=time.time() if now is None else now,
                  ca_pem=ca.cert_pem, cert_pem=issued.cert_pem, key_pem=issued.key_pem)


def dumps(bundle: Bundle) -> bytes:
    """The bundle file's bytes: the same bundle always gives the same bytes."""
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "name": bundle.name,
                "role": bundle.role, "kinds": list(bundle.kinds),
                "addresses": list(bundle.addresses), "issued_at": bundle.issued_at,
                "ca_fingerprint": bundle.ca_fingerprint}
    contents = (json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n",
                bundle.ca_pem, bundle.cert_pem, bundle.key_pem)
    mtime = max(0, int(bundle.issued_at))
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in zip(MEMBERS, contents, strict=True):
            entry = tarfile.TarInfo(name)
            entry.size, entry.mtime, entry.mode = len(content), mtime, 0o600
            entry.uid = entry.gid = 0
            entry.uname = entry.gname = ""
            tar.addfile(entry, io.BytesIO(content))
    return gzip.compress(packed.getvalue(), compresslevel=9, mtime=mtime)


def _unpack(data: bytes, source: str) -> dict[str, bytes]:
    if not data:
        raise BundleError(f"{source} is empty; copy the whole .hearth file again")
    if len(data) > MAX_BUNDLE:
        raise BundleError(f"{source} is larger than {MAX_BUNDLE // 1024} KiB, far more than "
                          "a Hearth bundle; it is not one")
    if data[:2] != b"\x1f\x8b":
        raise BundleError(f"{source} is not a Hearth bundle (not a gzip archive): bundles are "
                          "made by `hearth enroll`")
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(data, MAX_UNPACKED + 1)
    except zlib.error:
        raise BundleError(f"{source} is damaged (its gzip data is corrupt); copy it again or "
                          f"{_AGAIN}") from None
    if len(raw) > MAX_UNPACKED:
        raise BundleError(f"{source} unpacks to more than {MAX_UNPACKED // 1024} KiB; it is "
                          "not a Hearth bundle")
    if not inflater.eof:
        raise BundleError(f"{source} is truncated; copy the whole file again")
    if inflater.unused_data:
        raise BundleError(f"{source} has data after its archive; it is not a Hearth bundle")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for entry in tar.getmembers():
                name = entry.name
                if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                    raise BundleError(f"{source} contains an unsafe path {name[:60]!r}; do "
                                      "not use it")
                if not entry.isreg():
                    what = "a link" if entry.issym() or entry.islnk() else "a special file"
                    raise BundleError(f"{source} contains {what} ({name[:60]!r}), which a "
                                      "Hearth bundle never has; do not use it")
                if name not in MEMBERS:
                    raise BundleError(f"{source} contains an unexpected file {name[:60]!r}; a "
                                      "bundle holds only " + ", ".join(MEMBERS))
                if name in files:
                    raise BundleError(f"{source} contains {name} twice; do not use it")
                member = tar.extractfile(entry)
                files[name] = member.read() if member is not None else b""
    except (tarfile.TarError, EOFError):
        raise BundleError(f"{source} is truncated or damaged (its tar archive is "
                          f"incomplete); {_AGAIN}") from None
    for name in MEMBERS:
        if name not in files:
            raise BundleError(f"{source} is missing {name}; {_AGAIN}")
    return files


def _manifest(raw: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        raise BundleError(f"{source} has a manifest.json that is not valid JSON; "
                          f"{_AGAIN}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(f"{source} is not a Hearth bundle (its manifest.json does not say "
                          f'"format": "{FORMAT}")')
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{source} has no valid bundle format version; {_AGAIN}")
    if version > FORMAT_VERSION:
        raise BundleError(f"{source} was made by a newer Hearth (bundle format "
                          f"{min(version, 10**6)}); upgrade Hearth on this machine to use it")
    number = doc.get("issued_at")
    checks = {
        "name": isinstance(doc.get("name"), str),
        "role": isinstance(doc.get("role"), str),
        "kinds": _strings(doc.get("kinds")),
        "addresses": _strings(doc.get("addresses")),
        "issued_at": isinstance(number, int | float) and not isinstance(number, bool)
        and math.isfinite(number),
        "ca_fingerprint": isinstance(doc.get("ca_fingerprint"), str),
    }
    for key, ok in checks.items():
        if not ok:
            raise BundleError(f"{source} has a manifest.json without a valid {key!r}; {_AGAIN}")
    return doc


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def loads(data: bytes, *, source: str = "the bundle", now: float | None = None,
          check_expiry: bool = True) -> Bundle:
    """Read and check a bundle's bytes; ``BundleError`` (one sentence naming ``source``)."""
    files = _unpack(data, source)
    manifest = _manifest(files["manifest.json"], source)
    try:
        ca_cert = load_certificate(files["ca.crt"], what=f"{source}'s ca.crt")
        cert = load_certificate(files["client.crt"], what=f"{source}'s client.crt")
        key = load_private_key(files["client.key"], what=f"{source}'s client.key")
    except PkiError as exc:
        raise BundleError(f"{exc.message}; {_AGAIN}") from None
    if ca_cert.fingerprint(hashes.SHA256()).hex() != manifest["ca_fingerprint"]:
        raise BundleError(f"{source}'s manifest names another CA than its ca.crt; the bundle "
                          f"was altered or damaged: {_AGAIN}")
    if not key_matches(cert, key):
        raise BundleError(f"{source}'s client.key does not match its client.crt; the bundle "
                          f"was altered or damaged: {_AGAIN}")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise BundleError(f"{source} holds a client certificate that its own CA did not "
                          f"issue (it is foreign); {_AGAIN}") from None
    try:
        info = identity(cert)
    except PkiError as exc:
        raise BundleError(f"{source}: {exc.message}") from None
    for field_name, found in (("name", info.name), ("role", info.role)):
        if manifest[field_name] != found:
            raise BundleError(f"{source}'s manifest says {field_name} "
                              f"{manifest[field_name][:64]!r} but its certificate says "
                              f"{found!r}; the bundle was altered: {_AGAIN}")
    if sorted(manifest["kinds"]) != sorted(info.kinds):
        raise BundleError(f"{source}'s manifest lists other job kinds than its certificate; "
                          f"the bundle was altered: {_AGAIN}")
    t = time.time() if now is None else now
    if check_expiry and t > info.not_after:
        raise BundleError(f"{source} expired on {utc_date(info.not_after)}; ask the "
                          f"coordinator's admin for a new one: hearth enroll {info.name}")
    if check_expiry and t < info.not_before:
        raise BundleError(f"{source} is not valid until {utc_date(info.not_before)}; check "
                          "this machine's clock")
    try:
        addresses = tuple(check_address(a) for a in manifest["addresses"])
    except BundleError as exc:
        raise BundleError(f"{source} has a bad coordinator {exc.message}") from None
    return Bundle(name=info.name, role=info.role, kinds=info.kinds, addresses=addresses,
                  issued_at=float(manifest["issued_at"]), ca_pem=files["ca.crt"],
                  cert_pem=files["client.crt"], key_pem=files["client.key"])


def read_bundle(path: str | os.PathLike[str], *, now: float | None = None,
                check_expiry: bool = True) -> Bundle:
    """Read the bundle file at ``path``; ``BundleError`` naming the path otherwise."""
    source = f"bundle {os.fspath(path)}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE + 1)
    except FileNotFoundError:
        raise BundleError(f"{source} does not exist; copy the .hearth file made by "
                          "`hearth enroll` to this machine and give its path") from None
    except IsADirectoryError:
        raise BundleError(f"{source} is a directory, not a bundle file") from None
    except OSError as exc:
        raise BundleError(f"{source} cannot be read ({exc.strerror}); check its owner and "
                          "permissions") from None
    return loads(data, source=source, now=now, check_expiry=check_expiry)


def write_bundle(path: str | os.PathLike[str], bundle: Bundle, *,
                 overwrite: bool = False) -> Path:
    """Write atomically with mode 0600; ``BundleError`` if the file exists (unless
    ``overwrite``)."""
    path = Path(path)
    try:
        write_atomic(path, dumps(bundle), mode=0o600, overwrite=overwrite)
    except FileExistsError:
        raise BundleError(f"{path} already exists and was left as it is; remove it or "
                          "choose another name") from None
    except OSError as exc:
        raise BundleError(f"cannot write the bundle {path}: {exc.strerror}") from None
    return path


__all__ = [
    "FORMAT_VERSION",
    "MAX_BUNDLE",
    "Bundle",
    "BundleError",
    "check_address",
    "dumps",
    "loads",
    "make_bundle",
    "read_bundle",
    "write_bundle",
]
