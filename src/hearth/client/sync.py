"""The blocking client, derived from :class:`AsyncClient` rather than copied from it.

A :class:`Portal` owns a private event loop on a daemon thread; each method of
:class:`Client` is made by :func:`blocking` (a coroutine method run on that loop) or
:func:`blocking_iter` (an async iterator stepped on that loop), so the async client
stays the only implementation and signatures and docstrings carry over. A test checks
that every public method of the async client has its blocking twin.

A client that is never closed is closed when it is collected, or at interpreter exit
(``weakref.finalize``): a script that forgets ``close()`` gets no
"Unclosed client session" warning.

It must never run the async client on the caller's own loop: calling it from inside a
running event loop works (the portal's loop is separate) but blocks that loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from hearth.client.asyncclient import AsyncClient

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (a dependency on Linux and macOS): a blocking call's
    trip through the portal's loop is its cheapest there."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Portal:
    """An event loop running on its own daemon thread, for blocking callers."""

    def __init__(self, name: str = "hearth-client") -> None:
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name,
                                        daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run a coroutine on the portal's loop and wait for its answer."""
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("this client is closed; create a new one")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: stop the work on the loop too
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Step an async iterator on the portal's loop, closing it when done."""
        try:
            while True:
                try:
                    yield self.call(_anext(iterator))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                self.call(aclose())

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.call(self._loop.shutdown_asyncgens())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _anext(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


def blocking(fn: Callable[Concatenate[AsyncClient, P], Awaitable[R]]
             ) -> Callable[Concatenate[Client, P], R]:
    """The blocking twin of an ``async def`` method of :class:`AsyncClient`."""

    @functools.wraps(fn)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async def run() -> R:
            return await fn(self._async, *args, **kwargs)

        return self._portal.call(run())

    return method


def blocking_iter(fn: Callable[Concatenate[AsyncClient, P], AsyncIterator[T]]
                  ) -> Callable[Concatenate[Client, P], Iterator[T]]:
    """The blocking twin of an async-generator method of :class:`AsyncClient`."""

    @functools.wraps(fn)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._portal.iterate(fn(self._async, *args, **kwargs))

    return method


def _shut(portal: Portal, client: AsyncClient) -> None:
    """Close ``client``'s connections, then its portal (once; see ``Client.close``)."""
    if portal.on_loop_thread():
        # Collected by the portal's own thread, which cannot wait for itself: the
        # daemon thread and its connections end with the process.
        return
    try:
        portal.call(client.aclose())
    except RuntimeError:
        return  # the loop is closed already
    portal.close()


async def _open(url: str | None, token: str | None, data: str | os.PathLike[str] | None,
                timeout: float, bundle: str | os.PathLike[str] | None) -> AsyncClient:
    return AsyncClient(url, token=token, data=data, timeout=timeout, bundle=bundle)


class Client:
    """The blocking client: the same methods as :class:`AsyncClient`, without ``await``.

    Use as ``with Client() as client:`` (or call :meth:`close`). Iterator methods
    (``iter_jobs``, ``watch``, ``stream_blob``) return ordinary iterators.
    """

    def __init__(self, url: str | None = None, *, token: str | None = None,
                 data: str | os.PathLike[str] | None = None, timeout: float = 30.0,
                 bundle: str | os.PathLike[str] | None = None) -> None:
        self._portal = Portal()
        try:
            self._async = self._portal.call(_open(url, token, data, timeout, bundle))
        except BaseException:
            self._portal.close()
            raise
        self.url = self._async.url
        self.identity = self._async.identity
        self.timeout = timeout
        # Holds the portal and the async client, not this object, so it can run when
        # this object is collected (and at exit, before the interpreter tears down).
        self._shut = weakref.finalize(self, _shut, self._portal, self._async)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the private loop (safe to call twice)."""
        self._shut()

    submit = blocking(AsyncClient.submit)
    submit_many = blocking(AsyncClient.submit_many)
    get = blocking(AsyncClient.get)
    list_jobs = blocking(AsyncClient.list_jobs)
    iter_jobs = blocking_iter(AsyncClient.iter_jobs)
    cancel = blocking(AsyncClient.cancel)
    retry = blocking(AsyncClient.retry)
    events = blocking(AsyncClient.events)
    feed = blocking(AsyncClient.feed)
    wait = blocking(AsyncClient.wait)
    watch = blocking_iter(AsyncClient.watch)
    put_blob = blocking(AsyncClient.put_blob)
    get_blob = blocking(AsyncClient.get_blob)
    stream_blob = blocking_iter(AsyncClient.stream_blob)
    download_blob = blocking(AsyncClient.download_blob)
    nodes = blocking(AsyncClient.nodes)
    health = blocking(AsyncClient.health)
    metrics_text = blocking(AsyncClient.metrics_text)
    register_node = blocking(AsyncClient.register_node)
    lease = blocking(AsyncClient.lease)
    heartbeat = blocking(AsyncClient.heartbeat)
    finish = blocking(AsyncClient.finish)
    whoami = blocking(AsyncClient.whoami)

    def retarget(self, url: str) -> None:
        """Talk to the same coordinator at another address from now on."""
        self._async.retarget(url)
        self.url = self._async.url
    enroll = blocking(AsyncClient.enroll)
    certificates = blocking(AsyncClient.certificates)
    revoke = blocking(AsyncClient.revoke)
    create_token = blocking(AsyncClient.create_token)
    tokens = blocking(AsyncClient.tokens)
    revoke_token = blocking(AsyncClient.revoke_token)


__all__ = ["Client", "Portal", "blocking", "blocking_iter"]
