"""The HTTP API end to end: a real coordinator (uvicorn on a free port, real store) on
SQLite and PostgreSQL, spoken to with httpx."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.coordinator import Settings, serve_in_thread


class Api:
    def __init__(self, url: str, token: str, settings: Settings) -> None:
        self.url = url
        self.token = token
        self.settings = settings
        self.http = httpx.Client(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})

    def submit(self, **job: Any) -> dict[str, Any]:
        job.setdefault("kind", "test.echo")
        r = self.http.post("/v1/jobs", json=job)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def lease(self, kinds: list[str] | None = None, worker: str = "w1", **kw: Any
              ) -> list[dict[str, Any]]:
        body = {"worker": worker, "kinds": kinds or ["test.echo"], "max_jobs": 10, **kw}
        r = self.http.post("/v1/leases", json=body)
        assert r.status_code == 200, r.text
        return list(r.json()["leases"])

    def finish(self, lease: dict[str, Any], outcome: str = "succeeded", worker: str = "w1",
               **extra: Any) -> httpx.Response:
        item = {"job_id": lease["job"]["id"], "token": lease["token"], "outcome": outcome,
                **extra}
        return self.http.post("/v1/leases/finish", json={"worker": worker, "items": [item]})


Start = Callable[..., Api]


@pytest.fixture
def start(store_url: str, tmp_path: Path) -> Iterator[Start]:
    """Start a coordinator on the parametrised store; ``start(max_payload=...)``."""
    with contextlib.ExitStack() as stack:
        def launch(**overrides: Any) -> Api:
            settings = Settings(data_dir=tmp_path / "data", port=0, store_url=store_url,
                                **overrides)
            url = stack.enter_context(serve_in_thread(settings))
            token = (settings.data_dir / "admin.token").read_text().strip()
            api = Api(url, token, settings)
            stack.callback(api.http.close)
            return api
        yield launch


@pytest.fixture
def api(start: Start) -> Api:
    return start()


# -- auth, health, documents -----------------------------------------------------------


def test_v1_routes_need_the_admin_token(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as anonymous:
        r = anonymous.get("/v1/jobs")
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        assert "Bearer" in r.json()["error"]
        r = anonymous.get("/v1/jobs", headers={"Authorization": "Bearer wrong-token"})
        assert r.status_code == 401
        assert "wrong-token" not in r.text
        r = anonymous.post("/v1/leases", json={"worker": "w", "kinds": ["a"]},
                           headers={"Authorization": "Basic " + api.token})
        assert r.status_code == 401
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200


def test_healthz_names_the_backend(api: Api, store_url: str) -> None:
    body = httpx.get(api.url + "/healthz").json()
    assert body["status"] == "ok"
    assert body["store"] == ("sqlite" if store_url.startswith("sqlite") else "postgres")
    assert body["version"]


def test_openapi_lists_every_route(api: Api) -> None:
    doc = httpx.get(api.url + "/openapi.json").json()
    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    expected = {
        ("POST", "/v1/jobs"), ("POST", "/v1/jobs/batch"), ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/events"),
        ("GET", "/v1/jobs/{job_id}/wait"), ("POST", "/v1/jobs/{job_id}/cancel"),
        ("POST", "/v1/jobs/{job_id}/retry"), ("GET", "/v1/events"), ("GET", "/v1/watch"),
        ("POST", "/v1/nodes"), ("GET", "/v1/nodes"), ("POST", "/v1/leases"),
        ("POST", "/v1/leases/heartbeat"), ("POST", "/v1/leases/finish"),
        ("POST", "/v1/jobs/{job_id}/heartbeat"), ("POST", "/v1/jobs/{job_id}/finish"),
        ("POST", "/v1/blobs"), ("PUT", "/v1/blobs/{digest}"), ("GET", "/v1/blobs/{digest}"),
        ("HEAD", "/v1/blobs/{digest}"), ("GET", "/healthz"), ("GET", "/metrics"),
    }
    assert expected <= listed
    lease = doc["paths"]["/v1/leases"]["post"]
    assert "LeaseBatch" in str(lease["responses"]["200"])
    assert "LeaseRequest" in str(lease["requestBody"])


def test_unknown_route_is_a_json_404(api: Api) -> None:
    r = api.http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


# -- submitting ------------------------------------------------------------------------


def test_submit_get_and_payload_forms(api: Api) -> None:
    job = api.submit(payload={"n": 1}, labels={"team": "a"}, priority=5)
    assert job["created"] is True
    assert job["state"] == "queued"
    got = api.http.get(f"/v1/jobs/{job['id']}").json()
    assert got["payload"] == {"n": 1}
    assert got["payload_type"] == "json"
    assert got["labels"] == {"team": "a"}
    assert got["priority"] == 5
    raw = api.submit(payload_b64=base64.b64encode(b"\x00\x01raw").decode())
    assert base64.b64decode(raw["payload_b64"]) == b"\x00\x01raw"
    assert raw["payload_type"] == "bytes"
    assert api.http.get("/v1/jobs/j_doesnotexist").status_code == 404


def test_idempotency_key_returns_the_same_job(api: Api) -> None:
    first = api.submit(idempotency_key="order-42", payload=1)
    r = api.http.post("/v1/jobs", json={"kind": "test.echo", "idempotency_key": "order-42",
                                        "payload": 2})
    assert r.status_code == 200
    assert r.json()["created"] is False
    assert r.json()["id"] == first["id"]
    assert r.json()["payload"] == 1


def test_batch_submit_is_ordered_and_all_or_nothing(api: Api) -> None:
    r = api.http.post("/v1/jobs/batch", json={"jobs": [
        {"kind": "test.a", "payload": 0}, {"kind": "test.b", "payload": 1},
        {"kind": "test.a", "payload": 2, "idempotency_key": "k"}]})
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    assert [j["payload"] for j in jobs] == [0, 1, 2]
    assert all(j["created"] for j in jobs)
    r = api.http.post("/v1/jobs/batch", json={"jobs": [
        {"kind": "test.a"}, {"kind": "Bad Kind!"}]})
    assert r.status_code == 422
    assert "job 1 of the batch" in r.json()["error"]
    listed = api.http.get("/v1/jobs").json()["jobs"]
    assert len(listed) == 3


INVALID_SUBMISSIONS: list[tuple[dict[str, Any], str]] = [
    ({"kind": "Not A Kind"}, "kind"),
    ({"kind": "test.a", "payload": 1, "payload_b64": "AA=="}, "not both"),
    ({"kind": "test.a", "payload_b64": "***"}, "base64"),
    ({"kind": "test.a", "max_attempts": -1}, "max_attempts"),
    ({"kind": "test.a", "unknown_field": 1}, "unknown_field"),
    ({"payload": 1}, "'kind' is required"),
    ({"kind": "test.a", "input_blobs": [{"digest": "../../etc/passwd"}]}, "digest"),
]


def test_invalid_submissions_are_422_sentences(api: Api) -> None:
    for body, needle in INVALID_SUBMISSIONS:
        r = api.http.post("/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "invalid"
        assert needle in r.json()["error"], (body, r.text)
    assert api.http.get("/v1/jobs").json()["jobs"] == []


def test_malformed_json_is_422(api: Api) -> None:
    r = api.http.post("/v1/jobs", content=b'{"kind": ',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["error"]


def test_oversized_payload_is_413_and_nothing_is_stored(start: Start) -> None:
    api = start(max_payload=1000, max_request=20_000)
    r = api.http.post("/v1/jobs", json={"kind": "test.a", "payload": "x" * 2000})
    assert r.status_code == 413
    assert r.json()["code"] == "too_large"
    assert "1000 bytes" in r.json()["error"]
    r = api.http.post("/v1/jobs", json={"kind": "test.a", "payload": "x" * 30_000})
    assert r.status_code == 413
    assert "20000 bytes" in r.json()["error"]

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"kind": "test.a", "payload": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    r = api.http.post("/v1/jobs", content=streamed(),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert api.http.get("/v1/jobs").json()["jobs"] == []


def test_list_filters_and_cursor(api: Api) -> None:
    ids = [api.submit(kind="test.a" if i % 2 else "test.b", labels={"i": str(i)},
                      namespace="ns1" if i < 4 else "ns2")["id"] for i in range(7)]
    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.http.get("/v1/jobs", params=params).json()
        pages.extend(j["id"] for j in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == list(reversed(ids))  # newest first, each once
    kind_a = api.http.get("/v1/jobs", params={"kind": "test.a"}).json()["jobs"]
    assert {j["id"] for j in kind_a} == {ids[i] for i in (1, 3, 5)}
    both = api.http.get("/v1/jobs", params=[("kind", "test.a"), ("kind", "test.b")]).json()
    assert len(both["jobs"]) == 7
    labelled = api.http.get("/v1/jobs", params={"label": "i=3"}).json()["jobs"]
    assert [j["id"] for j in labelled] == [ids[3]]
    ns2 = api.http.get("/v1/jobs", params={"namespace": "ns2"}).json()["jobs"]
    assert {j["id"] for j in ns2} == set(ids[4:])
    queued = api.http.get("/v1/jobs", params={"state": "queued"}).json()["jobs"]
    assert len(queued) == 7
    assert api.http.get("/v1/jobs", params={"state": "leased"}).json()["jobs"] == []
    assert api.http.get("/v1/jobs", params={"state": "bogus"}).status_code == 422
    assert api.http.get("/v1/jobs", params={"label": "novalue"}).status_code == 422
    assert api.http.get("/v1/jobs", params={"limit": 0}).status_code == 422


# -- leasing and outcomes ----------------------------------------------------------------


def test_lease_finish_and_history(api: Api) -> None:
    job = api.submit(payload={"x": 1})
    [lease] = api.lease()
    assert lease["job"]["id"] == job["id"]
    assert lease["job"]["state"] == "leased"
    assert api.lease() == []
    r = api.finish(lease, result={"payload": {"answer": 42}})
    assert r.json()["items"][0]["status"] == 200
    assert r.json()["items"][0]["state"] == "succeeded"
    done = api.http.get(f"/v1/jobs/{job['id']}").json()
    assert done["result"]["payload"] == {"answer": 42}
    events = api.http.get(f"/v1/jobs/{job['id']}/events").json()["events"]
    assert [e["type"] for e in events] == ["submitted", "leased", "succeeded"]
    feed = api.http.get("/v1/events", params={"after": events[0]["seq"]}).json()["events"]
    assert [e["type"] for e in feed] == ["leased", "succeeded"]


def test_stale_tokens_are_409(api: Api) -> None:
    first = api.submit()
    second = api.submit()
    leases = {lease["job"]["id"]: lease for lease in api.lease()}
    good = leases[second["id"]]
    stale = {**leases[first["id"]], "token": "not-the-token"}
    jid = first["id"]
    r = api.http.post(f"/v1/jobs/{jid}/heartbeat", params={"worker": "w1"},
                      json={"job_id": jid, "token": "not-the-token"})
    assert r.status_code == 409
    assert r.json()["code"] == "stale_lease"
    r = api.http.post(f"/v1/jobs/{jid}/finish", params={"worker": "w1"},
                      json={"job_id": jid, "token": "not-the-token", "outcome": "succeeded"})
    assert r.status_code == 409
    r = api.http.post("/v1/leases/finish", json={"worker": "w1", "items": [
        {"job_id": jid, "token": stale["token"], "outcome": "succeeded"},
        {"job_id": good["job"]["id"], "token": good["token"], "outcome": "succeeded"},
        {"job_id": "j_missing", "token": "x", "outcome": "succeeded"}]})
    items = r.json()["items"]
    assert [i["status"] for i in items] == [409, 200, 404]
    assert items[0]["code"] == "stale_lease"
    r = api.http.post("/v1/leases/heartbeat", json={"worker": "w1", "items": [
        {"job_id": jid, "token": "nope"}, {"job_id": jid, "token": leases[jid]["token"]}]})
    assert [i["status"] for i in r.json()["items"]] == [409, 200]
    assert api.http.get(f"/v1/jobs/{jid}").json()["state"] == "leased"


def test_single_item_heartbeat_and_finish(api: Api) -> None:
    job = api.submit()
    [lease] = api.lease()
    jid = job["id"]
    r = api.http.post(f"/v1/jobs/{jid}/heartbeat", params={"worker": "w1"},
                      json={"job_id": jid, "token": lease["token"],
                            "progress": {"percent": 50, "message": "half"}})
    assert r.status_code == 200, r.text
    assert r.json()["lease_expires_at"] >= lease["job"]["lease_expires_at"]
    assert api.http.get(f"/v1/jobs/{jid}").json()["progress"]["percent"] == 50
    r = api.http.post(f"/v1/jobs/{jid}/finish", params={"worker": "w1"},
                      json={"job_id": "j_other", "token": lease["token"], "outcome": "failed"})
    assert r.status_code == 422
    r = api.http.post(f"/v1/jobs/{jid}/finish", params={"worker": "w1"},
                      json={"job_id": jid, "token": lease["token"], "outcome": "failed",
                            "error": {"message": "boom", "retryable": False}})
    assert r.status_code == 200
    assert r.json()["state"] == "dead"
    assert api.http.get(f"/v1/jobs/{jid}").json()["last_error"]["message"] == "boom"


def test_finish_result_is_checked_per_item(api: Api) -> None:
    api.submit()
    api.submit()
    a, b = api.lease()
    r = api.http.post("/v1/leases/finish", json={"worker": "w1", "items": [
        {"job_id": a["job"]["id"], "token": a["token"], "outcome": "succeeded",
         "result": {"payload": 1, "payload_b64": "AA=="}},
        {"job_id": b["job"]["id"], "token": b["token"], "outcome": "succeeded",
         "result": {"blobs": [{"digest": "0" * 64}]}}]})
    assert [i["status"] for i in r.json()["items"]] == [422, 404]
    assert api.http.get(f"/v1/jobs/{a['job']['id']}").json()["state"] == "leased"


def test_cancel_and_retry(api: Api) -> None:
    queued = api.submit()
    r = api.http.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.json()["state"] == "cancelled"
    r = api.http.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["code"] == "invalid_transition"

    running = api.submit(max_attempts=1)
    [lease] = api.lease()
    r = api.http.post(f"/v1/jobs/{running['id']}/cancel")
    assert r.json()["state"] == "leased"
    assert r.json()["cancel_requested"] is True
    r = api.http.post("/v1/leases/heartbeat", json={"worker": "w1", "items": [
        {"job_id": running["id"], "token": lease["token"]}]})
    assert r.json()["items"][0]["cancel_requested"] is True

    dying = api.submit(max_attempts=1, kind="test.dies")
    [lease] = api.lease(["test.dies"])
    assert api.finish(lease, "failed", error={"message": "no"}).json()["items"][0]["state"] \
        == "dead"
    r = api.http.post(f"/v1/jobs/{dying['id']}/retry")
    assert r.status_code == 200
    assert r.json()["state"] == "queued"
    assert r.json()["failures"] == 0
    assert api.http.post(f"/v1/jobs/{dying['id']}/retry").status_code == 409
    [again] = api.lease(["test.dies"])
    assert again["job"]["attempt"] == 2


def test_worker_nodes(api: Api) -> None:
    r = api.http.post("/v1/nodes", json={"name": "w1", "kinds": ["test.echo"],
                                         "concurrency": 4})
    assert r.status_code == 200, r.text
    api.submit()
    api.lease()
    nodes = api.http.get("/v1/nodes").json()["nodes"]
    assert [(n["name"], n["in_flight"], n["concurrency"]) for n in nodes] == [("w1", 1, 4)]
    r = api.http.post("/v1/nodes", json={"name": "../bad", "kinds": ["a"]})
    assert r.status_code == 422


def test_metrics_expose_queue_and_latency(api: Api) -> None:
    api.submit(namespace="ns-m")
    api.submit(namespace="ns-m")
    [lease, _] = api.lease()
    api.finish(lease)
    text = httpx.get(api.url + "/metrics").text
    assert 'hearth_jobs{kind="test.echo",namespace="ns-m",state="queued"} 0.0' not in text
    assert 'hearth_jobs{kind="test.echo",namespace="ns-m",state="succeeded"} 1.0' in text
    assert 'hearth_jobs{kind="test.echo",namespace="ns-m",state="leased"} 1.0' in text
    assert "hearth_lease_latency_seconds_count 2.0" in text
    assert 'hearth_jobs_finished_total{kind="test.echo",outcome="succeeded"} 1.0' in text
    assert 'hearth_http_requests_total{route="/v1/leases",status="200"}' in text


def test_long_poll_lease_answers_when_work_arrives(api: Api) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.lease, ["test.late"], wait=60)
        with contextlib.suppress(TimeoutError):
            waiting.result(timeout=0.3)  # it must still be waiting: nothing was due
        assert not waiting.done()
        job = api.submit(kind="test.late")
        leases = waiting.result(timeout=20)  # far less than the poll's 60 s wait
    assert [lease["job"]["id"] for lease in leases] == [job["id"]]


def test_a_waiting_poll_takes_a_delayed_job_when_due(api: Api) -> None:
    # Due in 2 s: the first look below comes well before that, even on a loaded machine.
    job = api.submit(kind="test.delayed", delay=2.0)
    assert api.lease(["test.delayed"]) == []
    leases = api.lease(["test.delayed"], wait=30)
    assert [lease["job"]["id"] for lease in leases] == [job["id"]]
    assert leases[0]["job"]["leased_at"] >= job["run_at"]


def test_long_poll_times_out_empty(api: Api) -> None:
    assert api.lease(["test.never"], wait=0.2) == []


@pytest.mark.postgres
def test_healthz_is_503_when_the_store_is_gone(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    settings = Settings(data_dir=tmp_path / "data", port=0, store_url=pg_url)
    with serve_in_thread(settings) as url:
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        name = pg_url.rsplit("/", 1)[1]
        admin = pg_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        r = httpx.get(url + "/healthz", timeout=30)
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable"
        assert r.json()["store"] == "postgres"
