"""Wake-ups for long-polling lease requests, so no waiting worker polls on a timer.

A waiting ``POST /v1/leases`` registers a :class:`Waiter` for its kinds. Whoever
commits leasable work (submit, release, retry, lease expiry, a NOTIFY from another
coordinator) calls :meth:`Waker.notify`:

- work due **now** wakes the oldest matching waiters until their batch sizes cover the
  number of new jobs (no thundering herd on every submit). A woken waiter that could
  not look (its client left, the store failed) or that filled its whole batch (more may
  be waiting) passes the wake-up on to another waiter, so work is never stranded;
- work due **later** re-arms the timers of waiters planning to wake later than that,
  so a delayed job or a retry after backoff is picked up within a few ms of its due
  time, without asking the store again.

A submit can also hand its new jobs straight to a waiter that is idle (waiting, not
woken: its last look found nothing): :meth:`Waker.claim` reserves the waiter, the
submit's own transaction leases the jobs to it, and :meth:`Waiter.hand` gives it
the result, so the job skips a second transaction and the wake-up hop (Temporal's
matching service calls this a *sync match*). A claimed waiter is not woken by
:meth:`Waker.notify`, and it does not stop waiting until the claim is settled.

Everything here runs on the event loop thread; other threads must hop over with
``loop.call_soon_threadsafe``. It never touches the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from hearth.domain.jobs import LEASABLE_STATES, Job

#: Seconds a timer is set past a job's due time, so it never fires a hair early.
TIMER_SLACK = 0.001


class Waiter:
    """One waiting lease request."""

    __slots__ = ("_claim", "_clock", "_fut", "_loop", "_timer", "_timer_at", "_woken", "due",
                 "gone", "kinds", "max_jobs", "namespaces", "owes", "removed", "worker")

    def __init__(self, clock: Callable[[], float], kinds: Sequence[str],
                 namespaces: Sequence[str], max_jobs: int, worker: str = "") -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = clock
        self.worker = worker
        self.kinds = tuple(kinds)
        self.namespaces = frozenset(namespaces)
        self.max_jobs = max_jobs
        #: Epoch seconds the waiter plans to look again (earliest known due time).
        self.due: float | None = None
        self.gone = False
        #: Woken for work due now and has not yet looked at the store since.
        self.owes = False
        self._woken = False
        self._fut: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        #: Jobs a submit is leasing to this waiter in its own transaction.
        self._claim: asyncio.Future[list[Job]] | None = None
        #: Unregistered: its request has ended, a hand-over can no longer reach it.
        self.removed = False

    @property
    def idle(self) -> bool:
        """Waiting with nothing owed or claimed: its last look found no work."""
        fut = self._fut
        return (fut is not None and not fut.done() and not self._woken and not self.gone
                and self._claim is None and not self.removed)

    @property
    def claimed(self) -> bool:
        """A submit is leasing jobs to this waiter right now."""
        return self._claim is not None and not self._claim.done()

    def claim(self) -> None:
        """Reserve this idle waiter for jobs a submit is about to lease to it."""
        self._claim = self._loop.create_future()

    def hand(self, jobs: list[Job]) -> bool:
        """Settle the claim with the jobs leased to this waiter (possibly none). False
        when the request has already ended: the caller must release the jobs."""
        claim = self._claim
        if claim is not None and not claim.done():
            claim.set_result(jobs)
        self.wake(owed=False)
        return not self.removed

    async def handed(self) -> list[Job]:
        """The jobs of a claim made while this waiter waited (none if unclaimed)."""
        claim = self._claim
        if claim is None:
            return []
        try:
            return await claim
        finally:
            self._claim = None

    def matches(self, namespace: str | None) -> bool:
        return namespace is None or not self.namespaces or namespace in self.namespaces

    def looking(self) -> None:
        """Called right before a lease attempt: wake-ups from now on count again."""
        self._woken = False
        self.due = None

    def looked(self, leased: int) -> None:
        """After a lease attempt: a full batch may have left more work behind."""
        self.owes = self.owes and leased >= self.max_jobs

    def wake(self, *, owed: bool = True) -> None:
        self.owes = self.owes or owed
        self._woken = True
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def abandon(self) -> None:
        """The client went away (or the coordinator is stopping): stop waiting."""
        self.gone = True
        self.wake(owed=False)

    def rearm(self, at: float) -> None:
        """Wake at epoch time ``at`` if that is earlier than planned."""
        if self.due is not None and at >= self.due:
            return
        self.due = at
        if self._fut is not None:
            when = self._loop.time() + max(0.0, at - self._clock()) + TIMER_SLACK
            if when < self._timer_at:
                self._set_timer(when)

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, _resolve, self._fut)

    async def wait(self, until: float) -> None:
        """Until woken, or loop time ``until``, or ``due`` (whichever is first)."""
        if self._woken or self.gone:
            return
        if self.due is not None:
            until = min(until, self._loop.time() + max(0.0, self.due - self._clock())
                        + TIMER_SLACK)
        if until <= self._loop.time():
            return
        self._fut = self._loop.create_future()
        self._set_timer(until)
        try:
            await self._fut
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._fut, self._timer = None, None


def _resolve(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class Waker:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        #: Per kind, waiters in arrival order (a dict used as an ordered set).
        self._by_kind: dict[str, dict[Waiter, None]] = {}
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def waiting(self) -> int:
        """How many lease polls are waiting right now."""
        return len({w for group in self._by_kind.values() for w in group})

    def add(self, kinds: Sequence[str], namespaces: Sequence[str] = (),
            max_jobs: int = 1, worker: str = "") -> Waiter:
        waiter = Waiter(self._clock, kinds, namespaces, max_jobs, worker)
        if self._closing:
            waiter.abandon()
        for kind in waiter.kinds:
            self._by_kind.setdefault(kind, {})[waiter] = None
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Unregister; a wake-up the waiter still owes goes to another waiter."""
        waiter.removed = True
        for kind in waiter.kinds:
            group = self._by_kind.get(kind)
            if group is not None:
                group.pop(waiter, None)
                if not group:
                    del self._by_kind[kind]
        if waiter.owes and not self._closing:
            waiter.owes = False
            for kind in waiter.kinds:
                self.notify(kind, count=1)

    def notify(self, kind: str, at: float | None = None, namespace: str | None = None,
               count: int | None = None) -> None:
        """``count`` jobs of ``kind`` (None: an unknown number) became leasable, now
        (``at`` None or past) or at epoch time ``at``."""
        group = self._by_kind.get(kind)
        if not group:
            return
        if at is not None and at > self._clock():
            for waiter in tuple(group):
                if waiter.matches(namespace):
                    waiter.rearm(at)
            return
        for waiter in tuple(group):
            if not waiter.matches(namespace) or waiter.claimed:
                continue
            waiter.wake()
            if count is not None:
                count -= waiter.max_jobs
                if count <= 0:
                    return

    def claim(self, kind: str, namespace: str) -> Waiter | None:
        """The longest-waiting idle waiter for ``kind`` in ``namespace``, reserved for a
        hand-over (see :meth:`Waiter.claim`), or None."""
        for waiter in self._by_kind.get(kind, ()):
            if waiter.idle and waiter.matches(namespace):
                waiter.claim()
                return waiter
        return None

    def notify_kinds(self, kinds: Iterable[str]) -> None:
        """Work of ``kinds`` became leasable somewhere; an empty set means "any kind"
        (after a reconnect that may have missed notifications)."""
        for kind in set(kinds) or tuple(self._by_kind):
            self.notify(kind)

    def notify_jobs(self, jobs: Iterable[Job]) -> None:
        """Wake waiters for the leasable jobs among ``jobs``."""
        now = self._clock()
        due_now: dict[tuple[str, str], int] = {}
        later: dict[tuple[str, str], float] = {}
        for job in jobs:
            if job.state not in LEASABLE_STATES:
                continue
            key = (job.kind, job.namespace)
            if job.run_at <= now:
                due_now[key] = due_now.get(key, 0) + 1
            elif key not in later or job.run_at < later[key]:
                later[key] = job.run_at
        for (kind, namespace), n in due_now.items():
            self.notify(kind, None, namespace, count=n)
        for (kind, namespace), at in later.items():
            self.notify(kind, at, namespace)

    def close(self) -> None:
        """Release every waiter (shutdown): long polls answer with what they have."""
        self._closing = True
        for group in tuple(self._by_kind.values()):
            for waiter in tuple(group):
                waiter.abandon()
