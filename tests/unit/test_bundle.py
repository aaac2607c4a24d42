"""The enrollment bundle (``hearth.security.bundle``): round trips and every bad input."""

from __future__ import annotations

import gzip
import io
import json
import ssl
import stat
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hearth.security.bundle import (
    MAX_BUNDLE,
    MEMBERS,
    Bundle,
    BundleError,
    check_address,
    dumps,
    loads,
    make_bundle,
    read_bundle,
    write_bundle,
)
from hearth.security.pki import CertificateAuthority, Issued, PkiError

NOW = 1_700_000_000.0
DAY = 86400.0
SOURCE = "the test bundle"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Test CA", now=NOW)


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return CertificateAuthority.create("Other CA", now=NOW)


@pytest.fixture(scope="module")
def issued(ca: CertificateAuthority) -> Issued:
    return ca.issue_client("w1", "worker", kinds=["img.resize", "email.send"], validity=90 * DAY,
                           now=NOW)


@pytest.fixture(scope="module")
def bundle(ca: CertificateAuthority, issued: Issued) -> Bundle:
    return make_bundle(ca, issued, addresses=["10.0.0.5:8443", "[fd00::5]:8443",
                                              "coord.local:8443"], now=NOW)


@pytest.fixture(scope="module")
def good(bundle: Bundle) -> bytes:
    return dumps(bundle)


# -- round trips -----------------------------------------------------------------------


def test_round_trip_is_deterministic_and_small(bundle: Bundle, good: bytes,
                                               ca: CertificateAuthority) -> None:
    assert loads(good, now=NOW) == bundle
    assert dumps(loads(good, now=NOW)) == good
    assert len(good) < 4096
    assert (bundle.name, bundle.role, bundle.kinds) == ("w1", "worker",
                                                        ("email.send", "img.resize"))
    assert bundle.ca_fingerprint == ca.fingerprint
    info = bundle.info()
    assert (info.name, info.issuer_fingerprint) == ("w1", ca.fingerprint)


def test_archive_layout(good: bytes, bundle: Bundle) -> None:
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as tar:
        entries = tar.getmembers()
        manifest = json.loads(read_member(tar, "manifest.json"))
    assert [e.name for e in entries] == list(MEMBERS)
    assert {(e.mode, e.uid, e.gid, e.mtime, e.isreg()) for e in entries} == {
        (0o600, 0, 0, int(NOW), True)}
    assert manifest == {"format": "hearth-bundle", "version": 1, "name": "w1",
                        "role": "worker", "kinds": ["email.send", "img.resize"],
                        "addresses": list(bundle.addresses), "issued_at": NOW,
                        "ca_fingerprint": bundle.ca_fingerprint}


def read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None
    return member.read()


def test_write_and_read_a_file(tmp_path: Path, bundle: Bundle) -> None:
    path = write_bundle(tmp_path / "w1.hearth", bundle)
    assert path == tmp_path / "w1.hearth"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_bundle(str(path), now=NOW) == bundle
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(path, bundle)
    moved = bundle.with_addresses(["other.example:9000"])
    write_bundle(path, moved, overwrite=True)
    assert read_bundle(path, now=NOW).addresses == ("other.example:9000",)
    assert [p.name for p in tmp_path.iterdir()] == ["w1.hearth"]  # no temporary files left


def test_repr_shows_no_key_nor_certificate(bundle: Bundle) -> None:
    shown = repr(bundle)
    assert "w1" in shown and "PRIVATE" not in shown and "CERTIFICATE" not in shown
    assert bundle.key_pem.decode().splitlines()[1] not in shown


def test_ssl_context_is_a_tls13_client(bundle: Bundle) -> None:
    ctx = bundle.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert (ctx.minimum_version, ctx.check_hostname, ctx.verify_mode) == (
        ssl.TLSVersion.TLSv1_3, True, ssl.CERT_REQUIRED)


def test_make_bundle_refuses_what_this_ca_did_not_issue(ca: CertificateAuthority,
                                                        other_ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="foreign"):
        make_bundle(ca, other_ca.issue_client("w1", "worker", now=NOW), now=NOW)
    with pytest.raises(PkiError, match="not a Hearth client certificate"):
        make_bundle(ca, ca.issue_server(hosts=["localhost"], ips=[], now=NOW), now=NOW)
    with pytest.raises(BundleError, match="address"):
        make_bundle(ca, ca.issue_client("w1", "worker", now=NOW), addresses=["nope"], now=NOW)


@pytest.mark.parametrize(("text", "ok"), [
    ("localhost:1", True), ("10.0.0.1:8443", True), ("[::1]:65535", True),
    ("[fd00::5]:443", True), ("coord.example.org:80", True),
    ("localhost", False), ("localhost:0", False), ("localhost:65536", False),
    ("::1:80", False), ("[not-v6]:80", False), (":80", False), ("host:", False),
    ("bad host:80", False), ("host:\uff18\uff10", False), ("host:-1", False), ("a/b:80", False),
])
def test_check_address(text: str, ok: bool) -> None:
    if ok:
        assert check_address(text) == text
    else:
        with pytest.raises(BundleError, match="host:port"):
            check_address(text)


# -- bad input: one sentence each, naming the source, never the key --------------------


def unpack(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {name: read_member(tar, name) for name in MEMBERS}


def pack(members: list[tuple[str, bytes]],
         special: Callable[[tarfile.TarFile], None] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            entry = tarfile.TarInfo(name)
            entry.size = len(content)
            tar.addfile(entry, io.BytesIO(content))
        if special is not None:
            special(tar)
    return gzip.compress(out.getvalue())


def altered(good: bytes, *, drop: str = "", add: Sequence[tuple[str, bytes]] = (),
            manifest: dict[str, Any] | None = None, **files: bytes) -> bytes:
    """The good bundle with a member dropped, members added or replaced (``client_key=``
    replaces ``client.key``), or manifest fields changed."""
    members = unpack(good)
    if manifest is not None:
        doc = json.loads(members["manifest.json"])
        doc.update(manifest)
        members["manifest.json"] = json.dumps(doc).encode()
    members.update({name.replace("_", "."): content for name, content in files.items()})
    return pack([(n, c) for n, c in members.items() if n != drop] + list(add))


def link(kind: bytes, name: str) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        entry = tarfile.TarInfo(name)
        entry.type = kind
        entry.linkname = "/etc/passwd"
        tar.addfile(entry)
    return add


def case(make: Callable[..., bytes], words: str, **kw: Any) -> Any:
    return pytest.param(make, words, kw, id=words.split("(")[0][:40])


OTHER = CertificateAuthority.create("Other CA", now=NOW)
FOREIGN = OTHER.issue_client("w1", "worker", kinds=["img.resize", "email.send"], now=NOW)


BAD = [
    case(lambda g: b"", "is empty"),
    case(lambda g: b"hello, I am not a bundle", r"is not a Hearth bundle \(not a gzip archive\)"),
    case(lambda g: g[: len(g) // 2], "is truncated"),
    case(lambda g: g[:-4], "is truncated"),
    case(lambda g: g[:12], "is truncated"),
    case(lambda g: g[:-8] + bytes(b ^ 0x55 for b in g[-8:-4]) + g[-4:], "is damaged"),  # CRC
    case(lambda g: b"\x1f\x8b" + bytes(MAX_BUNDLE), "is larger than 64 KiB"),
    case(lambda g: gzip.compress(bytes(8 * 1024 * 1024)), "unpacks to more than"),
    case(lambda g: g + gzip.compress(b"more"), "has data after its archive"),
    case(lambda g: gzip.compress(b"plain text, not a tar"), "truncated or damaged"),
    case(lambda g: altered(g, drop="client.key"), "is missing client.key"),
    case(lambda g: altered(g, add=[("notes.txt", b"x")]), "unexpected file 'notes.txt'"),
    case(lambda g: altered(g, add=[("ca.crt", b"x")]), "contains ca.crt twice"),
    case(lambda g: altered(g, add=[("../client.key", b"x")]), "unsafe path '../client.key'"),
    case(lambda g: altered(g, add=[("/etc/cron.d/x", b"x")]), "unsafe path '/etc/cron.d/x'"),
    case(lambda g: pack(list(unpack(g).items()), link(tarfile.SYMTYPE, "client.key")),
         "contains a link"),
    case(lambda g: pack(list(unpack(g).items()), link(tarfile.LNKTYPE, "x")), "contains a link"),
    case(lambda g: pack(list(unpack(g).items()), link(tarfile.DIRTYPE, "d")),
         "contains a special file"),
    case(lambda g: altered(g, manifest_json=b"{not json"), "manifest.json that is not valid JSON"),
    case(lambda g: altered(g, manifest_json=b"[1, 2]"), "is not a Hearth bundle"),
    case(lambda g: altered(g, manifest={"format": "zip"}), "is not a Hearth bundle"),
    case(lambda g: altered(g, manifest={"version": 2}),
         r"was made by a newer Hearth \(bundle format 2\); upgrade"),
    case(lambda g: altered(g, manifest={"version": "1"}), "no valid bundle format version"),
    case(lambda g: altered(g, manifest={"name": None}), "without a valid 'name'"),
    case(lambda g: altered(g, manifest={"kinds": "email"}), "without a valid 'kinds'"),
    case(lambda g: altered(g, manifest={"issued_at": True}), "without a valid 'issued_at'"),
    case(lambda g: altered(g, ca_crt=b"-----BEGIN CERTIFICATE-----\nAA==\n"),
         "ca.crt is not a valid PEM or DER certificate"),
    case(lambda g: altered(g, client_crt=b"junk"), "client.crt is not a valid PEM"),
    case(lambda g: altered(g, client_key=b"-----BEGIN PRIVATE KEY-----\nAA==\n"),
         "client.key is not an unencrypted PEM private key"),
    case(lambda g: altered(g, client_key=FOREIGN.key_pem), "client.key does not match"),
    case(lambda g: altered(g, client_crt=FOREIGN.cert_pem, client_key=FOREIGN.key_pem),
         "its own CA did not issue \\(it is foreign\\)"),
    case(lambda g: altered(g, ca_crt=OTHER.cert_pem), "manifest names another CA"),
    case(lambda g: altered(g, manifest={"name": "mallory"}), "manifest says name 'mallory'"),
    case(lambda g: altered(g, manifest={"role": "admin"}), "manifest says role 'admin'"),
    case(lambda g: altered(g, manifest={"kinds": []}), "other job kinds"),
    case(lambda g: altered(g, manifest={"addresses": ["10.0.0.5"]}),
         "bad coordinator address '10.0.0.5'"),
    case(lambda g: g, r"expired on 2024-02-12 22:13 UTC; ask the coordinator's admin for a new "
         "one: hearth enroll w1", now=NOW + 91 * DAY),
    case(lambda g: g, "is not valid until", now=NOW - DAY),
]


@pytest.mark.parametrize(("make", "words", "kw"), BAD)
def test_bad_bundles_are_explained(good: bytes, bundle: Bundle, make: Callable[[bytes], bytes],
                                   words: str, kw: dict[str, Any]) -> None:
    data = make(good)
    with pytest.raises(BundleError, match=words) as caught:
        loads(data, source=SOURCE, **{"now": NOW, **kw})
    message = caught.value.message
    assert message.startswith(SOURCE) or f" {SOURCE}" in message, message
    assert "PRIVATE KEY" not in message and "Traceback" not in message
    assert bundle.key_pem.decode().splitlines()[1][:20] not in message
    assert "\n" not in message


def test_expiry_check_can_be_skipped(good: bytes, bundle: Bundle) -> None:
    assert loads(good, now=NOW + 365 * DAY, check_expiry=False) == bundle


def test_read_bundle_names_the_path(tmp_path: Path, good: bytes) -> None:
    missing = tmp_path / "nope.hearth"
    with pytest.raises(BundleError, match="does not exist") as caught:
        read_bundle(missing)
    assert str(missing) in caught.value.message
    with pytest.raises(BundleError, match="is a directory"):
        read_bundle(tmp_path)
    damaged = tmp_path / "w1.hearth"
    damaged.write_bytes(good[:300])
    with pytest.raises(BundleError, match="is truncated") as caught:
        read_bundle(damaged, now=NOW)
    assert caught.value.message.startswith(f"bundle {damaged} is truncated")
    huge = tmp_path / "huge.hearth"
    huge.write_bytes(b"\x1f\x8b" + bytes(10 * MAX_BUNDLE))
    with pytest.raises(BundleError, match="larger than"):
        read_bundle(huge)
