"""Mutual TLS, roles and revocation against a real ``hearth coordinator --host 0.0.0.0``.

One coordinator process (a non-loopback listener, so TLS with required client
certificates) serves the module; bundles are made with the real ``hearth enroll``.
Every refusal is checked for its status (or TLS alert), its sentence, and that it
changed nothing. The last test greps every log line of the run for secrets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.client import Client
from hearth.client.http import ClientCert, HttpCore
from hearth.errors import (
    Forbidden,
    HearthError,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from hearth.security.bundle import make_bundle, read_bundle, write_bundle
from hearth.security.pki import CertificateAuthority, CertInfo, client_ssl_context
from hearth.wire import FinishIn
from helpers import CliCoordinator, WorkerProcess, eventually, hearth

pytestmark = pytest.mark.slow


class Lan:
    """What the tests share: the coordinator, its data dir, bundles made so far."""

    def __init__(self, coordinator: CliCoordinator, tmp: Path) -> None:
        self.coordinator = coordinator
        self.data = coordinator.data
        self.tmp = tmp
        self.url = coordinator.url
        self.port = coordinator.port
        self.secrets: list[str] = []

    def enroll(self, name: str, *args: str) -> Path:
        out = self.tmp / f"{name}.hearth"
        done = hearth("enroll", name, "--out", str(out), "--addr", f"127.0.0.1:{self.port}",
                      *args, data=self.data)
        assert done.returncode == 0, done.stderr
        self.remember_bundle(out)
        return out

    def remember_bundle(self, path: Path) -> None:
        bundle = read_bundle(path, check_expiry=False)
        # The key's base64 body lines: none may ever appear in a log.
        self.secrets += [line for line in bundle.key_pem.decode().splitlines()
                         if line and not line.startswith("-----")]

    def client(self, bundle: Path | None = None, token: str | None = None) -> Client:
        return Client(self.url, bundle=bundle or self.data / "admin.hearth", token=token,
                      timeout=10)

    def state(self) -> tuple[object, ...]:
        """Everything a refused request must leave as it was."""
        with self.client() as admin:
            jobs = [(j.id, j.state, j.attempt, j.worker) for j in admin.list_jobs().jobs]
            certs = [(c.serial, c.revoked_at) for c in admin.certificates()]
            tokens = [(t.id, t.revoked_at) for t in admin.tokens()]
            events = [e.seq for e in admin.feed(after=0)]
        blobs = sorted(p.name for p in (self.data / "blobs").rglob("*") if p.is_file())
        return jobs, certs, tokens, events, blobs


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    tmp = tmp_path_factory.mktemp("mtls")
    coordinator = CliCoordinator(tmp / "data", extra=("--host", "0.0.0.0", "--no-mdns",
                                                      "--log-level", "debug"))
    with coordinator:
        assert coordinator.url.startswith("https://127.0.0.1:")
        found = Lan(coordinator, tmp)
        found.secrets.append(coordinator.token)
        found.remember_bundle(found.data / "admin.hearth")
        yield found


def tls_refused(lan: Lan, context: object) -> None:
    """The coordinator ends the TLS connection without an HTTP answer: the handshake
    failed on its side (asyncio closes without flushing the alert)."""
    with pytest.raises(httpx.TransportError) as caught, \
            httpx.Client(verify=context, timeout=10) as raw:  # type: ignore[arg-type]
        raw.get(f"{lan.url}/v1/whoami")
    assert isinstance(caught.value, httpx.RemoteProtocolError | httpx.ReadError), caught.value


def mapped_refusal(lan: Lan, context: object, cert: ClientCert | None,
                   expected: type[HearthError]) -> str:
    """The sentence the Hearth client shows for the same refusal."""
    import asyncio

    async def call() -> None:
        core = HttpCore(lan.url, None, timeout=10, ssl_context=context,  # type: ignore[arg-type]
                        cert=cert)
        try:
            await core.request("GET", "/v1/whoami")
        finally:
            await core.aclose()

    with pytest.raises(expected) as caught:
        asyncio.run(call())
    return caught.value.message


def cert_of(info: CertInfo) -> ClientCert:
    return ClientCert(info.name, info.not_before, info.not_after)


def test_the_admin_bundle_and_an_enrolled_worker_authenticate(lan: Lan) -> None:
    assert oct((lan.data / "admin.hearth").stat().st_mode & 0o777) == "0o600"
    with lan.client() as admin:
        me = admin.whoami()
        assert (me.name, me.role, me.via) == ("admin", "admin", "cert")
    path = lan.enroll("w-ok", "--kinds", "echo")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert path.stat().st_size < 4096
    with lan.client(path) as worker:
        me = worker.whoami()
        assert (me.name, me.role, me.via, me.kinds) == ("w-ok", "worker", "cert", ["echo"])


def test_no_client_certificate_is_refused_at_the_handshake(lan: Lan) -> None:
    ca = (lan.data / "ca" / "ca.crt").read_bytes()
    import ssl

    context = ssl.create_default_context(cadata=ca.decode())
    before = lan.state()
    tls_refused(lan, context)
    assert "requires a client certificate" in mapped_refusal(lan, context, None, Unauthorized)
    # The Hearth client says what to do before it even connects.
    with pytest.raises(ValidationError, match="no bundle was found"):
        Client(lan.url, bundle=None, data=lan.tmp / "nowhere")
    assert lan.state() == before


def test_a_certificate_of_another_ca_is_refused(lan: Lan) -> None:
    ca = (lan.data / "ca" / "ca.crt").read_bytes()
    other = CertificateAuthority.create("Someone else's CA")
    issued = other.issue_client("admin", "admin")  # claims to be the admin
    context = client_ssl_context(ca, issued.cert_pem, issued.key_pem)
    before = lan.state()
    tls_refused(lan, context)
    said = mapped_refusal(lan, context, cert_of(issued.info), Unavailable)
    assert "does not accept the certificate of admin" in said
    assert "another Hearth coordinator" in said
    # A whole bundle of another coordinator: the client refuses the server instead.
    foreign = lan.tmp / "foreign.hearth"
    write_bundle(foreign, make_bundle(other, issued, addresses=[f"127.0.0.1:{lan.port}"]))
    with lan.client(foreign) as client, pytest.raises(Unauthorized,
                                                      match="another Hearth coordinator"):
        client.whoami()
    assert lan.state() == before


def test_an_expired_certificate_is_refused(lan: Lan) -> None:
    ca = CertificateAuthority.load(lan.data / "ca")
    issued = ca.issue_client("w-old", "worker", validity=60, now=time.time() - 3600)
    context = client_ssl_context(ca.cert_pem, issued.cert_pem, issued.key_pem)
    before = lan.state()
    tls_refused(lan, context)
    said = mapped_refusal(lan, context, cert_of(issued.info), Unauthorized)
    assert "refused the certificate of w-old: it expired on" in said
    assert lan.state() == before


def test_a_revoked_certificate_is_refused_on_its_next_request(lan: Lan) -> None:
    path = lan.enroll("w-revoked")
    with lan.client(path) as worker:
        worker.register_node(_node("w-revoked"))
        assert worker.whoami().name == "w-revoked"
        done = hearth("ca", "revoke", "w-revoked", data=lan.data)
        assert done.returncode == 0, done.stderr
        assert "revoked worker w-revoked" in done.stdout
        before = lan.state()
        # The same keep-alive connection: refused on the very next request.
        with pytest.raises(Unauthorized, match="has been revoked"):
            worker.whoami()
        with pytest.raises(Unauthorized, match="has been revoked"):
            worker.lease("w-revoked", ["echo"], 1)
    assert lan.state() == before
    nodes = hearth("nodes", "-o", "json", data=lan.data)
    assert '"revoked"' in nodes.stdout
    listed = hearth("nodes", data=lan.data)
    assert any("w-revoked" in line and "revoked" in line.split()[-1]
               for line in listed.stdout.splitlines())


def test_a_worker_certificate_cannot_use_admin_or_operator_routes(lan: Lan) -> None:
    path = lan.enroll("w-nosy")
    with lan.client() as admin:
        job = admin.submit("echo", payload="mine")
    before = lan.state()
    with lan.client(path) as worker:
        for attempt in (lambda: worker.enroll("sneaky"),
                        lambda: worker.revoke(name="w-ok"),
                        lambda: worker.create_token("sneaky", role="admin"),
                        lambda: worker.tokens(),
                        lambda: worker.certificates(),
                        lambda: worker.cancel(job.id),
                        lambda: worker.list_jobs(),
                        lambda: worker.get(job.id)):
            with pytest.raises(Forbidden, match="may not do this"):
                attempt()
        # Nor act as another worker.
        with pytest.raises(Forbidden, match="may not act as worker 'w-ok'"):
            worker.lease("w-ok", ["echo"], 1)
    assert lan.state() == before


def test_a_worker_cannot_complete_a_job_leased_to_another(lan: Lan) -> None:
    owner, thief = lan.enroll("w-owner"), lan.enroll("w-thief")
    with lan.client() as admin:
        job = admin.submit("steal-me", payload="x")
    with lan.client(owner) as mine, lan.client(thief) as other:
        [lease] = mine.lease("w-owner", ["steal-me"], 1)
        assert lease.job.id == job.id
        before = lan.state()
        finish = FinishIn(job_id=job.id, token=lease.token, outcome="succeeded")
        with pytest.raises(Forbidden, match="may not act as worker 'w-owner'"):
            other.finish("w-owner", [finish])
        [answer] = other.finish("w-thief", [finish])
        assert (answer.status, answer.code) == (403, "forbidden")
        assert "is leased to another worker, not w-thief" in (answer.error or "")
        assert lan.state() == before
        [ok] = mine.finish("w-owner", [finish])
        assert ok.status == 200


def test_a_viewer_token_cannot_cancel(lan: Lan) -> None:
    with lan.client() as admin:
        job = admin.submit("echo", payload="keep")
        created = admin.create_token("viewer-1", role="viewer")
    lan.secrets.append(created.token)
    lan.secrets.append(created.token.rsplit("_", 1)[-1])
    path = lan.enroll("w-viewer-device")
    before = lan.state()
    with lan.client(path, token=created.token) as viewer:
        assert viewer.whoami().role == "viewer"
        assert viewer.get(job.id).state == "queued"  # it may read
        with pytest.raises(Forbidden, match=r"needs the jobs\.control permission"):
            viewer.cancel(job.id)
    assert lan.state() == before
    listed = hearth("token", "list", data=lan.data)
    assert created.id in listed.stdout and created.token not in listed.stdout


def test_a_path_like_blob_digest_is_refused(lan: Lan) -> None:
    bundle = read_bundle(lan.data / "admin.hearth")
    before = lan.state()
    with httpx.Client(verify=bundle.ssl_context(), base_url=lan.url, timeout=10) as raw:
        for method in ("GET", "PUT", "HEAD"):
            answer = raw.request(method, "/v1/blobs/..%2F..%2Fetc%2Fpasswd", content=b"x")
            assert answer.status_code == 422, (method, answer.text)
            if method != "HEAD":
                assert "digest" in answer.json()["error"]
    assert lan.state() == before


def test_an_oversized_payload_is_refused(lan: Lan) -> None:
    before = lan.state()
    with lan.client() as admin, pytest.raises(PayloadTooLarge, match="bytes"):
        admin.submit("echo", payload="x" * (2 * 1024 * 1024))
    assert lan.state() == before


def test_no_secret_reaches_any_log(lan: Lan) -> None:
    """Run a worker from its bundle, then read every log line of the module's run."""
    path = lan.enroll("w-logged")
    worker = WorkerProcess(lan.tmp, "hearth.builtins", args=(str(path), "--log-level",
                                                              "debug"))
    with worker, lan.client() as admin:
        job = admin.submit("echo", payload="hello")
        assert admin.wait(job.id, timeout=30).state == "succeeded"
    logs = [lan.data / "coordinator.log", worker.log_path]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "registered" in text and "enrolled worker w-logged" in text
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    for secret in lan.secrets:
        assert secret not in text


def _node(name: str) -> object:
    from hearth.wire import NodeRegister

    return NodeRegister(name=name, kinds=["echo"], host="test", version="0", concurrency=1)


def test_after_a_restart_workers_return_and_tokens_and_revocations_persist(
        tmp_path: Path) -> None:
    coordinator = CliCoordinator(tmp_path / "data", extra=("--host", "0.0.0.0",
                                                           "--no-mdns"))
    with coordinator:
        site = Lan(coordinator, tmp_path)
        back, gone = site.enroll("w-back"), site.enroll("w-gone")
        assert hearth("ca", "revoke", "w-gone", data=site.data).returncode == 0
        with site.client() as admin:
            created = admin.create_token("ops", role="operator")
        worker = WorkerProcess(tmp_path, "hearth.builtins", args=(str(back),))
        with worker:
            def registrations() -> int:
                return worker.log_tail(200).count("worker w-back registered for")

            eventually(lambda: registrations() == 1, timeout=30, what="the registration")
            coordinator.restart()  # same port, same data dir
            restarted = time.monotonic()
            eventually(lambda: registrations() == 2, timeout=10,
                       what="the worker registering again by itself")
            print(f"re-registered {time.monotonic() - restarted:.2f} s after the restart")
            with site.client() as admin:
                job = admin.submit("echo", payload="after")
                assert admin.wait(job.id, timeout=30).state == "succeeded"
                assert admin.get(job.id).worker == "w-back"
        with site.client(token=created.token) as ops:
            assert (ops.whoami().name, ops.whoami().role) == ("ops", "operator")
        with site.client(gone) as revoked, pytest.raises(Unauthorized, match="revoked"):
            revoked.whoami()
        listed = hearth("nodes", data=site.data)
        assert "w-back" in listed.stdout
