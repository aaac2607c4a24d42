"""Following jobs as they run: the ``submit --wait`` progress bar and ``status --watch``.

Both draw on stderr/the terminal only while something changes, and both stop on
Ctrl-C without a traceback. ``--wait`` long-polls the job (``client.wait`` answers the
moment the job ends, or with its current state after a second, which feeds the bar);
``--watch`` is fed by the coordinator's SSE history feed and re-reads what changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
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
            job = client.wait(job.id, timeout=max(step, 0.05))
            percent = job.progress.percent if job.progress is not None else None
            progress.update(task, description=_describe(job),
                            total=None if percent is None else 100.0,
                            completed=percent or 0.0)
    return job


class _Feed:
    """Reads an event iterator on a daemon thread and flags that something changed.

    The main thread only re-reads state when flagged (coalescing bursts), so a replay
    of a long history costs one refresh, not one per event.
    """

    def __init__(self, events: Callable[[], Iterable[EventOut]]) -> None:
        self.changed = threading.Event()
        self.error: BaseException | None = None
        self.last: EventOut | None = None
        self._events = events
        self._thread = threading.Thread(target=self._run, name="hearth-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._events():
                self.last = event
                self.changed.set()
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc
        finally:
            self.changed.set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


def live(console: Console, render: Callable[[], tuple[RenderableType, bool]],
         events: Callable[[], Iterable[EventOut]], refresh_every: float = 5.0) -> None:
    """Show ``render()`` live, re-rendering whenever ``events`` yields, until Ctrl-C.

    ``render`` returns the renderable and whether to stop (e.g. the watched job ended).
    Errors of the feed (the coordinator went away) are raised here, in the caller.
    """
    feed = _Feed(events)
    body, stop = render()
    with Live(body, console=console, auto_refresh=False, transient=False) as screen:
        if stop:
            return
        feed.start()
        while True:
            # Ages in the table tick even when nothing happens.
            feed.changed.wait(refresh_every)
            feed.changed.clear()
            if feed.error is not None:
                raise feed.error
            body, stop = render()
            screen.update(body, refresh=True)
            if stop or feed.done:
                return


__all__ = ["TERMINAL", "live", "wait_with_progress"]
