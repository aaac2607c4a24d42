"""The in-process change feed: tells watchers that committed state changed.

The store's event history is the source of truth; this only says "look again".
After every committed change the queue service calls :meth:`ChangeFeed.poke` with the
ids of the jobs it changed. SSE watches wait for any change (a version counter),
``GET /v1/jobs/{id}/wait`` waits for its one job, so a busy queue does not wake every
job waiter on every change. Waiters take their ticket *before* reading the store, so a
change committed in between is never missed.

Runs on the event loop thread only; it never touches the store and never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ChangeFeed:
    def __init__(self) -> None:
        self.version = 0
        self._any: asyncio.Future[None] | None = None
        self._jobs: dict[str, list[asyncio.Future[None]]] = {}
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def waiting_jobs(self) -> int:
        """How many job waits are registered right now."""
        return sum(len(futures) for futures in self._jobs.values())

    def poke(self, job_ids: Iterable[str] = ()) -> None:
        """Committed changes happened (to ``job_ids``, if known)."""
        self.version += 1
        fut, self._any = self._any, None
        if fut is not None:
            _resolve(fut)
        if self._jobs:
            for job_id in job_ids:
                for waiting in self._jobs.pop(job_id, ()):
                    _resolve(waiting)

    def poke_all(self) -> None:
        """Something changed somewhere (another coordinator): every waiter looks again."""
        jobs, self._jobs = self._jobs, {}
        self.poke()
        for futures in jobs.values():
            for fut in futures:
                _resolve(fut)

    async def wait_change(self, seen: int, timeout: float) -> bool:
        """Wait until ``version`` moves past ``seen``; False on timeout."""
        if self.version != seen or self._closing:
            return True
        if self._any is None:
            self._any = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._any), timeout)
        except TimeoutError:
            return False
        return True

    def job_ticket(self, job_id: str) -> asyncio.Future[None]:
        """A future resolved at the next change of ``job_id``; take it before reading."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closing:
            fut.set_result(None)
        else:
            self._jobs.setdefault(job_id, []).append(fut)
        return fut

    def drop_ticket(self, job_id: str, fut: asyncio.Future[None]) -> None:
        futures = self._jobs.get(job_id)
        if futures is not None:
            with contextlib.suppress(ValueError):
                futures.remove(fut)
            if not futures:
                del self._jobs[job_id]

    def close(self) -> None:
        """Shutdown: release every watcher now."""
        self._closing = True
        self.poke_all()
