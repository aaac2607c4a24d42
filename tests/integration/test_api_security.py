"""Roles, namespace scopes and API tokens over real HTTP, on SQLite and PostgreSQL.

A loopback coordinator (``serve_in_thread``: plain HTTP, tokens only) with its admin
token creates a token of each role through :class:`hearth.client.Client`; each token is
then used with raw httpx so every refusal can be checked for its status, its sentence
and that it changed nothing (the admin's view of jobs, blobs and tokens is compared
before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.client import Client
from hearth.coordinator import Settings, serve_in_thread
from hearth.security import tokens
from helpers import eventually


class Coordinator:
    """A running coordinator, its admin client, and raw HTTP clients per token."""

    def __init__(self, url: str, data: Path, stack: contextlib.ExitStack) -> None:
        self.url = url
        self.data = data
        self.token = (data / "admin.token").read_text().strip()
        self._stack = stack
        self.admin = self.client(self.token)
        self.http = self.raw(self.token)

    def client(self, token: str) -> Client:
        client = Client(self.url, token=token)
        self._stack.callback(client.close)
        return client

    def raw(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        http = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self._stack.callback(http.close)
        return http

    def token_for(self, name: str, role: str, namespaces: tuple[str, ...] = (),
                  expires_in: float | None = None) -> tuple[httpx.Client, str, str]:
        """(raw client, token value, token id) of a new token."""
        created = self.admin.create_token(name, role=role, namespaces=namespaces,
                                          expires_in=expires_in)
        return self.raw(created.token), created.token, created.id

    # -- what the admin sees: compared before and after every refusal ------------------

    def jobs(self) -> list[dict[str, Any]]:
        r = self.http.get("/v1/jobs", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["jobs"])

    def tokens(self) -> list[dict[str, Any]]:
        r = self.http.get("/v1/tokens")
        assert r.status_code == 200, r.text
        return list(r.json()["tokens"])

    def certificates(self) -> list[dict[str, Any]]:
        r = self.http.get("/v1/certificates")
        assert r.status_code == 200, r.text
        return list(r.json()["certificates"])

    def snapshot(self) -> tuple[Any, ...]:
        return self.jobs(), self.tokens(), self.certificates()

    def submit(self, namespace: str = "default", kind: str = "test.echo", **job: Any
               ) -> dict[str, Any]:
        r = self.http.post("/v1/jobs", json={"kind": kind, "namespace": namespace, **job})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def dead_job(self, namespace: str = "default") -> dict[str, Any]:
        """A job that failed its only attempt (so it may be retried)."""
        job = self.submit(namespace, kind="test.dies", max_attempts=1)
        r = self.http.post("/v1/leases", json={"worker": "w1", "kinds": ["test.dies"],
                                               "max_jobs": 1})
        [lease] = r.json()["leases"]
        r = self.http.post("/v1/leases/finish", json={"worker": "w1", "items": [
            {"job_id": job["id"], "token": lease["token"], "outcome": "failed",
             "error": {"message": "no"}}]})
        assert r.json()["items"][0]["state"] == "dead", r.text
        return job


def refused(http: httpx.Client, method: str, path: str, status: int, *phrases: str,
            **kwargs: Any) -> str:
    """Make the request; assert the status, the error code and a sentence with
    ``phrases``; return the sentence."""
    r = http.request(method, path, **kwargs)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    body = r.json()
    assert body["code"] == {401: "unauthorized", 403: "forbidden", 422: "invalid"}[status]
    message = str(body["error"])
    assert len(message.split()) >= 5, message  # a sentence, not a bare code
    for phrase in phrases:
        assert phrase in message, message
    return message


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def coordinator_on(data: Path, store_url: str) -> Iterator[Coordinator]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_in_thread(
            Settings(data_dir=data, port=0, store_url=store_url)))
        yield Coordinator(url, data, stack)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEARTH_URL", "HEARTH_TOKEN", "HEARTH_BUNDLE", "HEARTH_DATA"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def coord(store_url: str, tmp_path: Path, clean_env: None) -> Iterator[Coordinator]:
    with coordinator_on(tmp_path / "data", store_url) as running:
        yield running


# -- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_viewers_and_approvers_read_but_change_nothing(coord: Coordinator, role: str) -> None:
    queued = coord.submit()
    dead = coord.dead_job()
    blob = coord.admin.put_blob(b"shared bytes")
    http, value, _ = coord.token_for(f"{role}-1", role)

    assert http.get("/v1/jobs").status_code == 200
    assert http.get(f"/v1/jobs/{queued['id']}").json()["state"] == "queued"
    assert http.get(f"/v1/jobs/{queued['id']}/events").status_code == 200
    assert http.get("/v1/events").json()["events"]
    assert http.get(f"/v1/blobs/{blob.digest}").content == b"shared bytes"
    assert http.head(f"/v1/blobs/{blob.digest}").status_code == 200
    assert http.get("/v1/nodes").status_code == 200
    assert http.get("/v1/whoami").json()["role"] == role

    before = coord.snapshot()
    who = f"{role} '{role}-1' may not do this"
    refused(http, "POST", "/v1/jobs", 403, who, "jobs.submit permission",
            json={"kind": "test.echo"})
    refused(http, "POST", "/v1/jobs/batch", 403, who, "jobs.submit",
            json={"jobs": [{"kind": "test.echo"}]})
    refused(http, "POST", f"/v1/jobs/{queued['id']}/cancel", 403, who, "jobs.control")
    refused(http, "POST", f"/v1/jobs/{dead['id']}/retry", 403, who, "jobs.control")
    mine = b"bytes of the " + role.encode()
    refused(http, "POST", "/v1/blobs", 403, who, "blobs.write", content=mine)
    refused(http, "PUT", f"/v1/blobs/{sha256(mine)}", 403, who, "blobs.write", content=mine)
    refused(http, "POST", "/v1/leases", 403, who, "work permission",
            json={"worker": f"{role}-1", "kinds": ["test.echo"], "max_jobs": 1})
    refused(http, "POST", "/v1/tokens", 403, who, "administer",
            json={"name": "escalate", "role": "admin"})
    assert coord.snapshot() == before
    assert coord.http.head(f"/v1/blobs/{sha256(mine)}").status_code == 404
    assert value not in str(before)


def test_an_operator_controls_jobs_but_not_security(coord: Coordinator) -> None:
    dead = coord.dead_job()
    _, _, viewer_id = coord.token_for("viewer-1", "viewer")
    http, _, _ = coord.token_for("ops-1", "operator")

    r = http.post("/v1/jobs", json={"kind": "test.echo"})
    assert r.status_code == 201, r.text
    mine = r.json()
    r = http.post(f"/v1/jobs/{mine['id']}/cancel")
    assert (r.status_code, r.json()["state"]) == (200, "cancelled")
    r = http.post(f"/v1/jobs/{dead['id']}/retry")
    assert (r.status_code, r.json()["state"]) == (200, "queued")
    r = http.post("/v1/blobs", content=b"operator bytes")
    assert (r.status_code, r.json()["digest"]) == (200, sha256(b"operator bytes"))

    before = coord.snapshot()
    who = "operator 'ops-1' may not do this (it needs the administer permission)"
    refused(http, "POST", "/v1/tokens", 403, who, json={"name": "more", "role": "admin"})
    refused(http, "GET", "/v1/tokens", 403, who)
    refused(http, "DELETE", f"/v1/tokens/{viewer_id}", 403, who)
    refused(http, "POST", "/v1/enrollments", 403, who, json={"name": "w9"})
    refused(http, "GET", "/v1/certificates", 403, who)
    refused(http, "POST", "/v1/certificates/revoke", 403, who, json={"name": "admin"})
    refused(http, "POST", "/v1/leases", 403, "needs the work permission",
            json={"worker": "ops-1", "kinds": ["test.echo"], "max_jobs": 1})
    assert coord.snapshot() == before
    assert not any(c["revoked_at"] for c in coord.certificates())


def test_a_token_cannot_be_made_for_the_worker_role(coord: Coordinator) -> None:
    before = coord.tokens()
    refused(coord.http, "POST", "/v1/tokens", 422, "is not a token role",
            json={"name": "w1", "role": "worker"})
    assert coord.tokens() == before


# -- namespaces ------------------------------------------------------------------------------


def first_event(http: httpx.Client, params: dict[str, str], submit: Any) -> dict[str, Any]:
    """Open a watch, run ``submit()`` once it is open, return the first event."""
    import json

    with http.stream("GET", "/v1/watch", params=params) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines) == ": watching"
        submit()
        for line in lines:
            if line.startswith("data: "):
                return dict(json.loads(line[len("data: "):]))
    raise AssertionError("the watch ended without an event")


def test_a_namespace_scoped_operator_stays_in_its_namespace(coord: Coordinator) -> None:
    other = coord.submit("default")
    other_b = coord.submit("team-b")
    http, _, _ = coord.token_for("alice", "operator", namespaces=("team-a",))

    r = http.post("/v1/jobs", json={"kind": "test.echo", "namespace": "team-a"})
    assert r.status_code == 201, r.text
    mine = r.json()
    assert http.get(f"/v1/jobs/{mine['id']}").status_code == 200

    before = coord.snapshot()
    scope = "'alice' is limited to namespace team-a, not 'default'"
    refused(http, "POST", "/v1/jobs", 403, scope, json={"kind": "test.echo"})
    refused(http, "POST", "/v1/jobs", 403, scope,
            json={"kind": "test.echo", "namespace": "default"})
    refused(http, "POST", "/v1/jobs/batch", 403, scope, json={"jobs": [
        {"kind": "test.echo", "namespace": "team-a"}, {"kind": "test.echo"}]})
    for method, suffix in (("GET", ""), ("GET", "/events"), ("GET", "/wait?timeout=0"),
                           ("POST", "/cancel"), ("POST", "/retry")):
        refused(http, method, f"/v1/jobs/{other['id']}{suffix}", 403, scope)
    refused(http, "POST", f"/v1/jobs/{other_b['id']}/cancel", 403, "not 'team-b'")
    refused(http, "GET", "/v1/jobs", 403, scope, params={"namespace": "default"})
    refused(http, "GET", "/v1/events", 403, scope, params={"namespace": "default"})
    refused(http, "GET", "/v1/watch", 403, scope, params={"namespace": "default"})
    refused(http, "GET", "/v1/watch", 403, scope, params={"job_id": other["id"]})
    assert coord.snapshot() == before

    # Listings without a namespace are limited to team-a on their own.
    assert [j["id"] for j in http.get("/v1/jobs").json()["jobs"]] == [mine["id"]]
    assert http.get("/v1/jobs", params={"namespace": "team-a"}).json()["jobs"] == \
        http.get("/v1/jobs").json()["jobs"]
    events = http.get("/v1/events").json()["events"]
    assert events and {e["namespace"] for e in events} == {"team-a"}
    assert {e["namespace"] for e in coord.http.get("/v1/events").json()["events"]} == {
        "default", "team-a", "team-b"}

    # A watch without a namespace skips the default job submitted first.
    def submit_both() -> None:
        coord.submit("default")
        coord.submit("team-a", kind="test.later")

    event = first_event(http, {}, submit_both)
    assert (event["namespace"], event["kind"]) == ("team-a", "test.later")


def test_a_token_scoped_to_two_namespaces_must_name_one_to_list(coord: Coordinator) -> None:
    coord.submit("team-a")
    coord.submit("team-b")
    http, _, _ = coord.token_for("bob", "viewer", namespaces=("team-a", "team-b"))
    refused(http, "GET", "/v1/jobs", 403, "limited to namespaces team-a, team-b: name one")
    refused(http, "GET", "/v1/events", 403, "name one")
    for namespace in ("team-a", "team-b"):
        jobs = http.get("/v1/jobs", params={"namespace": namespace}).json()["jobs"]
        assert [j["namespace"] for j in jobs] == [namespace]


# -- token lifecycle -------------------------------------------------------------------------


def test_a_revoked_token_is_refused_on_its_next_request(coord: Coordinator) -> None:
    http, value, token_id = coord.token_for("ops-1", "operator")
    by_name, _, by_name_id = coord.token_for("ops-2", "operator")
    assert http.get("/v1/jobs").status_code == 200
    assert by_name.get("/v1/jobs").status_code == 200

    revoked = coord.admin.revoke_token(token_id)
    assert revoked.id == token_id and revoked.revoked_at is not None
    message = refused(http, "POST", "/v1/jobs", 401, f"token {token_id} (ops-1) was revoked",
                      json={"kind": "test.echo"})
    assert value not in message
    assert coord.jobs() == []

    assert coord.admin.revoke_token("ops-2").id == by_name_id
    refused(by_name, "GET", "/v1/jobs", 401, f"token {by_name_id} (ops-2) was revoked")
    assert {t["id"]: t["revoked_at"] is not None for t in coord.tokens()} == {
        token_id: True, by_name_id: True}


def test_an_expired_token_is_refused(coord: Coordinator) -> None:
    http, _, token_id = coord.token_for("brief", "viewer", expires_in=0.5)
    assert http.get("/v1/jobs").status_code == 200
    eventually(lambda: http.get("/v1/jobs").status_code == 401, timeout=10,
               what="the token expiring")
    refused(http, "GET", "/v1/jobs", 401, f"token {token_id} (brief) has expired")


def test_no_answer_or_log_line_ever_contains_a_token_secret(
        coord: Coordinator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = {role: coord.admin.create_token(f"{role}-1", role=role)
               for role in tokens.TOKEN_ROLES}
    forbidden: list[str] = []
    for made in created.values():
        parsed = tokens.parse(made.token)
        assert parsed is not None and parsed[0] == made.id
        forbidden += [made.token, parsed[1], tokens.hash_secret(parsed[1])]

    listing = coord.http.get("/v1/tokens")
    revoked = coord.http.delete(f"/v1/tokens/{created['viewer'].id}")
    whoami = coord.raw(created["operator"].token).get("/v1/whoami")
    for r in (listing, revoked, whoami):
        assert r.status_code == 200, r.text
        assert not any(secret in r.text for secret in forbidden), r.text
    fields = {"id", "name", "role", "namespaces", "created_at", "expires_at", "revoked_at"}
    assert [set(t) for t in listing.json()["tokens"]] == [fields] * len(created)
    assert set(revoked.json()) == fields
    assert {t.id for t in coord.admin.tokens()} == {m.id for m in created.values()}
    assert whoami.json()["ident"] == created["operator"].id
    assert caplog.records  # the service logs its token changes...
    assert not any(secret in caplog.text for secret in forbidden)  # ...never a secret


def test_tokens_and_revocations_survive_a_restart(store_url: str, tmp_path: Path,
                                                   clean_env: None) -> None:
    data = tmp_path / "data"
    with coordinator_on(data, store_url) as first:
        _, kept, kept_id = first.token_for("keeper", "viewer")
        _, gone, gone_id = first.token_for("leaver", "operator", namespaces=("team-a",))
        first.admin.revoke_token(gone_id)
        listed = first.tokens()
        admin_token = first.token
    with coordinator_on(data, store_url) as second:
        assert second.token == admin_token
        assert second.tokens() == listed
        me = second.raw(kept).get("/v1/whoami").json()
        assert (me["name"], me["role"], me["ident"]) == ("keeper", "viewer", kept_id)
        refused(second.raw(gone), "GET", "/v1/jobs", 401, f"token {gone_id} (leaver) was "
                "revoked")


def test_no_credentials_or_an_unknown_token_are_refused(coord: Coordinator) -> None:
    before = coord.snapshot()
    refused(coord.raw(None), "POST", "/v1/jobs", 401, "this route needs credentials",
            json={"kind": "test.echo"})
    forged = f"hth_{'a' * 12}_{'b' * 43}"
    message = refused(coord.raw(forged), "POST", "/v1/jobs", 401,
                      "is not valid for this coordinator", json={"kind": "test.echo"})
    assert "b" * 43 not in message
    assert coord.snapshot() == before
