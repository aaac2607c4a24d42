"""The client SDK against a real coordinator process (SQLite, loopback, real HTTP).

Every route the client offers is called for real; nothing of ours is mocked. The
blocking :class:`Client` is exercised alongside the async one.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.client import AsyncClient, Client
from hearth.errors import Conflict, NotFound, Unauthorized, Unavailable, ValidationError
from hearth.wire import FinishIn, HeartbeatIn, JobSubmit, NodeRegister, ResultIn
from helpers import CoordinatorProcess, eventually


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    with CoordinatorProcess(tmp_path_factory.mktemp("coord")) as process:
        yield process


@pytest.fixture
def client(coord: CoordinatorProcess) -> Iterator[Client]:
    with Client(coord.url, token=coord.token, timeout=30) as c:
        yield c


def kind() -> str:
    """A kind no other test uses, so tests sharing a coordinator never see each other."""
    return "k-" + uuid.uuid4().hex[:12]


def test_health_and_url_discovery_from_the_data_dir(coord: CoordinatorProcess) -> None:
    with Client(data=coord.data) as found:
        assert found.url == coord.url
        assert found.health()["status"] == "ok"
        assert found.nodes() is not None


def test_submit_get_and_idempotency(client: Client) -> None:
    k = kind()
    job = client.submit(k, {"n": 1}, priority=5, labels={"team": "a"}, max_attempts=2,
                        backoff={"initial": 0.5}, idempotency_key=k)
    assert (job.kind, job.state, job.created, job.payload) == (k, "queued", True, {"n": 1})
    assert job.backoff.initial == 0.5 and job.labels == {"team": "a"}
    again = client.submit(k, {"n": 2}, idempotency_key=k)
    assert (again.id, again.created) == (job.id, False)
    fetched = client.get(job.id)
    assert fetched.payload == {"n": 1} and fetched.priority == 5
    raw = client.submit(k, data=b"\x00\x01\x02")
    assert client.get(raw.id).payload_bytes() == b"\x00\x01\x02"


def test_submit_many_in_chunks_keeps_order(client: Client) -> None:
    k = kind()
    jobs = client.submit_many([{"kind": k, "payload": i} for i in range(1200)]
                              + [JobSubmit(kind=k, payload="last")])
    assert len(jobs) == 1201
    assert [j.payload for j in jobs[:3]] == [0, 1, 2] and jobs[-1].payload == "last"
    assert len({j.id for j in jobs}) == 1201


def test_list_filters_and_iterate_pages(client: Client) -> None:
    k = kind()
    ids = [client.submit(k, i, labels={"i": str(i)}).id for i in range(5)]
    page = client.list_jobs(kinds=[k], limit=2)
    assert [j.id for j in page.jobs] == ids[::-1][:2] and page.next_cursor
    assert [j.id for j in client.iter_jobs(kinds=[k], page_size=2)] == ids[::-1]
    assert [j.id for j in client.list_jobs(kinds=[k], labels={"i": "3"}).jobs] == [ids[3]]
    assert client.list_jobs(kinds=[k], states=["succeeded"]).jobs == []


def test_cancel_retry_events_and_feed(client: Client) -> None:
    k = kind()
    job = client.submit(k, None)
    assert client.cancel(job.id).state == "cancelled"
    with pytest.raises(Conflict):
        client.cancel(job.id)
    with pytest.raises(Conflict):
        client.retry(job.id)
    events = client.events(job.id)
    assert [e.type for e in events] == ["submitted", "cancelled"]
    assert any(e.job_id == job.id for e in client.feed(events[0].seq - 1, limit=10))


def test_wait_times_out_with_a_sentence(client: Client) -> None:
    job = client.submit(kind())
    with pytest.raises(TimeoutError, match=f"job {job.id} is still queued"):
        client.wait(job.id, timeout=0.3)
    client.cancel(job.id)
    assert client.wait(job.id, timeout=10).state == "cancelled"


def test_errors_are_hearth_errors(coord: CoordinatorProcess, client: Client) -> None:
    with pytest.raises(NotFound):
        client.get("j_00000000000000000000000000")
    with pytest.raises(ValidationError, match="kind"):
        client.submit("Not A Kind")
    with pytest.raises(ValidationError, match="not both"):
        client.submit("echo", {"a": 1}, data=b"x")
    with Client(coord.url, token="hth_wrong") as bad, pytest.raises(Unauthorized) as info:
        bad.get("j_1")
    assert "hth_wrong" not in str(info.value)


def test_unreachable_coordinator_is_unavailable_with_advice() -> None:
    with Client("http://127.0.0.1:9", token="hth_secret", timeout=2) as c, \
            pytest.raises(Unavailable) as info:
        c.health()
    assert "127.0.0.1:9" in str(info.value) and "hearth up" in str(info.value)
    assert "hth_secret" not in str(info.value)


def test_blobs_round_trip_streamed(client: Client, tmp_path: Path) -> None:
    small = client.put_blob(b"hello")
    assert small.digest == hashlib.sha256(b"hello").hexdigest() and small.size == 5
    assert client.get_blob(small.digest) == b"hello"
    big = tmp_path / "big.bin"
    content = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, several chunks
    big.write_bytes(content)
    stored = client.put_blob(big)
    assert stored.digest == hashlib.sha256(content).hexdigest()
    assert client.put_blob(io.BytesIO(content)).digest == stored.digest
    with big.open("rb") as fh:
        assert client.put_blob(fh).digest == stored.digest
    target = tmp_path / "out" / "copy.bin"
    assert client.download_blob(stored.digest, target) == len(content)
    assert target.read_bytes() == content
    assert not target.with_name("copy.bin.part").exists()
    assert b"".join(client.stream_blob(stored.digest)) == content
    with pytest.raises(NotFound):
        client.get_blob("0" * 64)
    with pytest.raises(ValidationError, match="digest"):
        client.get_blob("../secret")
    job = client.submit(kind(), blobs=[stored.digest, ("greeting", small.digest)])
    assert {(b.name, b.digest) for b in client.get(job.id).input_blobs} == {
        ("", stored.digest), ("greeting", small.digest)}


def test_worker_protocol_by_hand(client: Client) -> None:
    k = kind()
    name = "hand-" + k
    node = client.register_node(NodeRegister(name=name, kinds=[k], concurrency=2))
    assert node.name == name
    job = client.submit(k, {"x": 1}, lease_ttl=30)
    [lease] = client.lease(name, [k], max_jobs=5, wait=5)
    assert lease.job.id == job.id and lease.job.state == "leased"
    [beat] = client.heartbeat(name, [HeartbeatIn(job_id=job.id, token=lease.token)])
    assert beat.status == 200 and not beat.cancel_requested
    [stale] = client.heartbeat(name, [HeartbeatIn(job_id=job.id, token="nope")])
    assert stale.status == 409 and stale.code == "stale_lease"
    [done] = client.finish(name, [FinishIn(job_id=job.id, token=lease.token,
                                           outcome="succeeded", result=ResultIn(payload=7))])
    assert done.status == 200 and done.state == "succeeded"
    assert client.wait(job.id, timeout=10).result.payload == 7  # type: ignore[union-attr]
    assert client.lease(name, [k], max_jobs=1, wait=0) == []


def test_watch_streams_events_and_resumes_across_a_restart(tmp_path: Path) -> None:
    """The SSE watch survives a coordinator restart without losing or repeating events."""
    with CoordinatorProcess(tmp_path / "coord") as coord:
        async def main() -> list[tuple[int, str]]:
            seen: list[tuple[int, str]] = []
            async with AsyncClient(coord.url, token=coord.token) as client:
                job = await client.submit("watched")

                async def follow() -> None:
                    async for event in client.watch(job.id):
                        seen.append((event.seq, event.type))
                        if event.type == "cancelled":
                            return

                follower = asyncio.create_task(follow())
                while not seen:
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(coord.restart)
                await client.cancel(job.id)
                await asyncio.wait_for(follower, 60)
            return seen

        seen = asyncio.run(main())
    assert [t for _, t in seen] == ["submitted", "cancelled"]
    assert [s for s, _ in seen] == sorted({s for s, _ in seen})


def test_watch_of_a_namespace_starts_with_new_events(coord: CoordinatorProcess) -> None:
    namespace = "ns-" + uuid.uuid4().hex[:8]

    async def main() -> tuple[str, set[str], str]:
        async with AsyncClient(coord.url, token=coord.token) as client:
            old = await client.submit("ns-job", namespace=namespace)
            got: list[str] = []

            async def follow() -> None:
                async for event in client.watch(namespace=namespace):
                    got.append(event.job_id)
                    return

            follower = asyncio.create_task(follow())
            new: set[str] = set()
            while not follower.done():  # until the stream is open and sees one
                new.add((await client.submit("ns-job", namespace=namespace)).id)
                await asyncio.wait([follower], timeout=0.2)
            await follower
            return old.id, new, got[0]

    old_id, new_ids, first = asyncio.run(main())
    assert first != old_id and first in new_ids


def test_sync_client_watch_iterator_closes_cleanly(client: Client) -> None:
    job = client.submit(kind())
    client.cancel(job.id)
    types = []
    for event in client.watch(job.id):
        types.append(event.type)
        if event.type == "cancelled":
            break
    assert types == ["submitted", "cancelled"]
    eventually(lambda: client.get(job.id).state == "cancelled")
