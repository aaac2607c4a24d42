"""The queue service: what the HTTP layer calls to run the job engine.

It wraps the synchronous :class:`~hearth.store.port.Store`. A store call runs in a
bounded thread pool (adapters may block), except the short calls of a ``local`` store
(SQLite, whose only writer is this process): those run on the event loop itself,
because two thread switches cost more than the call (see :meth:`QueueService._short`).
Long calls (listings, counts, purges) always go to the pool. Around each call it
does what the store cannot: domain validation and blob checks before anything is
stored, then — only after the store committed — wake-ups for waiting lease polls
(:mod:`hearth.engine.waker`), the change feed for watchers (:mod:`hearth.engine.feed`)
and metrics. The clock, randomness, id and token generators are injected.

It must never hold a store thread while waiting (long polls wait on the loop), never
acknowledge anything the store has not committed, never make a call on the loop that
could wait on another process or scan without bound, and never contain SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar, cast

from hearth.blobs.port import BlobStore
from hearth.domain.jobs import BlobRef, Event, Job, JobSpec, JobState
from hearth.domain.validation import (
    DEFAULT_MAX_PAYLOAD,
    check_blob_refs,
    check_kind,
    check_namespace,
    check_node_name,
    check_spec,
)
from hearth.engine.feed import ChangeFeed
from hearth.engine.metrics import Metrics
from hearth.engine.waker import Waiter, Waker
from hearth.errors import HearthError, PayloadTooLarge
from hearth.ids import new_job_id, new_token
from hearth.store.port import (
    FinishItem,
    Grant,
    HeartbeatItem,
    ItemResult,
    JobFilter,
    Node,
    Page,
    QueueCount,
    Store,
    Submitted,
)

log = logging.getLogger("hearth.engine")

_T = TypeVar("_T")

#: How often watchers look at a store shared with other coordinators, whose changes
#: are not all announced here (NOTIFY only tells about leasable work).
SHARED_STORE_RECHECK = 1.0


def _in_item(index: int, exc: HearthError) -> HearthError:
    """The same error, naming the batch item it is about."""
    return type(exc)(f"job {index} of the batch: {exc.message}")


class QueueService:
    def __init__(self, store: Store, blobs: BlobStore, *,
                 max_payload: int = DEFAULT_MAX_PAYLOAD,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 new_id: Callable[[], str] = new_job_id,
                 new_lease_token: Callable[[], str] = new_token,
                 threads: int = 8,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.blobs = blobs
        self.max_payload = max_payload
        self.clock = clock
        self._rand = rand
        self._new_id = new_id
        self._new_token = new_lease_token
        self.waker = Waker(clock)
        self.feed = ChangeFeed()
        self.metrics = metrics or Metrics()
        #: Called with the earliest ``lease_expires_at`` of each granted batch (reaper).
        self.lease_listeners: list[Callable[[float], None]] = []
        #: True when other coordinators share the store (changes arrive by NOTIFY).
        self.shared = False
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hearth-store")
        self._inline = store.local
        self._unsubscribe: Callable[[], None] | None = None

    async def _run(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """A store call on the thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _short(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """A short store call: one job, or one bounded batch, through indexes only.

        On a ``local`` store it runs right here on the loop: the call takes tens of
        microseconds per job and can only wait for this process's own writer
        connection, while the hop to a thread and back (two wake-ups and two GIL
        hand-overs) took longer than the call itself and was most of a submit's
        latency. Elsewhere it goes to the pool like every other call."""
        if self._inline:
            return fn(*args, **kwargs)
        return await self._run(fn, *args, **kwargs)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_remote(kinds: set[str]) -> None:  # another thread (the NOTIFY listener)
            with contextlib.suppress(RuntimeError):  # loop closed: shutting down
                loop.call_soon_threadsafe(self._remote_change, set(kinds))

        self._unsubscribe = await self._run(self.store.subscribe, on_remote)
        self.shared = self._unsubscribe is not None

    def _remote_change(self, kinds: set[str]) -> None:
        self.waker.notify_kinds(kinds)
        self.feed.poke_all()

    def drain(self) -> None:
        """Answer every long poll and watcher now (the coordinator is stopping)."""
        self.waker.close()
        self.feed.close()

    async def close(self) -> None:
        self.drain()
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            await self._run(unsubscribe)
        self._pool.shutdown(wait=True)

    # -- submitting ------------------------------------------------------------------
    async def _blob_sizes(self, refs: tuple[BlobRef, ...]) -> tuple[BlobRef, ...]:
        """The refs with their stored sizes; ``NotFound`` if a blob is not uploaded."""
        if not refs:
            return refs
        check_blob_refs(refs)
        digests = sorted({ref.digest for ref in refs})
        sizes = await asyncio.gather(*(self.blobs.size(d) for d in digests))
        by_digest = dict(zip(digests, sizes, strict=True))
        return tuple(replace(ref, size=by_digest[ref.digest]) for ref in refs)

    async def _checked_spec(self, spec: JobSpec) -> JobSpec:
        check_spec(spec, max_payload=self.max_payload)
        if spec.input_blobs:
            spec = replace(spec, input_blobs=await self._blob_sizes(spec.input_blobs))
        return spec

    async def submit(self, specs: Sequence[JobSpec], *, batch: bool = False) -> list[Submitted]:
        """Validate, check blobs, then create all jobs or none; jobs due now go straight
        to idle lease polls waiting for them, leased in the same transaction."""
        checked: list[JobSpec] = []
        for index, spec in enumerate(specs):
            try:
                checked.append(await self._checked_spec(spec))
            except HearthError as exc:
                raise _in_item(index, exc) if batch else exc from None
        now = self.clock()
        claims = self._claim(checked, now)
        try:
            results = await self._short(self.store.submit, checked, now=now,
                                        new_id=self._new_id,
                                        grants={i: g for i, (_, g) in claims.items()})
        except BaseException:
            for waiter in {w for w, _ in claims.values()}:
                waiter.hand([])
            raise
        if claims:
            await self._hand_over(claims, results)
        created = [r.job for r in results if r.created]
        if created:
            self.waker.notify_jobs(created)
            self.feed.poke(job.id for job in created)
            # Let a woken lease poll take the work and answer its worker before this
            # submit's own answer is built: the job starts sooner, the submitter
            # waits one lease longer.
            await asyncio.sleep(0)
        return results

    def _claim(self, specs: Sequence[JobSpec], now: float) -> dict[int, tuple[Waiter, Grant]]:
        """Idle lease polls for the specs due now, up to each poll's batch size."""
        claims: dict[int, tuple[Waiter, Grant]] = {}
        #: Per (kind, namespace): the waiter being filled and how many it has, or None
        #: once no idle waiter is left for it.
        filling: dict[tuple[str, str], tuple[Waiter, int] | None] = {}
        for index, spec in enumerate(specs):
            due = spec.run_at if spec.run_at is not None else now + spec.delay
            if due > now:
                continue
            key = (spec.kind, spec.namespace)
            if key not in filling:
                waiter = self.waker.claim(*key)
                filling[key] = None if waiter is None else (waiter, 0)
            slot = filling[key]
            if slot is None:
                continue
            waiter, taken = slot
            claims[index] = (waiter, Grant(waiter.worker, self._new_token()))
            if taken + 1 < waiter.max_jobs:
                filling[key] = (waiter, taken + 1)
            else:  # full: the next spec of this kind looks for another waiter
                del filling[key]
        return claims

    async def _hand_over(self, claims: dict[int, tuple[Waiter, Grant]],
                         results: Sequence[Submitted]) -> None:
        """Give each claimed waiter the jobs its grants leased; a waiter whose request
        ended meanwhile gets none, and its jobs are released for the next poll."""
        by_waiter: dict[Waiter, list[Job]] = {}
        for index, (waiter, grant) in claims.items():
            jobs = by_waiter.setdefault(waiter, [])
            res = results[index]
            if res.created and res.job.lease_token == grant.token:
                jobs.append(res.job)
        stranded: list[Job] = []
        for waiter, jobs in by_waiter.items():
            if jobs:
                self._leased(jobs)
            if not waiter.hand(jobs):
                stranded.extend(jobs)
        if stranded:
            await self._release(stranded)

    # -- reading ---------------------------------------------------------------------
    async def get(self, job_id: str) -> Job:
        return await self._short(self.store.get, job_id)

    async def list_jobs(self, flt: JobFilter, *, limit: int = 100,
                        cursor: str | None = None) -> Page:
        return await self._run(self.store.list_jobs, flt, limit=limit, cursor=cursor)

    async def events(self, *, job_id: str | None = None, after: int = 0, limit: int = 1000,
                     namespace: str | None = None) -> list[Event]:
        return await self._run(self.store.events, job_id=job_id, after=after, limit=limit,
                               namespace=namespace)

    async def last_event_seq(self) -> int:
        return await self._short(self.store.last_event_seq)

    async def wait_for(self, job_id: str, timeout: float) -> Job:
        """The job once it is terminal, or as it is after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            ticket = self.feed.job_ticket(job_id)
            try:
                job = await self.get(job_id)
                remaining = give_up - loop.time()
                if job.state.terminal or remaining <= 0 or self.feed.closing:
                    return job
                if self.shared:
                    remaining = min(remaining, SHARED_STORE_RECHECK)
                await asyncio.wait({ticket}, timeout=remaining)
            finally:
                self.feed.drop_ticket(job_id, ticket)

    async def counts(self) -> list[QueueCount]:
        return await self._run(self.store.counts)

    async def ping(self) -> None:
        await self._short(self.store.ping)

    # -- leasing ---------------------------------------------------------------------
    def _lease_sync(self, worker: str, kinds: Sequence[str], limit: int,
                    namespaces: Sequence[str]) -> list[Job]:
        # The clock is read on the store thread, right before the lease is taken.
        return self.store.lease(worker=worker, kinds=kinds, limit=limit, now=self.clock(),
                                new_token=self._new_token, namespaces=namespaces)

    async def _lease_once(self, worker: str, kinds: Sequence[str], limit: int,
                          namespaces: Sequence[str]) -> list[Job]:
        jobs = await self._short(self._lease_sync, worker, kinds, limit, namespaces)
        if jobs:
            self._leased(jobs)
        return jobs

    def _leased(self, jobs: Sequence[Job]) -> None:
        self.metrics.leased(jobs)
        self.feed.poke(job.id for job in jobs)
        if self.lease_listeners:
            soonest = min(job.lease_expires_at or float("inf") for job in jobs)
            for listener in self.lease_listeners:
                listener(soonest)

    async def _release(self, jobs: Sequence[Job]) -> None:
        """Hand leased jobs back at once (their poll went away before they reached it)."""
        by_worker: dict[str, list[FinishItem]] = {}
        for job in jobs:
            by_worker.setdefault(job.worker or "", []).append(
                FinishItem(job.id, job.lease_token or "", "released", None, None))
        for worker, items in by_worker.items():
            await self.finish(items, worker=worker)

    async def lease(self, *, worker: str, kinds: Sequence[str], max_jobs: int,
                    wait: float = 0.0, namespaces: Sequence[str] = (),
                    disconnected: Callable[[], Awaitable[None]] | None = None) -> list[Job]:
        """Lease up to ``max_jobs`` due jobs; if none, wait up to ``wait`` seconds for
        some to be committed or become due. ``disconnected`` completes when the caller
        has gone away: the wait then ends without leasing anything."""
        check_node_name(worker)
        kinds = [check_kind(kind) for kind in dict.fromkeys(kinds)]
        namespaces = [check_namespace(ns) for ns in namespaces]
        if wait <= 0 or self.waker.closing:
            return await self._lease_once(worker, kinds, max_jobs, namespaces)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        # Registered before the first look, so no commit after it goes unnoticed.
        waiter = self.waker.add(kinds, namespaces, max_jobs, worker)
        watch: asyncio.Task[None] | None = None
        try:
            while not waiter.gone:
                waiter.looking()
                jobs = await self._lease_once(worker, kinds, max_jobs, namespaces)
                waiter.looked(len(jobs))
                if jobs or loop.time() >= give_up:
                    return jobs
                due = await self._short(self.store.next_wakeup, kinds=kinds, now=self.clock())
                if due is not None:
                    waiter.rearm(due)
                if watch is None and disconnected is not None:
                    watch = loop.create_task(self._abandon_when(disconnected, waiter))
                await waiter.wait(give_up)
                handed = await waiter.handed()
                if handed:
                    if not waiter.gone:
                        return handed
                    await self._release(handed)
                    return []
            return []
        finally:
            self.waker.remove(waiter)
            if watch is not None:
                watch.cancel()

    @staticmethod
    async def _abandon_when(disconnected: Callable[[], Awaitable[None]], waiter: Waiter
                            ) -> None:
        await disconnected()
        waiter.abandon()

    async def heartbeat(self, items: Sequence[HeartbeatItem], *, worker: str
                        ) -> list[ItemResult]:
        results = await self._short(self.store.heartbeat, items, worker=worker,
                                  now=self.clock())
        changed = [item.job_id for item, res in zip(items, results, strict=True)
                   if res.ok and item.progress is not None]
        if changed:
            self.feed.poke(changed)
        return results

    # -- outcomes --------------------------------------------------------------------
    async def _checked_finish(self, item: FinishItem) -> FinishItem:
        result = item.result
        if item.outcome != "succeeded" or result is None:
            return item
        if len(result.payload) > self.max_payload:
            raise PayloadTooLarge(
                f"the result payload is {len(result.payload)} bytes; the limit is "
                f"{self.max_payload} bytes. Put large results in a blob and return its digest")
        if not result.blobs:
            return item
        result = replace(result, blobs=await self._blob_sizes(result.blobs))
        return replace(item, result=result)

    async def finish(self, items: Sequence[FinishItem], *, worker: str) -> list[ItemResult]:
        """Record outcomes; each item succeeds or fails on its own."""
        answers: list[ItemResult | None] = [None] * len(items)
        todo: list[FinishItem] = []
        where: list[int] = []
        for index, item in enumerate(items):
            try:
                todo.append(await self._checked_finish(item))
                where.append(index)
            except HearthError as exc:
                answers[index] = ItemResult(item.job_id, error=exc)
        if todo:
            results = await self._short(self.store.finish, todo, worker=worker,
                                      now=self.clock(), rand=self._rand)
            for index, res in zip(where, results, strict=True):
                answers[index] = res
            done = [res.job for res in results if res.job is not None and res.ok]
            if done:
                self.waker.notify_jobs(done)
                self.feed.poke(job.id for job in done)
                self.metrics.ended(
                    (job.kind, "released" if job.state is JobState.QUEUED else job.state.value)
                    for job in done)
        return cast(list[ItemResult], answers)  # every index was filled above

    async def cancel(self, job_id: str) -> Job:
        job = await self._short(self.store.cancel, job_id, now=self.clock())
        self.feed.poke((job.id,))
        return job

    async def retry(self, job_id: str) -> Job:
        job = await self._short(self.store.retry, job_id, now=self.clock())
        self.waker.notify_jobs((job,))
        self.feed.poke((job.id,))
        return job

    # -- controllers -----------------------------------------------------------------
    async def expire_leases(self, limit: int = 500) -> list[Job]:
        jobs = await self._short(self.store.expire_leases, now=self.clock(), rand=self._rand,
                               limit=limit)
        self._leases_ended(jobs)
        return jobs

    def _leases_ended(self, jobs: Sequence[Job]) -> None:
        """Leases ended by the coordinator (expired, or their process replaced): wake
        lease polls and watchers, count the outcomes."""
        if not jobs:
            return
        self.waker.notify_jobs(jobs)
        self.feed.poke(job.id for job in jobs)
        self.metrics.ended(
            (job.kind, "expired" if job.state is JobState.FAILED else job.state.value)
            for job in jobs)

    async def next_lease_expiry(self) -> float | None:
        return await self._short(self.store.next_lease_expiry)

    async def purge_finished(self, *, before: float, limit: int = 1000) -> int:
        return await self._run(self.store.purge_finished, before=before, limit=limit)

    async def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        return await self._run(self.store.referenced_digests, digests)

    # -- nodes -----------------------------------------------------------------------
    async def register_node(self, node: Node) -> Node:
        check_node_name(node.name)
        for kind in node.kinds:
            check_kind(kind)
        registered, released = await self._short(self.store.register_node, node,
                                               now=self.clock(), rand=self._rand)
        if released:
            log.warning("worker %s registered as a new process (session %s): the %d "
                        "job(s) its previous process held are expired now, not when "
                        "their leases run out", node.name, node.session[:8], len(released))
        self._leases_ended(released)
        return registered

    async def list_nodes(self) -> list[Node]:
        return await self._run(self.store.list_nodes)
