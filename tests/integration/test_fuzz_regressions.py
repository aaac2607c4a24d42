"""Regression tests for the bugs the fuzz tests (tests/fuzz) found, on SQLite and
PostgreSQL. Each test names the input that used to break and what it got.

- A worker reporting a failure after a cancel request made the job ``failed`` (to run
  again) or ``dead``, with ``cancel_requested`` still set, so an operator retry of it
  was cancelled again at its first heartbeat (test_queue_stateful).
- Bad input answered 5xx or an undocumented status (test_openapi_fuzz):
  - a body that is not UTF-8, on a route whose body FastAPI parses: 400;
  - an integer beyond 64 bits: SQLite's driver raised OverflowError (500, or a reset
    connection), PostgreSQL "out of range" (500), orjson could not encode it (500);
  - a NUL character in text on PostgreSQL: psycopg DataError (500);
  - a blob path with a newline inside: no route (404, documented as never a 404).
- Bodies accepted values of the wrong JSON type and converted them ("3" or true for a
  number): request models are strict now (422 naming the field).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.coordinator import Settings, serve_in_thread
from hearth.domain import transitions as tr
from hearth.domain.jobs import ErrorInfo, JobSpec, JobState
from hearth.errors import ValidationError
from hearth.store import FinishItem, JobFilter, open_store

T0 = 1_800_000_000.0
BIG = 2**63  # one past the largest 64-bit integer


def _ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"j_reg{n:010d}"


# -- cancel request, then a failed attempt ----------------------------------------------


@pytest.mark.parametrize("retryable", [True, False])
def test_a_failure_after_a_cancel_request_cancels_the_job(store_url: str,
                                                          retryable: bool) -> None:
    ids = _ids()
    store = open_store(store_url)
    try:
        [sub] = store.submit([JobSpec(kind="k", max_attempts=1 if retryable else 3)],
                             now=T0, new_id=lambda: next(ids))
        [job] = store.lease(worker="w", kinds=["k"], limit=1, now=T0,
                            new_token=lambda: "tok1")
        store.cancel(job.id, now=T0 + 1)
        [res] = store.finish([FinishItem(job.id, "tok1", "failed",
                                         error=ErrorInfo("boom", retryable=retryable))],
                             worker="w", now=T0 + 2, rand=lambda: 0.5)
        assert res.ok and res.job is not None
        # Used to be failed (leased again later) or dead, with cancel_requested set.
        assert res.job.state is JobState.CANCELLED
        got = store.get(sub.job.id)
        assert (got.state, got.finished_at, got.lease_token) == (
            JobState.CANCELLED, T0 + 2, None)
        assert [e.type.value for e in store.events(job_id=job.id)] == [
            "submitted", "leased", "cancel_requested", "cancelled"]
        later = store.lease(worker="w", kinds=["k"], limit=1, now=T0 + 3600,
                            new_token=lambda: "tok2")
        assert later == []
    finally:
        store.close()


def test_an_operator_retry_clears_an_old_cancel_request() -> None:
    """A dead job stored with cancel_requested (by the old fail()) is retried afresh."""
    job, _ = tr.create(JobSpec(kind="k"), "j_reg", T0)
    job, _ = tr.lease(job, worker="w", token="tok1", now=T0)
    dead, _ = tr.fail(job, token="tok1", now=T0, error=ErrorInfo("boom", retryable=False),
                      rand=0.5)
    retried, _ = tr.retry(tr.replace(dead, cancel_requested=True), now=T0 + 1)
    assert (retried.state, retried.cancel_requested) == (JobState.QUEUED, False)


# -- bad input over HTTP ----------------------------------------------------------------


@pytest.fixture
def http(store_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(data_dir=tmp_path / "data", port=0, store_url=store_url,
                        log_level="warning")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_in_thread(settings))
        token = (settings.data_dir / "admin.token").read_text().strip()
        yield stack.enter_context(httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}))


def _invalid(r: httpx.Response) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["code"] == "invalid" and r.json()["error"]


def test_a_body_that_is_not_utf8_is_422(http: httpx.Client) -> None:
    garbage = b"\xff\xfe{not json"
    headers = {"Content-Type": "application/json"}
    for path in ("/v1/nodes", "/v1/tokens", "/v1/certificates/revoke",
                 "/v1/jobs/j_x/finish?worker=w", "/v1/jobs/j_x/heartbeat?worker=w"):
        _invalid(http.post(path, content=garbage, headers=headers))  # used to be 400
    _invalid(http.post("/v1/jobs", content=garbage, headers=headers))  # always was


def test_credentials_are_checked_before_any_body_is_read(http: httpx.Client) -> None:
    """A caller without credentials learns nothing from a body: 401 first, always."""
    garbage = b"\xff\xfe{not json"
    headers = {"Content-Type": "application/json", "Authorization": ""}
    for path in ("/v1/nodes", "/v1/tokens", "/v1/certificates/revoke", "/v1/enrollments",
                 "/v1/jobs/j_x/finish?worker=w", "/v1/jobs/j_x/heartbeat?worker=w",
                 "/v1/jobs", "/v1/leases"):
        for body in (garbage, b'{"unexpected": true}'):
            answer = http.post(path, content=body, headers=headers)
            assert answer.status_code == 401, (path, answer.status_code, answer.text)


def test_integers_beyond_64_bits_are_422(http: httpx.Client) -> None:
    _invalid(http.get("/v1/events", params={"after": BIG}))
    _invalid(http.get("/v1/jobs/j_x/events", params={"after": BIG * 4}))
    _invalid(http.post("/v1/jobs", json={"kind": "k", "max_attempts": BIG}))
    _invalid(http.post("/v1/jobs", json={"kind": "k", "payload": {"n": BIG * 4}}))
    _invalid(http.post("/v1/jobs/batch", json={"jobs": [{"kind": "k", "payload": -BIG * 4}]}))
    job = http.post("/v1/jobs", json={"kind": "k"}).json()
    [lease] = http.post("/v1/leases", json={"worker": "w", "kinds": ["k"]}).json()["leases"]
    r = http.post("/v1/leases/finish", json={"worker": "w", "items": [{
        "job_id": job["id"], "token": lease["token"], "outcome": "succeeded",
        "result": {"payload": [BIG * 4]}}]})
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["status"] == 422
    assert http.get("/v1/events", params={"after": BIG - 1}).json()["events"] == []


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/jobs", {"kind": "k", "priority": "3"}, "priority"),
    ("/v1/jobs", {"kind": "k", "max_attempts": True}, "max_attempts"),
    ("/v1/jobs", {"kind": "k", "delay": "1.5"}, "delay"),
    ("/v1/jobs", {"kind": 5}, "kind"),
    ("/v1/jobs", {"kind": "k", "labels": {"team": 7}}, "labels.team"),
    ("/v1/jobs/batch", {"jobs": [{"kind": "k", "lease_ttl": "30"}]}, "jobs[0].lease_ttl"),
    ("/v1/leases", {"worker": "w", "kinds": ["k"], "max_jobs": "2"}, "max_jobs"),
    ("/v1/leases", {"worker": "w", "kinds": ["k"], "wait": False}, "wait"),
])
def test_values_of_the_wrong_json_type_are_422_naming_the_field(
        http: httpx.Client, path: str, body: dict[str, object], field: str) -> None:
    """Bodies used to accept "3" or true where a number belongs (pydantic's lax mode)
    and convert them; a wrong type is now refused, and nothing is stored."""
    before = http.get("/v1/jobs").json()["jobs"]
    r = http.post(path, json=body)
    _invalid(r)
    assert f"'{field}'" in r.json()["error"], r.json()["error"]
    assert http.get("/v1/jobs").json()["jobs"] == before


def test_an_integer_is_a_valid_number(http: httpx.Client) -> None:
    r = http.post("/v1/jobs", json={"kind": "k", "delay": 0, "lease_ttl": 30})
    assert r.status_code == 201, r.text
    assert r.json()["lease_ttl"] == 30.0


def test_nul_characters_in_text_are_never_a_5xx(http: httpx.Client, store_url: str) -> None:
    """A NUL in what a caller chooses (labels, idempotency keys) is 422 on both stores;
    in filters and node fields, PostgreSQL's refusal is a 422 too; in what a worker
    reports (a failure message, progress) it is kept, escaped, on both stores."""
    on_pg = not store_url.startswith("sqlite")
    r = http.get("/v1/jobs", params={"kind": "a\x00b", "worker": "w\x00"})
    assert r.status_code == (422 if on_pg else 200), r.text
    r = http.post("/v1/jobs", json={"kind": "k", "idempotency_key": "key\x00"})
    assert r.status_code == 422, r.text
    r = http.post("/v1/jobs", json={"kind": "k", "labels": {"team": "a\x00"}})
    assert r.status_code == 422 and "NUL" in r.json()["error"], r.text
    r = http.post("/v1/nodes", json={"name": "n", "kinds": ["k"], "host": "h\x00"})
    assert r.status_code == (422 if on_pg else 200), r.text
    failing = http.post("/v1/jobs", json={"kind": "k2"}).json()
    passing = http.post("/v1/jobs", json={"kind": "k2"}).json()
    leases = http.post("/v1/leases", json={"worker": "w", "kinds": ["k2"],
                                           "max_jobs": 2}).json()["leases"]
    tokens = {lease["job"]["id"]: lease["token"] for lease in leases}
    r = http.post("/v1/leases/finish", json={"worker": "w", "items": [
        {"job_id": failing["id"], "token": tokens[failing["id"]], "outcome": "failed",
         "error": {"message": "bad \x00 byte", "retryable": False}},
        {"job_id": passing["id"], "token": tokens[passing["id"]], "outcome": "succeeded"}]})
    assert r.status_code == 200 and [i["status"] for i in r.json()["items"]] == [200, 200]
    dead = http.get(f"/v1/jobs/{failing['id']}").json()
    assert dead["state"] == "dead" and dead["last_error"]["message"] == "bad \\x00 byte"
    assert http.get(f"/v1/jobs/{passing['id']}").json()["state"] == "succeeded"


def test_a_blob_path_with_a_newline_is_422_not_404(http: httpx.Client) -> None:
    for method in ("GET", "PUT", "HEAD"):
        r = http.request(method, "/v1/blobs/ab%0Acd")
        assert r.status_code == 422, (method, r.status_code, r.text)


def test_the_store_translates_driver_value_errors(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with pytest.raises(ValidationError):
            store.events(after=BIG)
        assert store.list_jobs(JobFilter(kinds=("k",))).jobs == []
    finally:
        store.close()
