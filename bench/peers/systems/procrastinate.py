"""Procrastinate on PostgreSQL (runs in ``bench/.peers-venv``). ``app`` below is what
the workers load (``procrastinate --app bench.peers.systems.procrastinate.app
worker``); ``import procrastinate`` is the installed package, not this file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import procrastinate

from bench.peers.common import fresh_pg_database, stamp, venv_bin
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


TASK_NAMES = {"noop": "noop", "stamp": "stamp"}

#: Worker processes and the concurrency of each (``procrastinate worker --concurrency``).
PROCESSES = 2
CONCURRENCY = 4


class Procrastinate(System):
    """Two ``procrastinate worker`` processes (one per core) with ``--concurrency 4``
    each (async tasks), on a fresh PostgreSQL database; workers are woken by
    LISTEN/NOTIFY (Procrastinate's default). PostgreSQL shares the same two cores.
    Finished jobs are kept (the default), and completion is the ``succeeded`` count
    of ``JobManager.list_queues()``."""

    name = "procrastinate"
    packages = ("procrastinate", "psycopg", "psycopg-pool")
    bulk_api = "Task.batch_defer(): all jobs in one INSERT"

    def open(self) -> None:
        dsn = self.stack.enter_context(fresh_pg_database("peers_procrastinate"))
        self.env[DSN_ENV] = dsn
        # A producer-side app with no tasks of its own: it defers by name, as a web
        # process that does not import the task code would.
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        self.app.open()
        self.stack.callback(self.app.close)
        self.app.schema_manager.apply_schema()

    def worker_commands(self) -> list[list[str]]:
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
        queues = self.app.job_manager.list_queues(queue=QUEUE)
        return sum(int(q["succeeded"]) for q in queues)
