"""Procrastinate on PostgreSQL (runs in ``bench/.peers-venv``). ``app`` below is what
the workers load (``procrastinate --app bench.peers.systems.procrastinate.app
worker``); ``import procrastinate`` is the installed package, not this file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import procrastinate

from bench.peers.common import (
    WORK_SECONDS,
    fresh_pg_database,
    stamp,
    venv_bin,
    work_finished,
    work_started,
)
from bench.peers.systems.base import System

QUEUE = "peers"
DSN_ENV = "PEERS_PROCRASTINATE_DSN"

# The workers find their fresh database in the environment the adapter gives them. The
# driver defers by task name through an app of its own (see open()).
app = procrastinate.App(connector=procrastinate.PsycopgConnector(
    conninfo=os.environ.get(DSN_ENV, "")))


@app.task(name="noop", queue=QUEUE)
async def noop(seq: int) -> None:
    return None


@app.task(name="stamp", queue=QUEUE)
async def stamp_task(seq: int) -> None:
    stamp(seq)


@app.task(name="work", queue=QUEUE)
async def work_task(seq: int) -> None:
    work_started(seq)
    await asyncio.sleep(WORK_SECONDS)
    work_finished(seq)


# Procrastinate's documented recipe for jobs whose worker died ("retry stalled jobs"),
# as its docs give it: a periodic task every 10 minutes that retries the jobs of
# workers with no heartbeat for 30 s. Production setups run it; so does every workload
# here (it is not counted as a completion).
@app.periodic(cron="*/10 * * * *")
@app.task(name="retry_stalled_jobs", queue=QUEUE, queueing_lock="retry_stalled_jobs")
async def retry_stalled_jobs(timestamp: int) -> None:
    for job in await app.job_manager.get_stalled_jobs():
        await app.job_manager.retry_job(job)


TASK_NAMES = {"noop": "noop", "stamp": "stamp", "work": "work"}

#: Worker processes and the concurrency of each (``procrastinate worker --concurrency``).
PROCESSES = 2
CONCURRENCY = 4


class Procrastinate(System):
    """Two ``procrastinate worker`` processes (one per core) with ``--concurrency 4``
    each (async tasks), on a fresh PostgreSQL database; workers are woken by
    LISTEN/NOTIFY (Procrastinate's default). PostgreSQL shares the same two cores.
    Finished jobs are kept (the default), and completion is the ``succeeded`` count
    of the benchmark's tasks in ``JobManager.list_tasks()``. W3 runs two such pairs
    of worker processes."""

    name = "procrastinate"
    packages = ("procrastinate", "psycopg", "psycopg-pool")
    bulk_api = "Task.batch_defer(): all jobs in one INSERT"
    recovery = (
        "A killed worker's jobs stay in status doing. Workers heartbeat every 10 s "
        "(update_heartbeat_interval); the docs' retry_stalled_jobs recipe, registered "
        "here as they give it (a periodic task, cron */10 * * * *), retries the jobs of "
        "workers silent for 30 s. So they come back at the first 10-minute tick at "
        "least 30 s after the kill.")

    def open(self) -> None:
        dsn = self.stack.enter_context(fresh_pg_database("peers_procrastinate"))
        self.env[DSN_ENV] = dsn
        # A producer-side app with no tasks of its own: it defers by name, as a web
        # process that does not import the task code would.
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        self.app.open()
        self.stack.callback(self.app.close)
        self.app.schema_manager.apply_schema()

    def worker_commands(self, instance: int) -> list[list[str]]:
        command = [venv_bin("procrastinate"), "--app", "bench.peers.systems.procrastinate.app",
                   "--log-level", "warning", "worker", "--queues", QUEUE,
                   "--concurrency", str(CONCURRENCY)]
        return [command] * PROCESSES

    def _task(self, task: str) -> Any:
        return self.app.configure_task(TASK_NAMES[task], queue=QUEUE)

    def enqueue(self, task: str, seq: int) -> Any:
        return self._task(task).defer(seq=seq)

    def enqueue_bulk(self, task: str, seqs: Sequence[int]) -> list[Any] | None:
        return list(self._task(task).batch_defer(*({"seq": seq} for seq in seqs)))

    def count_complete(self, handles: Sequence[Any]) -> int:
        tasks = self.app.job_manager.list_tasks(queue=QUEUE)
        return sum(int(t["succeeded"]) for t in tasks if t["name"] in TASK_NAMES)
