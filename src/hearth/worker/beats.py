"""Heartbeats: one batched request keeps every running job's lease alive.

The loop sleeps until the earliest due beat (a third of the shortest lease TTL among
running jobs), then sends one ``POST /v1/leases/heartbeat`` for all of them, carrying
progress that changed since the last beat. The answers say which jobs were cancelled
(``cancel_requested``) and which leases were lost (409/404); the runtime acts on them
through the callbacks. When nothing runs, the loop sleeps until a job starts: no
traffic at all when idle. It never decides an outcome itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.client import AsyncClient
from hearth.errors import HearthError, Unavailable
from hearth.wire import HeartbeatIn, LeaseOut
from hearth.worker.context import JobContext
from hearth.worker.link import Backoff, Link

if TYPE_CHECKING:
    from hearth.worker.registry import Handler


@dataclass(eq=False, slots=True)
class Running:
    """One attempt in progress on this worker."""

    lease: LeaseOut
    handler: Handler
    ctx: JobContext
    task: asyncio.Task[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    #: Monotonic time of the next heartbeat this job needs.
    next_beat: float = 0.0
    #: Version of the last progress a heartbeat delivered.
    progress_sent: int = 0
    #: True once its outcome is queued (or dropped): no more heartbeats, no outcome.
    reported: bool = False
    #: Monotonic time until which the lease is surely held: the send time of the last
    #: accepted heartbeat (or the start) plus the lease TTL. Past it, the coordinator
    #: may have given the job to another worker, so the handler is stopped.
    held_until: float = 0.0

    @property
    def beat_every(self) -> float:
        return self.lease.job.lease_ttl / 3


class Heartbeats:
    """The heartbeat task for the jobs in ``running`` (owned by the runtime)."""

    def __init__(self, client: AsyncClient, worker: str, running: Mapping[str, Running],
                 link: Link, log: logging.Logger, *,
                 on_cancel: Callable[[Running], None],
                 on_lost: Callable[[Running, str], None]) -> None:
        self._client = client
        self._worker = worker
        self._running = running
        self._link = link
        self._log = log
        self._on_cancel = on_cancel
        self._on_lost = on_lost
        self._wake = asyncio.Event()
        self._due: float | None = None
        self._backoff = Backoff()

    def started(self, run: Running) -> None:
        """A job started: wake the loop if it needs a beat sooner than planned."""
        now = time.monotonic()
        run.next_beat = now + run.beat_every
        run.held_until = now + run.lease.job.lease_ttl
        if self._due is None or run.next_beat < self._due:
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._due = min((min(r.next_beat, r.held_until) for r in self._running.values()
                             if not r.reported), default=None)
            if self._due is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            delay = self._due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                continue
            await self.beat()

    async def beat(self) -> None:
        """Send one heartbeat for every running job and act on the answers."""
        now = time.monotonic()
        for run in [r for r in self._running.values() if not r.reported]:
            if now >= run.held_until:
                self._on_lost(run, f"no heartbeat reached the coordinator for "
                                   f"{run.lease.job.lease_ttl:g} s, so the lease has expired "
                                   "there")
        batch = [r for r in self._running.values() if not r.reported]
        if not batch:
            return
        items: list[HeartbeatIn] = []
        versions: list[int] = []
        for run in batch:
            run.next_beat = now + run.beat_every
            progress = run.ctx.progress_since(run.progress_sent)
            if progress is None:
                items.append(HeartbeatIn(job_id=run.ctx.id, token=run.ctx.token))
                versions.append(run.progress_sent)
            else:
                items.append(HeartbeatIn(job_id=run.ctx.id, token=run.ctx.token,
                                         progress=progress[1]))
                versions.append(progress[0])
        # A heartbeat that cannot get through within a third of the shortest lease is
        # useless, and waiting longer would delay noticing that the lease ran out.
        limit = max(1.0, min(r.lease.job.lease_ttl for r in batch) / 3)
        try:
            answers = await asyncio.wait_for(self._client.heartbeat(self._worker, items),
                                             limit)
        except TimeoutError:
            answers = None
            self._link.down(Unavailable(f"a heartbeat got no answer within {limit:g} s"))
        except HearthError as exc:
            if not isinstance(exc, Unavailable) and exc.status < 500:
                self._log.error("the coordinator refused a heartbeat: %s", exc,
                                extra={"event": "heartbeat_refused"})
            else:
                self._link.down(exc)
            soon = time.monotonic() + self._backoff.next_delay()
            for run in batch:
                run.next_beat = min(run.next_beat, soon)
            return
        if answers is None:
            soon = time.monotonic() + self._backoff.next_delay()
            for run in batch:
                run.next_beat = min(run.next_beat, soon)
            return
        self._backoff.reset()
        self._link.ok()
        by_id = {}
        for run, version in zip(batch, versions, strict=True):
            run.progress_sent = version
            by_id[run.ctx.id] = run
        for answer in answers:
            found = by_id.get(answer.job_id)
            if found is None or found.reported:
                continue
            if answer.status == 200:
                found.held_until = now + found.lease.job.lease_ttl
                if answer.cancel_requested:
                    self._on_cancel(found)
            elif answer.status in (404, 409):
                self._on_lost(found, answer.error or answer.code or "stale lease")
            else:
                self._log.warning("heartbeat for job %s answered %d: %s", answer.job_id,
                                  answer.status, answer.error,
                                  extra={"event": "heartbeat_item", "job_id": answer.job_id})


__all__ = ["Heartbeats", "Running"]
