"""The worker side of Hearth: register handlers by kind and run them.

    from hearth.worker import Worker

    worker = Worker()

    @worker.handler("echo")
    async def echo(ctx):
        return ctx.payload

    worker.run()

Handlers return JSON values, bytes or :class:`Output` (with output blobs); raising
fails the attempt (retried with backoff), raising :class:`NonRetryable` fails the job
for good.
"""

from __future__ import annotations

from hearth.worker.context import JobContext
from hearth.worker.outcome import Fatal, JobCancelled, NonRetryable, Output
from hearth.worker.quick import run_worker
from hearth.worker.runtime import Worker

__all__ = [
    "Fatal",
    "JobCancelled",
    "JobContext",
    "NonRetryable",
    "Output",
    "Worker",
    "run_worker",
]
