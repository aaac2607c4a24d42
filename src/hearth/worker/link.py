"""The worker's view of its coordinator connection: up or down, and how long to wait.

The lease loop, the heartbeats and the outcome flusher all talk to the coordinator;
when it restarts they all fail at once. :class:`Link` logs one line when the
connection goes down and one when it comes back (never one per retry), and tells the
lease loop to register the node again. :func:`retry_delay` is the pure backoff: 0.1 s
doubling to 5 s, with jitter. Neither ever logs a token or a payload.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


def retry_delay(failures: int, rand: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1-based); ``rand`` in
    [0, 1) spreads it by up to ±25 % so a fleet of workers does not retry in step."""
    exponent = min(max(failures, 1) - 1, 16)
    base = min(FIRST_DELAY * 2.0**exponent, MAX_DELAY)
    return min(base * (0.75 + 0.5 * rand), MAX_DELAY)


class Backoff:
    """Consecutive-failure counter for one loop: ``next_delay()`` after each failure,
    ``reset()`` after a success."""

    def __init__(self, rand: Callable[[], float] = random.random) -> None:
        self.failures = 0
        self._rand = rand

    def next_delay(self) -> float:
        self.failures += 1
        return retry_delay(self.failures, self._rand())

    def reset(self) -> None:
        self.failures = 0


class Link:
    """Shared connection state; logs state changes only."""

    def __init__(self, url: str, log: logging.Logger) -> None:
        self.url = url
        self.up = True
        #: Bumped each time the connection comes back; the lease loop re-registers
        #: when it sees a generation it has not registered in.
        self.generation = 0
        #: Monotonic time the connection went down (None while up).
        self.down_since: float | None = None
        self._log = log

    def down(self, reason: Exception) -> None:
        if self.up:
            self.up = False
            self.down_since = time.monotonic()
            self._log.warning("cannot reach the coordinator at %s; retrying until it "
                              "answers: %s", self.url, reason,
                              extra={"event": "coordinator_down"})

    def ok(self) -> None:
        if not self.up:
            self.up = True
            self.down_since = None
            self.generation += 1
            self._log.info("the coordinator at %s answers again", self.url,
                              extra={"event": "coordinator_up"})


__all__ = ["MAX_DELAY", "Backoff", "Link", "retry_delay"]
