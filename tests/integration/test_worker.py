"""The worker runtime against a real coordinator process, end to end.

Real ``Worker`` objects run on threads (``worker.run()``, stopped with
``worker.stop()``), jobs go in and come out through the real client. Waits are on
conditions with generous limits, never timed assertions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.client import Client
from hearth.errors import Unauthorized
from hearth.worker import JobCancelled, JobContext, NonRetryable, Output, Worker
from helpers import CoordinatorProcess, eventually, running_worker

FAST = {"initial": 0.1, "max": 0.2, "jitter": 0.0}


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    with CoordinatorProcess(tmp_path_factory.mktemp("coord")) as process:
        yield process


@pytest.fixture
def client(coord: CoordinatorProcess) -> Iterator[Client]:
    with Client(coord.url, token=coord.token) as c:
        yield c


def kind() -> str:
    return "k-" + uuid.uuid4().hex[:12]


def make_worker(coord: CoordinatorProcess, **options: Any) -> Worker:
    options.setdefault("poll_wait", 5.0)
    options.setdefault("grace", 5.0)
    return Worker(coord.url, token=coord.token, name="w-" + uuid.uuid4().hex[:8], **options)


def test_async_and_sync_handlers_round_trip(coord: CoordinatorProcess, client: Client) -> None:
    echo, upper, raw = kind(), kind(), kind()
    worker = make_worker(coord)

    @worker.handler(echo)
    async def echo_handler(ctx: JobContext) -> Any:
        return {"got": ctx.payload, "attempt": ctx.attempt}

    @worker.handler(upper)
    def upper_handler(ctx: JobContext) -> Any:
        return ctx.payload.upper()

    @worker.handler(raw)
    def raw_handler(ctx: JobContext) -> bytes:
        return ctx.payload[::-1]

    with running_worker(worker):
        a = client.submit(echo, {"x": [1, 2]})
        b = client.submit(upper, "shout")
        c = client.submit(raw, data=b"\x01\x02\x03")
        done_a = client.wait(a.id, timeout=60)
        done_b = client.wait(b.id, timeout=60)
        done_c = client.wait(c.id, timeout=60)
        assert [n.name for n in client.nodes() if n.name == worker.name] == [worker.name]
    assert done_a.state == "succeeded"
    assert done_a.result.payload == {"got": {"x": [1, 2]}, "attempt": 1}  # type: ignore[union-attr]
    assert done_b.result.payload == "SHOUT"  # type: ignore[union-attr]
    assert done_c.result.payload_type == "bytes"  # type: ignore[union-attr]
    assert done_c.result.payload_b64 == "AwIB"  # type: ignore[union-attr]


def test_many_jobs_with_batched_outcomes(coord: CoordinatorProcess, client: Client) -> None:
    k = kind()
    worker = make_worker(coord, concurrency=32)

    @worker.handler(k)
    async def noop(ctx: JobContext) -> None:
        return None

    with running_worker(worker):
        jobs = client.submit_many([{"kind": k, "payload": i} for i in range(500)])
        last = client.wait(jobs[-1].id, timeout=60)
        assert last.state == "succeeded"
        eventually(lambda: len(client.list_jobs(kinds=[k], states=["succeeded"],
                                                limit=1000).jobs) == 500,
                   timeout=60, what="all 500 jobs succeeding")


def test_raising_is_retried_then_dead(coord: CoordinatorProcess, client: Client) -> None:
    k = kind()
    worker = make_worker(coord)
    calls: list[int] = []

    @worker.handler(k)
    def flaky(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise ValueError(f"attempt {ctx.attempt} broke")

    with running_worker(worker):
        job = client.submit(k, max_attempts=3, backoff=FAST)
        done = client.wait(job.id, timeout=60)
    assert done.state == "dead" and done.failures == 3
    assert calls == [1, 2, 3]
    assert done.last_error is not None
    assert (done.last_error.type, done.last_error.message) == ("ValueError", "attempt 3 broke")


def test_non_retryable_is_dead_at_once(coord: CoordinatorProcess, client: Client) -> None:
    k = kind()
    worker = make_worker(coord)

    @worker.handler(k)
    async def fatal(ctx: JobContext) -> None:
        raise NonRetryable("this input can never work")

    with running_worker(worker):
        job = client.submit(k, max_attempts=5, backoff=FAST)
        done = client.wait(job.id, timeout=60)
    assert done.state == "dead" and done.attempt == 1
    assert done.last_error is not None and done.last_error.retryable is False
    assert done.last_error.message == "this input can never work"


def test_a_handler_can_cancel_its_own_job(coord: CoordinatorProcess, client: Client) -> None:
    k = kind()
    worker = make_worker(coord)

    @worker.handler(k)
    def give_up(ctx: JobContext) -> None:
        raise JobCancelled("the order was withdrawn")

    with running_worker(worker):
        job = client.submit(k, max_attempts=5, backoff=FAST)
        done = client.wait(job.id, timeout=60)
    assert done.state == "cancelled" and done.attempt == 1 and done.failures == 0
    assert [e.type for e in client.events(job.id)][-1] == "cancelled"


def test_progress_is_visible_while_running(coord: CoordinatorProcess, client: Client) -> None:
    k = kind()
    worker = make_worker(coord)
    release = threading.Event()

    @worker.handler(k)
    def slow(ctx: JobContext) -> str:
        ctx.report_progress(50, "half way")
        release.wait(60)
        return "done"

    with running_worker(worker):
        job = client.submit(k, lease_ttl=3)
        seen = eventually(lambda: client.get(job.id).progress, timeout=60,
                          what="progress arriving")
        assert (seen.percent, seen.message) == (50, "half way")
        release.set()
        assert client.wait(job.id, timeout=60).state == "succeeded"


@pytest.mark.parametrize("style", ["async", "sync"])
def test_cancel_stops_a_running_handler(coord: CoordinatorProcess, client: Client,
                                        style: str) -> None:
    k = kind()
    worker = make_worker(coord)
    started, stopped = threading.Event(), threading.Event()

    if style == "async":
        @worker.handler(k)
        async def forever(ctx: JobContext) -> None:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                stopped.set()
                raise
    else:
        @worker.handler(k)
        def forever_sync(ctx: JobContext) -> None:
            started.set()
            ctx.cancelled.wait(3600)
            stopped.set()
            ctx.raise_if_cancelled()

    with running_worker(worker):
        job = client.submit(k, lease_ttl=3)
        assert started.wait(60)
        assert client.cancel(job.id).cancel_requested
        done = client.wait(job.id, timeout=60)
        assert stopped.wait(60)
    assert done.state == "cancelled"


@pytest.mark.parametrize("style", ["async", "sync"])
def test_timeout_fails_the_attempt(coord: CoordinatorProcess, client: Client,
                                   style: str) -> None:
    k = kind()
    worker = make_worker(coord)
    stopped = threading.Event()

    if style == "async":
        @worker.handler(k, timeout=0.5)
        async def slow(ctx: JobContext) -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.set()
    else:
        @worker.handler(k)
        def slow_sync(ctx: JobContext) -> None:
            ctx.cancelled.wait(3600)
            stopped.set()

    with running_worker(worker):
        # The sync handler has no timeout of its own: the job's timeout applies.
        job = client.submit(k, max_attempts=1, timeout=0.5 if style == "sync" else None)
        done = client.wait(job.id, timeout=60)
        assert stopped.wait(60)
    assert done.state == "dead"
    assert done.last_error is not None and "timed out" in done.last_error.message


def test_graceful_shutdown_releases_in_flight_jobs(coord: CoordinatorProcess,
                                                   client: Client) -> None:
    k = kind()
    first = make_worker(coord, grace=0.2)
    started = threading.Event()

    @first.handler(k)
    def stubborn(ctx: JobContext) -> str:
        started.set()
        ctx.cancelled.wait(3600)
        return "too late"

    with running_worker(first):
        job = client.submit(k, max_attempts=1)
        assert started.wait(60)
    released = client.get(job.id)
    assert released.state == "queued" and released.failures == 0

    second = make_worker(coord)

    @second.handler(k)
    async def quick(ctx: JobContext) -> str:
        return f"attempt {ctx.attempt}"

    with running_worker(second):
        done = client.wait(job.id, timeout=60)
    assert done.state == "succeeded" and done.failures == 0
    assert done.result.payload == "attempt 2"  # type: ignore[union-attr]


def test_input_and_output_blobs(coord: CoordinatorProcess, client: Client,
                                tmp_path: Path) -> None:
    async_kind, sync_kind = kind(), kind()
    worker = make_worker(coord)
    report = tmp_path / "report.txt"
    report.write_bytes(b"a report from a file")

    @worker.handler(async_kind)
    async def async_blobs(ctx: JobContext) -> Output:
        whole = await ctx.read_blob("input")
        streamed = b"".join([block async for block in ctx.open_blob("input")])
        return Output(payload={"same": whole == streamed, "size": len(whole)},
                      blobs={"upper.txt": whole.upper(), "report.txt": report})

    paths: list[Path] = []

    @worker.handler(sync_kind)
    def sync_blobs(ctx: JobContext) -> Output:
        path = ctx.blob_path("input")
        paths.append(path)
        return Output(data=path.read_bytes()[::-1])

    content = b"hello blobs " * 1000
    stored = client.put_blob(content)
    with running_worker(worker):
        a = client.submit(async_kind, blobs=[("input", stored.digest)])
        b = client.submit(sync_kind, blobs=[("input", stored.digest)])
        done_a = client.wait(a.id, timeout=60)
        done_b = client.wait(b.id, timeout=60)
    assert done_a.state == "succeeded" and done_a.result is not None
    assert done_a.result.payload == {"same": True, "size": len(content)}
    blobs = {blob.name: blob for blob in done_a.result.blobs}
    assert set(blobs) == {"upper.txt", "report.txt"}
    assert client.get_blob(blobs["upper.txt"].digest) == content.upper()
    assert blobs["report.txt"].digest == hashlib.sha256(report.read_bytes()).hexdigest()
    assert done_b.state == "succeeded" and done_b.result is not None
    assert base64.b64decode(done_b.result.payload_b64 or "") == content[::-1]
    assert paths and not paths[0].exists()  # the temp file is gone after the job


def test_outcome_survives_a_coordinator_restart(tmp_path: Path) -> None:
    """An outcome produced while the coordinator is down is delivered once it is back,
    and the worker re-registers and keeps leasing."""
    k = kind()
    with CoordinatorProcess(tmp_path / "coord") as coord, \
            Client(coord.url, token=coord.token) as client:
        worker = make_worker(coord)
        started, release = threading.Event(), threading.Event()

        @worker.handler(k)
        def waits(ctx: JobContext) -> Any:
            if ctx.payload == "block":
                started.set()
                release.wait(60)
            return ctx.payload

        with running_worker(worker):
            job = client.submit(k, "block", lease_ttl=60)
            assert started.wait(60)
            coord.stop()
            release.set()  # finishes while the coordinator is down
            coord.start()
            assert client.wait(job.id, timeout=60).state == "succeeded"
            after = client.submit(k, "after the restart")
            done = client.wait(after.id, timeout=60)
        assert done.result is not None and done.result.payload == "after the restart"


def test_worker_from_the_data_dir_and_stop_before_start(coord: CoordinatorProcess,
                                                        client: Client) -> None:
    k = kind()
    worker = Worker(data=coord.data, name="w-" + uuid.uuid4().hex[:8], poll_wait=1)

    @worker.handler(k)
    async def echo(ctx: JobContext) -> Any:
        return ctx.payload

    with running_worker(worker):
        job = client.submit(k, 42)
        assert client.wait(job.id, timeout=60).result.payload == 42  # type: ignore[union-attr]

    idle = make_worker(coord)
    idle.handler(kind())(echo)
    idle.stop()  # before it runs: it starts and stops at once
    idle.run()


def test_lost_lease_stops_the_handler_and_drops_its_outcome(tmp_path: Path) -> None:
    """The lease expires while the coordinator is down; after the restart the heartbeat
    is refused as stale, the handler is stopped and its outcome is never sent; the job
    runs again as a new attempt."""
    k = kind()
    with CoordinatorProcess(tmp_path / "coord") as coord, \
            Client(coord.url, token=coord.token) as client:
        worker = make_worker(coord)
        started, stopped = threading.Event(), threading.Event()

        @worker.handler(k)
        async def first_blocks(ctx: JobContext) -> str:
            if ctx.attempt == 1:
                started.set()
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    stopped.set()
                    raise
            return f"attempt {ctx.attempt}"

        with running_worker(worker):
            job = client.submit(k, lease_ttl=1, max_attempts=3, backoff=FAST)
            assert started.wait(60)
            expires = eventually(lambda: client.get(job.id).lease_expires_at)
            coord.stop()
            eventually(lambda: time.time() > expires + 0.5, what="the lease running out")
            coord.start()
            assert stopped.wait(60)
            done = client.wait(job.id, timeout=60)
        assert done.state == "succeeded" and done.failures == 1
        assert done.result is not None and done.result.payload == f"attempt {done.attempt}"


WORKER_SCRIPT = """
import sys, threading
from hearth.worker import Worker
worker = Worker(sys.argv[1], token=sys.argv[2], name=sys.argv[4], grace=0.5, poll_wait=5)

@worker.handler(sys.argv[3])
def stubborn(ctx):
    print("started", flush=True)
    ctx.cancelled.wait(3600)
    return "stopped"

worker.run()
print("exited", flush=True)
"""


def test_sigterm_shuts_a_worker_process_down_gracefully(coord: CoordinatorProcess,
                                                         client: Client) -> None:
    k, name = kind(), "w-" + uuid.uuid4().hex[:8]
    proc = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, coord.url, coord.token, k,
                             name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        job = client.submit(k, max_attempts=1)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"started"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.strip() == b"exited"
    released = client.get(job.id)
    assert released.state == "queued" and released.failures == 0
    client.cancel(job.id)


def test_a_worker_with_a_bad_token_stops_with_unauthorized(coord: CoordinatorProcess) -> None:
    worker = Worker(coord.url, token="hth_wrong", name="w-" + uuid.uuid4().hex[:8])
    worker.handler(kind())(lambda ctx: None)
    with pytest.raises(Unauthorized) as info:
        worker.run()  # in the main thread: installs and removes its signal handlers
    assert "hth_wrong" not in str(info.value)
