"""Blob routes over HTTP, and blobs attached to jobs: a real coordinator on SQLite
(the blob store is the filesystem whatever the database)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.coordinator import Settings, serve_in_thread


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_files(settings: Settings) -> list[Path]:
    return sorted(p for p in (settings.data_dir / "blobs").rglob("*") if p.is_file())


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=0, store_url=sqlite_url,
                    max_blob=1_000_000)


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with serve_in_thread(settings) as url:
        token = (settings.data_dir / "admin.token").read_text().strip()
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield client


def test_round_trip_post_get_head(http: httpx.Client) -> None:
    data = os.urandom(700_000)
    r = http.post("/v1/blobs", content=data)
    assert r.status_code == 200, r.text
    assert r.json() == {"digest": sha(data), "size": len(data)}
    r = http.get(f"/v1/blobs/{sha(data)}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["etag"] == f'"{sha(data)}"'
    assert r.headers["content-type"] == "application/octet-stream"
    r = http.head(f"/v1/blobs/{sha(data)}")
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(data)
    r = http.get(f"/v1/blobs/{sha(data)}", headers={"If-None-Match": f'"{sha(data)}"'})
    assert r.status_code == 304


def test_put_with_digest_streams_and_verifies(http: httpx.Client, settings: Settings
                                              ) -> None:
    data = b"chunked " * 10_000

    def body() -> Iterator[bytes]:
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    r = http.put(f"/v1/blobs/{sha(data)}", content=body())
    assert r.status_code == 200, r.text
    assert r.json()["size"] == len(data)
    again = http.put(f"/v1/blobs/{sha(data)}", content=data)
    assert again.json() == r.json()
    assert len(stored_files(settings)) == 1


def test_put_with_the_wrong_content_is_422_and_keeps_nothing(http: httpx.Client,
                                                             settings: Settings) -> None:
    r = http.put(f"/v1/blobs/{sha(b'expected')}", content=b"something else")
    assert r.status_code == 422
    assert r.json()["code"] == "invalid"
    assert "hashes to" in r.json()["error"]
    assert stored_files(settings) == []
    assert http.head(f"/v1/blobs/{sha(b'expected')}").status_code == 404


@pytest.mark.parametrize("digest", [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2F..%2F..%2F..%2Ftmp%2Fhearth-escape",
    "A" * 64,
    "abc",
    "a" * 62 + "%2F" + "a",
])
def test_path_like_digests_are_422_and_touch_no_file(http: httpx.Client, settings: Settings,
                                                     tmp_path: Path, digest: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    for method in ("PUT", "GET", "HEAD"):
        r = http.request(method, f"/v1/blobs/{digest}", content=b"root:x:0:0")
        assert r.status_code == 422, (method, r.status_code)
        if method != "HEAD":
            assert "digest" in r.json()["error"]
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/tmp/hearth-escape").exists()


def test_unknown_blob_is_404(http: httpx.Client) -> None:
    assert http.get(f"/v1/blobs/{sha(b'nope')}").status_code == 404
    assert http.head(f"/v1/blobs/{sha(b'nope')}").status_code == 404


def test_over_the_blob_limit_is_413_and_keeps_nothing(http: httpx.Client,
                                                      settings: Settings) -> None:
    big = b"x" * 1_000_001
    r = http.post("/v1/blobs", content=big)
    assert r.status_code == 413
    assert r.json()["code"] == "too_large"

    def streamed() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
        for _ in range(20):
            yield b"y" * 100_000

    r = http.post("/v1/blobs", content=streamed())
    assert r.status_code == 413
    assert stored_files(settings) == []


def test_jobs_reference_uploaded_blobs_with_their_sizes(http: httpx.Client) -> None:
    missing = sha(b"not uploaded")
    r = http.post("/v1/jobs", json={"kind": "test.blob", "input_blobs": [{"digest": missing}]})
    assert r.status_code == 404
    assert "upload it" in r.json()["error"]
    data = b"input data"
    http.post("/v1/blobs", content=data)
    r = http.post("/v1/jobs", json={"kind": "test.blob",
                                    "input_blobs": [{"digest": sha(data), "name": "in.txt"}]})
    assert r.status_code == 201, r.text
    assert r.json()["input_blobs"] == [{"digest": sha(data), "size": len(data),
                                        "name": "in.txt"}]
    lease = http.post("/v1/leases", json={"worker": "w", "kinds": ["test.blob"]}).json()
    [item] = lease["leases"]
    out = b"output data!"
    http.put(f"/v1/blobs/{sha(out)}", content=out)
    r = http.post("/v1/leases/finish", json={"worker": "w", "items": [{
        "job_id": item["job"]["id"], "token": item["token"], "outcome": "succeeded",
        "result": {"blobs": [{"digest": sha(out), "name": "out.bin"}]}}]})
    assert r.json()["items"][0]["status"] == 200, r.text
    job = http.get(f"/v1/jobs/{item['job']['id']}").json()
    assert job["result"]["blobs"] == [{"digest": sha(out), "size": len(out),
                                       "name": "out.bin"}]


def test_retention_purges_old_jobs_and_unreferenced_blobs(sqlite_url: str,
                                                          tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=0, store_url=sqlite_url,
                        retention=0.5, retention_interval=0.2, blob_gc_grace=3600)
    with serve_in_thread(settings) as url, httpx.Client(base_url=url, timeout=30, headers={
            "Authorization": "Bearer " + (settings.data_dir / "admin.token").read_text().strip()
    }) as http:
        kept, dropped = b"still referenced", b"nobody uses this"
        for data in (kept, dropped):
            http.post("/v1/blobs", content=data)
        queued = http.post("/v1/jobs", json={"kind": "test.keep",
                                             "input_blobs": [{"digest": sha(kept)}]}).json()
        done = http.post("/v1/jobs", json={"kind": "test.done"}).json()
        [lease] = http.post("/v1/leases", json={"worker": "w", "kinds": ["test.done"]}
                            ).json()["leases"]
        http.post("/v1/leases/finish", json={"worker": "w", "items": [
            {"job_id": done["id"], "token": lease["token"], "outcome": "succeeded"}]})
        for path in stored_files(settings):
            os.utime(path, (1_000_000, 1_000_000))  # older than the grace period
        for _ in range(300):
            gone = http.get(f"/v1/jobs/{done['id']}").status_code == 404
            if gone and http.head(f"/v1/blobs/{sha(dropped)}").status_code == 404:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("retention never removed the old job and blob")
        assert http.get(f"/v1/jobs/{queued['id']}").json()["state"] == "queued"
        assert http.get(f"/v1/blobs/{sha(kept)}").content == kept
