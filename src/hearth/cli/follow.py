"""Following jobs as they run: the ``submit --wait`` progress bar and ``status --watch``.

Both draw only on a terminal and stop on Ctrl-C without a traceback. ``--wait``
long-polls the job a second at a time (``client.wait`` answers the moment the job
ends) and reads its reported progress in between, for the bar. ``--watch`` is fed by
the coordinator's SSE history feed and re-reads what changed; it runs on asyncio so
Ctrl-C cancels the stream cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from hearth.wire import EventOut, JobOut

TERMINAL = frozenset({"succeeded", "dead", "cancelled"})
#: How long one long-poll waits before the bar is refreshed from the job's progress.
POLL_SECONDS = 1.0


def _describe(job: JobOut) -> str:
    text = f"{job.kind} {job.id} [{job.state}]"
    if job.progress is not None and job.progress.message and job.state == "leased":
        text += f" {job.progress.message}"
    return text


def wait_with_progress(client: Any, job: JobOut, timeout: float | None,
                       console: Console) -> JobOut:
    """Block until ``job`` is terminal or ``timeout`` seconds pass; return its last state.

    The bar shows the handler's reported percent (indeterminate until it reports one)
    and is only drawn when ``console`` is a terminal, so piped output stays clean.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task(_describe(job), total=None)
        while job.state not in TERMINAL:
            step = POLL_SECONDS
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    break
            try:
                job = client.wait(job.id, timeout=max(step, 0.05))
            except TimeoutError:
                job = client.get(job.id)
            percent = job.progress.percent if job.progress is not None else None
            progress.update(task, description=_describe(job),
                            total=None if percent is None else 100.0,
                            completed=percent or 0.0)
    return job


async def live(console: Console, render: Callable[[], Awaitable[tuple[RenderableType, bool]]],
               events: AsyncIterator[EventOut], refresh_every: float = 5.0) -> None:
    """Show ``await render()`` live, re-rendering whenever ``events`` yields.

    ``render`` returns the renderable and whether to stop (e.g. the watched job ended).
    Bursts of events (a replayed history) are coalesced into one re-render. Errors of
    the feed (the coordinator went away) are raised here. Run it under
    ``asyncio.run``, which turns Ctrl-C into a clean cancellation of the feed.
    """
    changed = asyncio.Event()

    async def pump() -> None:
        async for _ in events:
            changed.set()

    body, stop = await render()
    try:
        with Live(body, console=console, auto_refresh=False, transient=False) as screen:
            if not stop:
                await _follow(screen, render, pump(), changed, refresh_every)
    finally:
        if not console.is_terminal:
            console.line()  # rich ends the last frame with a newline on terminals only


async def _follow(screen: Live, render: Callable[[], Awaitable[tuple[RenderableType, bool]]],
                  pump: Coroutine[Any, Any, None], changed: asyncio.Event,
                  refresh_every: float) -> None:
    feed = asyncio.create_task(pump, name="hearth-watch")
    try:
        while True:
            # Ages in the table tick even when nothing happens.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), refresh_every)
            changed.clear()
            if feed.done():
                feed.result()  # raises the feed's error, if any
            body, stop = await render()
            screen.update(body, refresh=True)
            if stop or feed.done():
                return
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed


__all__ = ["TERMINAL", "live", "wait_with_progress"]
