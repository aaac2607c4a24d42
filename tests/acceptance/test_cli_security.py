"""The security commands as users run them: ``hearth ca``, ``enroll``, ``token``,
``whoami`` and ``worker BUNDLE``, each with its exit code and sentence."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.security.bundle import read_bundle
from helpers import CliCoordinator, hearth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCoordinator]:
    """A loopback coordinator (plain HTTP; the CLI uses <data>/admin.token)."""
    with CliCoordinator(tmp_path_factory.mktemp("cli-sec") / "data") as coordinator:
        yield coordinator


def test_ca_init_creates_a_ca_once(tmp_path: Path) -> None:
    where = tmp_path / "ca"
    done = hearth("ca", "init", "--dir", str(where), "--name", "Home CA")
    assert done.returncode == 0, done.stderr
    assert "fingerprint (SHA-256):" in done.stdout
    assert oct((where / "ca.key").stat().st_mode & 0o777) == "0o600"
    key = (where / "ca.key").read_bytes()
    again = hearth("ca", "init", "--dir", str(where))
    assert again.returncode == 1
    assert again.stderr.startswith("error: a CA already exists in")
    assert (where / "ca.key").read_bytes() == key
    # A coordinator told to use it issues from it.
    fingerprint = done.stdout.rsplit(":", 1)[1].strip()
    with CliCoordinator(tmp_path / "data", extra=("--ca", str(where), "--host", "0.0.0.0",
                                                  "--no-mdns")) as coordinator:
        admin = read_bundle(coordinator.data / "admin.hearth")
        assert admin.ca_fingerprint == fingerprint
        assert not (coordinator.data / "ca").exists()


def test_tokens_are_shown_once_and_revocable(local: CliCoordinator) -> None:
    data = local.data
    made = hearth("token", "create", "ci-bot", "--role", "operator", "--namespace", "builds",
                  "--expires", "30d", data=data)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("hth_") and "shown only this once" in made.stderr
    assert token not in made.stderr
    me = hearth("whoami", "-o", "json", env={"HEARTH_TOKEN": token}, url=local.url)
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["role"] == "operator"
    assert json.loads(me.stdout)["namespaces"] == ["builds"]
    listed = hearth("token", "list", data=data)
    assert "ci-bot" in listed.stdout and token not in listed.stdout
    outside = hearth("submit", "--kind", "echo", "--payload", "x", env={"HEARTH_TOKEN": token},
                     url=local.url)
    assert outside.returncode == 1
    assert "limited to namespace builds, not 'default'" in outside.stderr
    twice = hearth("token", "create", "ci-bot", "--role", "viewer", data=data)
    assert twice.returncode == 1 and "ci-bot" in twice.stderr
    gone = hearth("token", "revoke", "ci-bot", data=data)
    assert gone.returncode == 0 and "revoked token" in gone.stdout
    refused = hearth("whoami", env={"HEARTH_TOKEN": token}, url=local.url)
    assert refused.returncode == 1
    assert "was revoked" in refused.stderr and token not in refused.stderr


def test_bad_token_role_and_duration_are_usage_errors(local: CliCoordinator) -> None:
    bad = hearth("token", "create", "x", "--role", "root", data=local.data)
    assert bad.returncode == 2 and "root" in bad.stderr
    bad = hearth("token", "create", "x", "--role", "viewer", "--expires", "soon",
                 data=local.data)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_enroll_on_a_loopback_coordinator_says_what_to_do(local: CliCoordinator,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "pi.hearth"
    done = hearth("enroll", "pi", "--out", str(out), "--kinds", "echo,sleep",
                  data=local.data)
    assert done.returncode == 0, done.stderr
    assert "kinds echo, sleep" in done.stdout
    assert "listens on loopback only" in done.stderr
    before = out.read_bytes()
    again = hearth("enroll", "pi", "--out", str(out), data=local.data)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert out.read_bytes() == before
    bad = hearth("enroll", "pi", "--addr", "nowhere", "--out", str(tmp_path / "x"),
                 data=local.data)
    assert bad.returncode == 1 and "host:port" in bad.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("content", "says"), [
    (b"", "empty"),
    (b"not a bundle at all", "not a gzip archive"),
    (gzip.compress(b"\x00" * 2048)[:30], "truncated"),
])
def test_a_worker_with_a_malformed_bundle_says_why(tmp_path: Path, content: bytes,
                                                  says: str) -> None:
    path = tmp_path / "broken.hearth"
    path.write_bytes(content)
    done = hearth("worker", str(path), "--import", "hearth.builtins")
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_coordinator_refuses_plain_http_on_a_lan_address(tmp_path: Path) -> None:
    done = hearth("coordinator", "--host", "0.0.0.0", "--no-tls", "--data",
                  str(tmp_path))
    assert done.returncode == 2
    assert "without TLS" in done.stderr
    assert not (tmp_path / "ca").exists()


def test_the_first_start_makes_the_ca_server_certificate_and_admin_bundle(
        local: CliCoordinator) -> None:
    data = local.data
    modes = {path: oct(path.stat().st_mode & 0o777) for path in (
        data / "ca", data / "ca" / "ca.key", data / "ca" / "server.key",
        data / "admin.hearth", data / "admin.token")}
    assert modes == {data / "ca": "0o700", data / "ca" / "ca.key": "0o600",
                     data / "ca" / "server.key": "0o600", data / "admin.hearth": "0o600",
                     data / "admin.token": "0o600"}
    from hearth.security.pki import CertificateAuthority
    from hearth.security.tls import local_names

    ca = CertificateAuthority.load(data / "ca")
    server = ca.verify((data / "ca" / "server.crt").read_bytes())
    assert server.name  # issued by this CA and valid now
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((data / "ca" / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    addrs = {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    hosts, ips = local_names()
    assert {"localhost", *hosts} <= names and any(n.endswith(".local") for n in names)
    assert {"127.0.0.1", *ips} <= addrs
    admin = read_bundle(data / "admin.hearth")
    assert (admin.name, admin.role, admin.ca_fingerprint) == ("admin", "admin",
                                                              ca.fingerprint)
