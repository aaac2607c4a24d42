"""Built-in handlers, for trying Hearth out and for testing a deployment end to end.

``echo`` returns its payload unchanged (bytes stay bytes, JSON stays JSON); ``sleep``
waits, reporting progress every second and stopping promptly when cancelled. They
are what ``hearth up`` runs, and any worker can add them::

    hearth worker --import hearth.builtins

They must stay dependency-free and harmless: no files, no network, no shell.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from hearth.worker import JobContext, NonRetryable, Worker

KINDS = ("echo", "sleep")


def echo(ctx: JobContext) -> Any:
    """Give the payload back as the result, in the form it came (JSON or bytes)."""
    return ctx.payload


def sleep_seconds(payload: Any) -> float:
    """Seconds to sleep from ``{"seconds": N}``, a JSON number, or bytes such as ``b"3"``."""
    value = payload
    if isinstance(payload, dict):
        value = payload.get("seconds")
    elif isinstance(payload, bytes):
        try:
            value = float(payload.decode("utf-8").strip().removesuffix("s"))
        except (UnicodeDecodeError, ValueError):
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise NonRetryable(
            'sleep needs a number of seconds (0 or more): give --json \'{"seconds": 5}\', '
            "--json 5 or --payload 5")
    return float(value)


async def sleep(ctx: JobContext) -> dict[str, float]:
    """Sleep for the requested seconds, one second at a time, honouring cancellation."""
    seconds = sleep_seconds(ctx.payload)
    started = time.monotonic()
    while True:
        elapsed = min(time.monotonic() - started, seconds)
        percent = 100.0 if seconds == 0 else elapsed * 100.0 / seconds
        ctx.report_progress(percent, f"slept {elapsed:.0f} of {seconds:g} s")
        ctx.raise_if_cancelled()
        left = seconds - elapsed
        if left <= 0:
            return {"slept": seconds}
        await asyncio.sleep(min(1.0, left))


def register(worker: Worker) -> None:
    """Add the built-in handlers to ``worker``."""
    worker.handler("echo")(echo)
    worker.handler("sleep")(sleep)


__all__ = ["KINDS", "echo", "register", "sleep", "sleep_seconds"]
