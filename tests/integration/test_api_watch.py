"""Watching and waiting over HTTP: SSE, job wait, the lease reaper and a clean shutdown
with polls still waiting. A real coordinator on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hearth.coordinator import Settings, build_app, serve_in_thread


class Coordinator:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        token = (settings.data_dir / "admin.token").read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, timeout=30, headers=self.headers)

    def submit(self, **job: Any) -> dict[str, Any]:
        job.setdefault("kind", "test.watch")
        r = self.http.post("/v1/jobs", json=job)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def lease(self, kind: str = "test.watch", wait: float = 0.0) -> list[dict[str, Any]]:
        r = self.http.post("/v1/leases", json={"worker": "w1", "kinds": [kind],
                                               "max_jobs": 10, "wait": wait})
        assert r.status_code == 200, r.text
        return list(r.json()["leases"])

    def finish(self, lease: dict[str, Any], outcome: str = "succeeded") -> None:
        r = self.http.post("/v1/leases/finish", json={"worker": "w1", "items": [
            {"job_id": lease["job"]["id"], "token": lease["token"], "outcome": outcome}]})
        assert r.json()["items"][0]["status"] == 200, r.text


def sse_events(lines: Iterator[str], until: Callable[[list[dict[str, Any]]], bool]
               ) -> list[dict[str, Any]]:
    """Parse SSE frames from ``lines`` until ``until(events)`` holds."""
    events: list[dict[str, Any]] = []
    frame: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in frame:
                assert frame["event"] == "job"
                event = orjson.loads(frame["data"])
                assert int(frame["id"]) == event["seq"]
                events.append(event)
                if until(events):
                    return events
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {events}")


def types_for(job_id: str, events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events if e["job_id"] == job_id]


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=0, store_url=store_url)


@pytest.fixture
def coord(settings: Settings) -> Iterator[Coordinator]:
    with serve_in_thread(settings) as url:
        c = Coordinator(url, settings)
        try:
            yield c
        finally:
            c.http.close()


def test_sse_watch_streams_a_jobs_life_and_resumes(coord: Coordinator) -> None:
    with coord.http.stream("GET", "/v1/watch") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": watching"
        job = coord.submit(payload={"w": 1})
        [lease] = coord.lease()
        coord.finish(lease)
        seen = sse_events(lines, lambda ev: "succeeded" in types_for(job["id"], ev))
    assert types_for(job["id"], seen) == ["submitted", "leased", "succeeded"]
    submitted = seen[0]
    assert submitted["kind"] == "test.watch"
    assert submitted["state"] == "queued"

    headers = {"Last-Event-ID": str(submitted["seq"])}
    with coord.http.stream("GET", "/v1/watch", params={"job_id": job["id"]},
                           headers=headers) as stream:
        resumed = sse_events(stream.iter_lines(), lambda ev: len(ev) == 2)
    assert [e["type"] for e in resumed] == ["leased", "succeeded"]


def test_sse_watch_filters_by_kind_and_namespace(coord: Coordinator) -> None:
    with coord.http.stream("GET", "/v1/watch", params={"kind": "test.b",
                                                       "namespace": "ns1"}) as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": watching"
        coord.submit(kind="test.a", namespace="ns1")
        coord.submit(kind="test.b", namespace="ns2")
        wanted = coord.submit(kind="test.b", namespace="ns1")
        seen = sse_events(lines, lambda ev: len(ev) >= 1)
    assert [(e["job_id"], e["type"]) for e in seen] == [(wanted["id"], "submitted")]


def test_sse_watch_of_unknown_job_is_404(coord: Coordinator) -> None:
    r = coord.http.get("/v1/watch", params={"job_id": "j_nope"})
    assert r.status_code == 404
    r = coord.http.get("/v1/watch", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422


def test_sse_keepalive_comments(settings: Settings) -> None:
    app = build_app(settings)
    app.state.hearth.sse_keepalive = 0.2
    with serve_in_thread(settings, app) as url:
        coord = Coordinator(url, settings)
        with coord.http, coord.http.stream("GET", "/v1/watch") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": watching"
            assert next(line for line in lines if line) == ": keepalive"


def test_wait_answers_when_the_job_finishes(coord: Coordinator) -> None:
    job = coord.submit()
    r = coord.http.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 0})
    assert r.json()["state"] == "queued"
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(coord.http.get, f"/v1/jobs/{job['id']}/wait",
                              params={"timeout": 60})
        [lease] = coord.lease()
        assert not waiting.done()
        coord.finish(lease)
        r = waiting.result(timeout=20)
    assert r.json()["state"] == "succeeded"
    assert coord.http.get("/v1/jobs/j_nope/wait").status_code == 404
    assert coord.http.get(f"/v1/jobs/{job['id']}/wait",
                          params={"timeout": 61}).status_code == 422


def test_expired_lease_is_reaped_with_backoff(coord: Coordinator) -> None:
    job = coord.submit(lease_ttl=1, backoff={"initial": 0.2, "max": 1, "jitter": 0})
    [lease] = coord.lease()
    with coord.http.stream("GET", "/v1/watch", params={"job_id": job["id"]}) as stream:
        seen = sse_events(stream.iter_lines(),
                          lambda ev: "expired" in types_for(job["id"], ev))
    expired = seen[-1]
    assert expired["state"] == "failed"
    assert expired["data"]["retry_at"] > expired["at"]
    now = coord.http.get(f"/v1/jobs/{job['id']}").json()
    assert now["failures"] == 1
    assert now["last_error"]["type"] == "LeaseExpired"
    r = coord.http.post("/v1/leases/finish", json={"worker": "w1", "items": [
        {"job_id": job["id"], "token": lease["token"], "outcome": "succeeded"}]})
    assert r.json()["items"][0]["code"] == "stale_lease"
    [again] = coord.lease(wait=30)  # a waiting poll picks it up after the backoff
    assert again["job"]["attempt"] == 2
    assert again["token"] != lease["token"]


def test_execution_timeout_is_enforced_by_the_coordinator(coord: Coordinator) -> None:
    job = coord.submit(timeout=0.3, max_attempts=1)
    [lease] = coord.lease()
    assert lease["job"]["lease_expires_at"] <= lease["job"]["leased_at"] + 0.3 + 1e-6
    r = coord.http.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 30})
    assert r.json()["state"] == "dead"
    assert r.json()["last_error"]["type"] == "Timeout"


def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        with contextlib.suppress(RuntimeError):  # read while the loop thread changes it
            if condition():
                return
        time.sleep(0.01)
    raise AssertionError("the condition never held")


def test_shutdown_answers_waiting_polls(settings: Settings) -> None:
    app = build_app(settings)
    with ThreadPoolExecutor(2) as pool:
        with serve_in_thread(settings, app) as url:
            coord = Coordinator(url, settings)
            job = coord.submit()
            polling = pool.submit(coord.http.post, "/v1/leases", json={
                "worker": "w1", "kinds": ["test.none"], "wait": 60})
            waiting = pool.submit(coord.http.get, f"/v1/jobs/{job['id']}/wait",
                                  params={"timeout": 60})
            service = app.state.hearth.service
            wait_until(lambda: service.waker.waiting == 1 and service.feed.waiting_jobs == 1)
        # The coordinator stopped while both still waited: they were answered.
        assert polling.result(timeout=5).json() == {"leases": []}
        assert waiting.result(timeout=5).json()["state"] == "queued"
        coord.http.close()


def test_each_waiting_poll_gets_work_and_gone_clients_get_none(settings: Settings) -> None:
    app = build_app(settings)
    with serve_in_thread(settings, app) as url, ThreadPoolExecutor(4) as pool:
        coord = Coordinator(url, settings)
        service = app.state.hearth.service
        body = {"worker": "w1", "kinds": ["test.many"], "max_jobs": 1, "wait": 60}
        impatient = httpx.Client(base_url=url, headers=coord.headers, timeout=0.5)
        with impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/leases", json=body)  # gives up and hangs up
        wait_until(lambda: service.waker.waiting == 0)
        polls = [pool.submit(coord.http.post, "/v1/leases", json=body) for _ in range(3)]
        wait_until(lambda: service.waker.waiting == 3)
        r = coord.http.post("/v1/jobs/batch", json={"jobs": [{"kind": "test.many"}] * 3})
        submitted = {job["id"] for job in r.json()["jobs"]}
        leased = [p.result(timeout=20).json()["leases"] for p in polls]
        coord.http.close()
    assert sorted(len(batch) for batch in leased) == [1, 1, 1]
    assert {batch[0]["job"]["id"] for batch in leased} == submitted


@pytest.mark.postgres
def test_replicas_wake_each_others_polls(pg_url: str, tmp_path: Path) -> None:
    one = Settings(data_dir=tmp_path / "one", port=0, store_url=pg_url)
    two = Settings(data_dir=tmp_path / "two", port=0, store_url=pg_url)
    app_one = build_app(one)
    with serve_in_thread(one, app_one) as url_one, serve_in_thread(two) as url_two, \
            ThreadPoolExecutor(1) as pool:
        first, second = Coordinator(url_one, one), Coordinator(url_two, two)
        service = app_one.state.hearth.service
        polling = pool.submit(first.lease, "test.replica", 60)
        wait_until(lambda: service.waker.waiting == 1)
        job = second.submit(kind="test.replica")
        leases = polling.result(timeout=20)
        with first.http.stream("GET", "/v1/watch", params={"job_id": job["id"]}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": watching"
            second.finish(leases[0])  # committed by the other replica
            seen = sse_events(lines, lambda ev: "succeeded" in types_for(job["id"], ev))
        first.http.close()
        second.http.close()
    assert [lease["job"]["id"] for lease in leases] == [job["id"]]
    assert types_for(job["id"], seen) == ["submitted", "leased", "succeeded"]
