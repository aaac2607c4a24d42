"""Background controllers of one coordinator: the lease reaper and retention.

The **reaper** expires leases whose time has passed (a worker that vanished, an
attempt past its execution timeout): each counts as a failed attempt with backoff, is
recorded in the job's history and wakes waiting lease polls for the re-queued work.
It sleeps until the earliest lease expiry the store knows of, at most
:data:`REAPER_MAX_SLEEP` (leases granted by other coordinators are not announced
here), and is nudged earlier when this coordinator grants a shorter lease.

**Retention** deletes terminal jobs older than the retention period, then garbage
collects blobs: a blob older than the grace period that no job references is deleted.
The grace period protects a blob uploaded just before the job that will use it.

Controllers never raise out of their loop: a failed round is logged and retried.
They never touch SQL or files directly (only the queue service and the BlobStore).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from hearth.blobs.port import BlobStore
from hearth.engine.service import QueueService

log = logging.getLogger(__name__)

REAPER_MAX_SLEEP = 1.0
#: Seconds to wait after a failed round before trying again.
ERROR_PAUSE = 1.0
GC_CHUNK = 500


class Controller:
    """A named background loop with a clean start and stop."""

    name = "controller"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._guarded(self.run),
                                                            name=self.name)

    async def _guarded(self, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s failed; restarting it in %.0f s", self.name,
                              ERROR_PAUSE)
                await asyncio.sleep(ERROR_PAUSE)

    async def run(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LeaseReaper(Controller):
    name = "lease reaper"

    def __init__(self, service: QueueService, *, batch: int = 500) -> None:
        super().__init__()
        self._service = service
        self._batch = batch
        self._planned: float | None = None  # loop time of the next round
        self._nudge: asyncio.Event | None = None
        service.lease_listeners.append(self.note_expiry)

    def note_expiry(self, at: float) -> None:
        """A lease ending at ``at`` (epoch s) was granted: wake earlier if needed."""
        if self._nudge is None or self._planned is None:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + (at - self._service.clock())
        if when < self._planned:
            self._nudge.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._nudge = asyncio.Event()
        while True:
            self._nudge.clear()
            expired = await self._service.expire_leases(limit=self._batch)
            if expired:
                log.info("expired %d lease(s)", len(expired))
                if len(expired) >= self._batch:
                    continue  # more are waiting
            soonest = await self._service.next_lease_expiry()
            sleep = REAPER_MAX_SLEEP
            if soonest is not None:
                sleep = min(sleep, max(0.0, soonest - self._service.clock()) + 0.001)
            self._planned = loop.time() + sleep
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), sleep)


class Retention(Controller):
    name = "retention controller"

    def __init__(self, service: QueueService, blobs: BlobStore, *, retention: float,
                 interval: float, blob_grace: float, batch: int = 1000) -> None:
        super().__init__()
        self._service = service
        self._blobs = blobs
        self._retention = retention
        self._interval = interval
        self._grace = blob_grace
        self._batch = batch

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval)

    async def run_once(self) -> tuple[int, int]:
        """One round: purge old finished jobs, then unreferenced old blobs."""
        now = self._service.clock()
        purged = 0
        while True:
            n = await self._service.purge_finished(before=now - self._retention,
                                                   limit=self._batch)
            purged += n
            if n < self._batch:
                break
        deleted = await self.collect_blobs(now)
        if purged or deleted:
            log.info("retention removed %d finished job(s) and %d unreferenced blob(s)",
                     purged, deleted)
        return purged, deleted

    async def collect_blobs(self, now: float) -> int:
        cutoff = now - self._grace
        await self._blobs.sweep_incomplete(before=cutoff)
        candidates = await self._blobs.older_than(cutoff)
        deleted = 0
        for start in range(0, len(candidates), GC_CHUNK):
            chunk = candidates[start:start + GC_CHUNK]
            keep = await self._service.referenced_digests(chunk)
            for digest in chunk:
                if digest not in keep and await self._blobs.delete(digest):
                    deleted += 1
        return deleted
