"""A submit hands its jobs straight to a lease poll that is already waiting for them.

The queue service on a real store (both backends): the poll's worker receives the job
from the submit's own transaction, so the store is asked to lease only once (the
poll's first, empty look). A counting proxy around the real store shows which calls
were made; nothing else is replaced.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.blobs.fs import FsBlobStore
from hearth.domain.jobs import JobSpec, JobState
from hearth.engine.service import QueueService
from hearth.errors import Unavailable
from hearth.store import Store, open_store


class Counting:
    """The real store, counting ``lease`` calls; ``submit`` can be made to fail once or
    to run a hook first. ``local`` False sends every call to the service's threads."""

    def __init__(self, store: Store, *, local: bool | None = None) -> None:
        self._store = store
        self.local = store.local if local is None else local  # type: ignore[attr-defined]
        self.leases = 0
        self.fail_next_submit = False
        self.before_submit: Any = None

    def lease(self, **kw: Any) -> Any:
        self.leases += 1
        return self._store.lease(**kw)

    def submit(self, *args: Any, **kw: Any) -> Any:
        if self.before_submit is not None:
            self.before_submit()
        if self.fail_next_submit:
            self.fail_next_submit = False
            raise Unavailable("the store is down (test)")
        return self._store.submit(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def _service(store: Any, tmp_path: Path) -> QueueService:
    return QueueService(store, FsBlobStore(tmp_path / "blobs"))


async def _until_idle(svc: QueueService, n: int = 1) -> None:
    """Until ``n`` polls wait with nothing to do (their first look found nothing)."""
    for _ in range(500):
        waiters = {w for group in svc.waker._by_kind.values() for w in group}
        if len(waiters) == n and all(w.idle for w in waiters):
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the lease polls never became idle")


def test_a_waiting_poll_gets_the_job_from_the_submit_itself(store: Store,
                                                            tmp_path: Path) -> None:
    counting = Counting(store)

    async def main() -> None:
        svc = _service(counting, tmp_path)
        poll = asyncio.create_task(svc.lease(worker="w1", kinds=["k"], max_jobs=4, wait=10))
        await _until_idle(svc)
        [sub] = await svc.submit([JobSpec(kind="k")])
        jobs = await asyncio.wait_for(poll, 5)
        assert [j.id for j in jobs] == [sub.job.id]
        assert jobs[0].state is JobState.LEASED and jobs[0].worker == "w1"
        assert counting.leases == 1  # the first look; the job came with the submit
        assert sub.job.state is JobState.LEASED  # the submitter sees it taken
        events = await svc.events(job_id=sub.job.id)
        assert [e.type.value for e in events] == ["submitted", "leased"]
        # Counted like any lease (submit-to-lease latency is observed once).
        assert b"hearth_lease_latency_seconds_count 1.0" in svc.metrics.render([])
        await svc.close()

    asyncio.run(main())


def test_a_batch_fills_each_poll_up_to_its_size_and_queues_the_rest(
        store: Store, tmp_path: Path) -> None:
    counting = Counting(store)

    async def main() -> None:
        svc = _service(counting, tmp_path)
        polls = [asyncio.create_task(svc.lease(worker=f"w{i}", kinds=["k"], max_jobs=2,
                                               wait=10)) for i in range(2)]
        await _until_idle(svc, 2)
        specs = [JobSpec(kind="k", payload=str(i).encode()) for i in range(5)]
        specs.append(JobSpec(kind="k", delay=30))  # not due: never handed over
        subs = await svc.submit(specs, batch=True)
        first, second = [await asyncio.wait_for(p, 5) for p in polls]
        assert [j.payload for j in first] == [b"0", b"1"]
        assert [j.payload for j in second] == [b"2", b"3"]
        assert {j.worker for j in first} == {"w0"} and {j.worker for j in second} == {"w1"}
        assert [s.job.state for s in subs[4:]] == [JobState.QUEUED, JobState.QUEUED]
        assert counting.leases == 2
        await svc.close()

    asyncio.run(main())


def test_a_failed_submit_leaves_the_poll_waiting_for_the_next_job(
        store: Store, tmp_path: Path) -> None:
    counting = Counting(store)

    async def main() -> None:
        svc = _service(counting, tmp_path)
        poll = asyncio.create_task(svc.lease(worker="w1", kinds=["k"], max_jobs=1, wait=10))
        await _until_idle(svc)
        counting.fail_next_submit = True
        with pytest.raises(Unavailable):
            await svc.submit([JobSpec(kind="k")])
        assert not poll.done()
        [sub] = await svc.submit([JobSpec(kind="k")])
        [job] = await asyncio.wait_for(poll, 5)
        assert job.id == sub.job.id
        await svc.close()

    asyncio.run(main())


def test_jobs_handed_to_a_poll_whose_client_left_are_released(store: Store,
                                                              tmp_path: Path) -> None:
    # Calls run on the service's threads here, so the client can hang up while the
    # submit that claimed its poll is still committing.
    counting = Counting(store, local=False)

    async def main() -> None:
        svc = _service(counting, tmp_path)
        loop = asyncio.get_running_loop()
        hung_up = asyncio.Event()
        gone = threading.Event()

        async def disconnected() -> None:
            await hung_up.wait()

        poll = asyncio.create_task(svc.lease(worker="w1", kinds=["k"], max_jobs=1, wait=10,
                                             disconnected=disconnected))
        await _until_idle(svc)

        def hang_up() -> None:  # on the store thread, inside the claiming submit
            loop.call_soon_threadsafe(lambda: (hung_up.set(), gone.set()))
            assert gone.wait(5)

        counting.before_submit = hang_up
        [sub] = await svc.submit([JobSpec(kind="k")])
        assert await asyncio.wait_for(poll, 5) == []
        job = await svc.get(sub.job.id)
        assert job.state is JobState.QUEUED and job.lease_token is None
        events = await svc.events(job_id=sub.job.id)
        assert [e.type.value for e in events] == ["submitted", "leased", "released"]
        await svc.close()

    asyncio.run(main())
