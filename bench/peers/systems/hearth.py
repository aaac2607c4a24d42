"""Hearth, run as users run it: a real ``hearth coordinator`` process on a fresh store
and real ``hearth worker --import bench.peers.systems.hearth`` processes, driven
through the public :class:`hearth.Client` (runs in the project's ``.venv``).

This module is also what the worker processes import: its ``register(worker)`` adds
the three handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from bench.peers.common import WORK_SECONDS, stamp, venv_bin, work_finished, work_started
from bench.peers.systems.base import System

#: Job slots of the one worker process (``hearth worker --concurrency``); a worker
#: leases in batches of half its slots.
CONCURRENCY = 256


async def _noop(ctx: Any) -> None:
    return None


async def _stamp(ctx: Any) -> None:
    stamp(ctx.payload)


async def _work(ctx: Any) -> None:
    work_started(ctx.payload)
    await asyncio.sleep(WORK_SECONDS)
    work_finished(ctx.payload)


def register(worker: Any) -> None:
    """Called by ``hearth worker --import bench.peers.systems.hearth``."""
    worker.handler("noop")(_noop)
    worker.handler("stamp")(_stamp)
    worker.handler("work")(_work)


class _Hearth(System):
    store: ClassVar[str]
    concurrency: ClassVar[int] = CONCURRENCY
    packages = ("hearth", "uvloop", "aiohttp", "SQLAlchemy", "psycopg")
    bulk_api = "Client.submit_many (POST /v1/jobs/batch, 1,000 jobs per request)"
    backlog_required = True
    recovery = (
        "Each instance runs as `hearth worker --name peers-<instance>` (what a supervisor "
        "restarting a named worker, or an enrolled bundle's fixed name, gives). The "
        "restarted process registers under a new session, and the coordinator expires "
        "every lease the dead process of that name held at once (WorkerRestarted); "
        "each such job is retried after the default backoff (1 s +- 10 %). Without a "
        "stable name the leases would run out after the job's lease_ttl (30 s default).")

    def open(self) -> None:
        from bench.common import coordinator, fresh_store
        from hearth import Client

        store_url, data = self.stack.enter_context(fresh_store(self.store))
        coord = self.stack.enter_context(coordinator(store_url, data))
        self.client = Client(coord.url, token=coord.token)
        self.stack.callback(self.client.close)
        # The worker finds the coordinator through the environment, so the token never
        # shows in a process listing.
        self.env.update(HEARTH_URL=coord.url, HEARTH_TOKEN=coord.token)

    def worker_commands(self, instance: int) -> list[list[str]]:
        return [[venv_bin("hearth"), "worker", "--import", "bench.peers.systems.hearth",
                 "--concurrency", str(self.concurrency), "--name", f"peers-{instance}",
                 "--log-level", "warning"]]

    def enqueue(self, task: str, seq: int) -> Any:
        return self.client.submit(task, seq).id

    def enqueue_bulk(self, task: str, seqs: Sequence[int]) -> list[Any] | None:
        return [job.id for job in self.client.submit_many(
            [{"kind": task, "payload": seq} for seq in seqs])]

    def count_complete(self, handles: Sequence[Any]) -> int:
        """Succeeded jobs of any kind in the store, from ``GET /metrics``
        (``hearth_jobs{state="succeeded"}``); the store is fresh for each run."""
        total = 0
        for line in self.client.metrics_text().splitlines():
            if line.startswith("hearth_jobs{") and 'state="succeeded"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


class HearthSqlite(_Hearth):
    """One ``hearth coordinator`` process on a SQLite file (the default store) and one
    ``hearth worker`` process with 256 job slots (async handlers), as in ``bench/``:
    the coordinator needs one of the two cores, and one worker process fills the
    other; more slots only mean larger lease batches (no-op handlers never block).
    W3 runs two such worker processes, one per instance."""

    name = "hearth-sqlite"
    store = "sqlite"


class HearthPostgres(_Hearth):
    """One ``hearth coordinator`` process on a fresh PostgreSQL database and one
    ``hearth worker`` process with 512 job slots (async handlers): the coordinator
    and PostgreSQL share one core's worth of work, one worker process the other.
    512 slots make lease and outcome batches of 256: each batch is a few statements
    whatever its size, and at 128 the per-statement cost showed (W1 drain ~2,500 ->
    ~3,400 jobs/s here). W3 runs two such worker processes, one per instance."""

    name = "hearth-postgres"
    store = "postgres"
    concurrency = 512
