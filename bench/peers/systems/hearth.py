"""Hearth, run as users run it: a real ``hearth coordinator`` process on a fresh store
and real ``hearth worker --import bench.peers.systems.hearth`` processes, driven
through the public :class:`hearth.Client` (runs in the project's ``.venv``).

This module is also what the worker processes import: its ``register(worker)`` adds
the two handlers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bench.peers.common import stamp, venv_bin
from bench.peers.systems.base import System

#: Job slots of the one worker process (``hearth worker --concurrency``).
CONCURRENCY = 256


async def _noop(ctx: Any) -> None:
    return None


async def _stamp(ctx: Any) -> None:
    stamp(ctx.payload)


def register(worker: Any) -> None:
    """Called by ``hearth worker --import bench.peers.systems.hearth``."""
    worker.handler("noop")(_noop)
    worker.handler("stamp")(_stamp)


class _Hearth(System):
    store: ClassVar[str]
    packages = ("hearth", "uvloop", "httpx", "SQLAlchemy", "psycopg")
    bulk_api = "Client.submit_many (POST /v1/jobs/batch, 1,000 jobs per request)"

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

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("hearth"), "worker", "--import", "bench.peers.systems.hearth",
                 "--concurrency", str(CONCURRENCY), "--log-level", "warning"]]

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
    other; more slots only mean larger lease batches (no-op handlers never block)."""

    name = "hearth-sqlite"
    store = "sqlite"


class HearthPostgres(_Hearth):
    """One ``hearth coordinator`` process on a fresh PostgreSQL database and one
    ``hearth worker`` process with 256 job slots (async handlers): the coordinator
    and PostgreSQL share one core's worth of work, one worker process the other."""

    name = "hearth-postgres"
    store = "postgres"
