"""The worker runtime: lease jobs, run their handlers, report outcomes, stop cleanly.

The loop is deliberately boring (STYLE #9): a semaphore of ``concurrency`` slots; one
lease request for as many jobs as there are free slots (long-polled); one task per job
whose done-callback frees its slot; outcomes go to the :class:`Outbox` (batched) and
leases are kept alive by :class:`Heartbeats` (batched). An interruption — cancel
requested, timeout, lost lease, shutdown — decides the outcome the moment it happens
(``cancelled``, ``failed``, dropped, ``released``); whatever the handler does later is
ignored.

It never pickles, never logs a payload or a token, and never sends an outcome twice.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from hearth import __version__
from hearth.client import AsyncClient
from hearth.domain.validation import check_node_name
from hearth.errors import Forbidden, HearthError, NotFound, Unauthorized, ValidationError
from hearth.wire import BlobRefIn, ErrorIn, FinishIn, LeaseOut, NodeRegister, ResultIn
from hearth.worker.beats import Heartbeats, Running
from hearth.worker.connect import coordinator_url, rediscover
from hearth.worker.context import JobContext
from hearth.worker.link import Backoff, Link
from hearth.worker.outbox import Outbox
from hearth.worker.outcome import (
    BlobContent,
    JobCancelled,
    blob_source,
    error_in,
    split_return,
    timed_out,
)
from hearth.worker.registry import Registry

if TYPE_CHECKING:  # the bundle reader needs cryptography: only a bundled worker loads it
    from hearth.security.bundle import Bundle

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("hearth.worker")

#: Seconds to wait for interrupted handlers to unwind, and for the last outcomes.
SETTLE = 5.0
FLUSH = 10.0
UPLOAD_TRIES = 5
#: Seconds without the coordinator before a bundle worker looks for it at another
#: address (and between two such looks).
REDISCOVER_AFTER = 10.0


def _check_slots(concurrency: int) -> None:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency must be a whole number of at least 1")


def default_name() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-_") or "worker"
    return f"{host[:50]}-{os.getpid()}"


class Worker:
    """Runs handlers for the job kinds registered with :meth:`handler`."""

    def __init__(self, url: str | None = None, *, token: str | None = None,
                 data: str | os.PathLike[str] | None = None, name: str | None = None,
                 concurrency: int = 8, batch: int | None = None, poll_wait: float = 30.0,
                 grace: float = 30.0, namespaces: Iterable[str] = (),
                 bundle: str | os.PathLike[str] | None = None, addr: str | None = None,
                 mdns: bool = True) -> None:
        _check_slots(concurrency)
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ValidationError("batch must be a whole number of at least 1")
        self._batch_asked = batch
        self.resize(concurrency)
        if not 0 <= poll_wait <= 60:
            raise ValidationError("poll_wait must be between 0 and 60 seconds")
        if grace < 0:
            raise ValidationError("grace must be 0 or more seconds")
        self._url, self._token, self._data = url, token, data
        self._bundle_path: str | os.PathLike[str] | None = None
        self._bundle: Bundle | None = None
        self._addr, self._mdns = addr, mdns
        self.name = check_node_name(name) if name is not None else default_name()
        if bundle is not None:
            self.use_bundle(bundle, addr=addr, mdns=mdns, name=name)
        self.poll_wait = poll_wait
        self.grace = grace
        self.namespaces = list(namespaces)
        self._handlers = Registry()
        self._running: dict[str, Running] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_lock = threading.Lock()
        self._stop_early = False
        self._hurry: asyncio.Event | None = None
        self._rediscovered = 0.0
        #: This process's session: re-registering under it after a coordinator
        #: restart changes nothing; a new process of this name replaces it.
        self._session = secrets.token_hex(8)

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, kinds={self._handlers.kinds!r})"

    # -- configuration ------------------------------------------------------------------

    def use_bundle(self, bundle: str | os.PathLike[str], *, addr: str | None = None,
                   mdns: bool = True, name: str | None = None) -> None:
        """Run as the worker enrolled in ``bundle``: its name, its certificate, and the
        coordinator at ``addr``, else the bundle's addresses, else found over mDNS."""
        from hearth.security.bundle import read_bundle

        found = read_bundle(bundle)
        if name is not None and name != found.name:
            raise ValidationError(
                f"this bundle enrolls worker {found.name!r}, so it runs under that name, "
                f"not {name!r}: drop --name, or enroll {name!r}")
        if found.role != "worker":
            raise ValidationError(
                f"{bundle} is an {found.role} bundle; a worker runs from a worker bundle "
                f"(hearth enroll {found.name})")
        self._bundle_path, self._bundle = bundle, found
        self._addr, self._mdns = addr, mdns
        self.name = found.name

    def resize(self, concurrency: int) -> None:
        """Set the number of slots (before :meth:`run`); the lease batch follows."""
        _check_slots(concurrency)
        self.concurrency = concurrency
        # Half the slots by default: while the jobs of one lease answer run, the next
        # lease request is already on its way, so the slots never wait for a round trip.
        self.batch = min(self._batch_asked or max(1, concurrency // 2), concurrency, 1000)

    def handler(self, kind: str, *, timeout: float | None = None) -> Callable[[F], F]:
        """Register a sync or async function of a :class:`JobContext` for ``kind``."""
        return self._handlers.decorator(kind, timeout)

    # -- running ------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut down gracefully; a
        second signal skips the rest of the grace period. Runs on uvloop where it is
        installed (it is a dependency on Linux and macOS): it roughly halves the time
        from a job's commit to its handler starting."""
        try:
            import uvloop
        except ImportError:
            asyncio.run(self._run_with_signals())
        else:
            uvloop.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._request_stop)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                    pass
        try:
            await self.run_async()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        """Ask a running worker to shut down gracefully (safe from any thread)."""
        with self._stop_lock:
            loop = self._loop
            self._stop_early = loop is None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        if self._stop is None or self._hurry is None:
            return
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()

    async def run_async(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or :meth:`stop` is called), then shut down."""
        if not len(self._handlers):
            raise ValidationError("this worker has no handlers: register one with "
                                  "@worker.handler(\"kind\") before running it")
        self._stop = stop or asyncio.Event()
        self._hurry = asyncio.Event()
        with self._stop_lock:
            self._loop = asyncio.get_running_loop()
            if self._stop_early:  # stop() came before the loop existed
                self._stop.set()
                self._stop_early = False
        self._slots = asyncio.Semaphore(self.concurrency)
        self._executor = (ThreadPoolExecutor(self.concurrency, thread_name_prefix="hearth-job")
                          if self._handlers.any_sync else None)
        url = self._url
        if self._bundle is not None and url is None:
            stop_event = self._stop
            url = await asyncio.to_thread(coordinator_url, self._bundle, addr=self._addr,
                                          mdns=self._mdns, stopped=stop_event.is_set)
            if url is None:
                return  # asked to stop while looking for the coordinator
        async with AsyncClient(url, token=self._token, data=self._data,
                               bundle=self._bundle_path) as client:
            self._client = client
            self._link = Link(client.url, log)
            self._outbox = Outbox(client, self.name, self._link, log)
            self._beats = Heartbeats(client, self.name, self._running, self._link, log,
                                     on_cancel=lambda r: self._interrupt(r, "cancel"),
                                     on_lost=self._lost)
            helpers = [asyncio.create_task(self._outbox.run(), name="hearth-outbox"),
                       asyncio.create_task(self._beats.run(), name="hearth-heartbeats")]
            leaser = asyncio.create_task(self._lease_loop(), name="hearth-lease")
            stopper = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({leaser, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await self._shutdown(leaser, stopper, helpers)
            failure = leaser.exception() if leaser.done() and not leaser.cancelled() else None
            if failure is not None:
                raise failure

    async def _shutdown(self, leaser: asyncio.Task[Any], stopper: asyncio.Task[Any],
                        helpers: list[asyncio.Task[Any]]) -> None:
        for task in (leaser, stopper):
            task.cancel()
        await asyncio.gather(leaser, stopper, return_exceptions=True)
        if self._tasks:
            log.info("stopping: waiting up to %g s for %d running job(s)", self.grace,
                     len(self._tasks), extra={"event": "draining"})
            await self._wait_tasks(self.grace, hurry=True)
        for run in list(self._running.values()):
            self._interrupt(run, "shutdown")
        if self._tasks:
            await self._wait_tasks(SETTLE, hurry=False)
        if not await self._outbox.drain(FLUSH):
            log.error("stopping with %d outcome(s) the coordinator did not receive; their "
                      "leases will expire and the jobs will run again", len(self._outbox),
                      extra={"event": "outcomes_lost"})
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("stopped", extra={"event": "stopped"})

    async def _wait_tasks(self, timeout: float, *, hurry: bool) -> None:
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(asyncio.wait(set(self._tasks)))]
        if hurry and self._hurry is not None:
            waiters.append(asyncio.create_task(self._hurry.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # -- leasing ------------------------------------------------------------------------

    async def _register(self) -> None:
        await self._client.register_node(NodeRegister(
            name=self.name, kinds=self._handlers.kinds, host=socket.gethostname(),
            version=__version__, concurrency=self.concurrency, session=self._session))

    async def _lease_loop(self) -> None:
        backoff = Backoff()
        idle = Backoff()  # empty answers that came back early (poll_wait 0, a restart)
        registered: int | None = None
        kinds = self._handlers.kinds
        while True:
            try:
                if registered != self._link.generation:
                    await self._register()
                    self._link.ok()
                    registered = self._link.generation
                    log.info("worker %s registered for %s at %s", self.name,
                             ", ".join(kinds), self._client.url,
                             extra={"event": "registered"})
                await self._slots.acquire()
                wanted = 1
                while wanted < self.batch and not self._slots.locked():
                    await self._slots.acquire()
                    wanted += 1
                asked = time.monotonic()
                try:
                    leases = await self._client.lease(self.name, kinds, wanted,
                                                      self.poll_wait, self.namespaces)
                except BaseException:
                    for _ in range(wanted):
                        self._slots.release()
                    raise
                for _ in range(wanted - len(leases)):
                    self._slots.release()
                backoff.reset()
                self._link.ok()
                for lease in leases:
                    self._start(lease)
                if leases:
                    # Let the handlers just started run before the next lease request
                    # is built and sent: it would otherwise delay them (about 0.3 ms).
                    await asyncio.sleep(0)
                waited = time.monotonic() - asked
                if leases or (self.poll_wait > 0 and waited >= self.poll_wait / 2):
                    idle.reset()
                else:
                    await asyncio.sleep(idle.next_delay())
            except (Unauthorized, Forbidden, ValidationError):
                raise  # retrying will not help: stop the worker with this error
            except HearthError as exc:
                if not isinstance(exc, NotFound):  # NotFound: re-register, link is up
                    self._link.down(exc)
                registered = None
                await self._rediscover()
                await asyncio.sleep(backoff.next_delay())

    async def _rediscover(self) -> None:
        """A bundle worker whose coordinator stopped answering looks for it elsewhere:
        the bundle's other addresses, then mDNS (its address may have changed)."""
        if self._bundle is None or self._addr or self._url:
            return
        now = time.monotonic()
        since = self._link.down_since
        if since is None or now - since < REDISCOVER_AFTER or (
                now - self._rediscovered < REDISCOVER_AFTER):
            return
        self._rediscovered = now
        found = await asyncio.to_thread(rediscover, self._bundle, self._client.url,
                                        mdns=self._mdns)
        if found is not None:
            log.warning("the coordinator moved: %s answers now instead of %s", found,
                        self._client.url, extra={"event": "coordinator_moved"})
            self._client.retarget(found)
            self._link.url = found

    def _start(self, lease: LeaseOut) -> None:
        loop = asyncio.get_running_loop()
        handler = self._handlers.get(lease.job.kind)
        ctx = JobContext(lease.job, lease.token, self._client, loop)
        if handler is None:  # the coordinator only leases our kinds; be safe anyway
            self._slots.release()
            self._outbox.put(FinishIn(job_id=ctx.id, token=ctx.token, outcome="failed",
                                      error=ErrorIn(message=f"worker {self.name} has no "
                                                    f"handler for kind {ctx.kind!r}",
                                                    type="NoHandler")))
            return
        run = Running(lease, handler, ctx)
        self._running[ctx.id] = run
        self._beats.started(run)
        task = loop.create_task(self._execute(run))
        run.task = task
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, run))
        limit = handler.timeout_for(lease.job.timeout)
        if limit is not None:
            run.timer = loop.call_later(limit, self._interrupt, run, "timeout")

    # -- one job ------------------------------------------------------------------------

    async def _execute(self, run: Running) -> None:
        ctx = run.ctx
        try:
            if run.handler.is_async:
                value = await run.handler.fn(ctx)
            else:
                value = await asyncio.get_running_loop().run_in_executor(
                    self._executor, run.handler.fn, ctx)
                if inspect.isawaitable(value):
                    value = await value
            if run.reported:
                return
            split = split_return(value)
            blobs = await self._upload(split.blobs)
            if blobs:
                split.fields["blobs"] = blobs
            self._report(run, FinishIn(job_id=ctx.id, token=ctx.token, outcome="succeeded",
                                       result=ResultIn(**split.fields)))
        except asyncio.CancelledError:
            if ctx.reason is None:
                raise
        except JobCancelled:
            # The handler stopped its own job (or obeyed a cancel request that the
            # interrupt already reported: then this report is ignored).
            self._report(run, FinishIn(job_id=ctx.id, token=ctx.token, outcome="cancelled"))
        except Exception as exc:
            self._report(run, FinishIn(job_id=ctx.id, token=ctx.token, outcome="failed",
                                       error=error_in(exc)))

    async def _upload(self, blobs: dict[str, BlobContent]) -> list[BlobRefIn]:
        refs = []
        for name, content in blobs.items():
            backoff = Backoff()
            while True:
                try:
                    out = await self._client.put_blob(blob_source(content))
                    break
                except HearthError as exc:
                    if exc.status < 500 or backoff.failures + 1 >= UPLOAD_TRIES:
                        raise
                    await asyncio.sleep(backoff.next_delay())
            refs.append(BlobRefIn(digest=out.digest, name=name))
        return refs

    def _report(self, run: Running, item: FinishIn | None) -> None:
        """Queue the attempt's outcome (``None``: drop it); only the first one counts."""
        if run.reported:
            return
        run.reported = True
        self._running.pop(run.ctx.id, None)
        if run.timer is not None:
            run.timer.cancel()
        if item is not None:
            self._outbox.put(item)

    def _interrupt(self, run: Running, reason: str) -> None:
        """Stop a job for ``reason`` and settle its outcome at once."""
        if run.reported or not run.ctx.interrupt(reason):
            return
        if run.handler.is_async and run.task is not None:
            run.task.cancel()
        ctx = run.ctx
        if reason == "cancel":
            item: FinishIn | None = FinishIn(job_id=ctx.id, token=ctx.token,
                                             outcome="cancelled")
        elif reason == "timeout":
            limit = run.handler.timeout_for(ctx.job.timeout) or 0.0
            item = FinishIn(job_id=ctx.id, token=ctx.token, outcome="failed",
                            error=timed_out(limit))
        elif reason == "shutdown":
            item = FinishIn(job_id=ctx.id, token=ctx.token, outcome="released")
        else:
            item = None
        self._report(run, item)

    def _lost(self, run: Running, why: str) -> None:
        log.info("lost the lease of job %s (%s); stopping its handler", run.ctx.id, why,
                 extra={"event": "lease_lost", "job_id": run.ctx.id})
        self._interrupt(run, "stale")

    def _done(self, run: Running, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        run.ctx.cleanup()
        if run.reported:
            return
        if task.cancelled():
            self._report(run, FinishIn(job_id=run.ctx.id, token=run.ctx.token,
                                       outcome="released"))
            return
        exc = task.exception()
        log.error("the runtime failed while running job %s: %r", run.ctx.id, exc,
                  extra={"event": "runtime_error", "job_id": run.ctx.id})
        self._report(run, FinishIn(job_id=run.ctx.id, token=run.ctx.token, outcome="failed",
                                   error=error_in(exc or RuntimeError("no outcome"))))


__all__ = ["Worker", "default_name"]
