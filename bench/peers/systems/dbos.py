"""DBOS queues on SQLite and on PostgreSQL (runs in ``bench/.peers-venv``).

DBOS is a library, not a server: a worker is any process that declares the
workflows, calls ``DBOS.launch()`` and registers the queue. ``python -m
bench.peers.systems.dbos`` is that process (``serve()`` below). The driver enqueues
from outside the application with ``DBOSClient``, DBOS's documented way for another
process to enqueue. ``import dbos`` below is the installed package, not this file.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from dbos import DBOS

from bench.peers.common import fresh_pg_database, stamp, work
from bench.peers.systems.base import System

QUEUE = "peers"
URL_ENV = "PEERS_DBOS_URL"
#: Worker processes (each a launched DBOS application).
PROCESSES = 2
#: Threads of each process's workflow executor (DBOS's ``max_executor_threads``).
#: DBOS's default is no limit, and a poll with no queue limits dequeues every queued
#: workflow at once: with 10,000 queued it started a thread for each, drove this
#: 2-core machine's load average past 1,000, and the drain did not finish. A bounded
#: pool leaves the queue as DBOS ships it (no ``worker_concurrency``, which would cap
#: each process at that many workflows per 1 s poll).
EXECUTOR_THREADS = 64


@DBOS.workflow(name="noop")
def noop(seq: int) -> None:
    return None


@DBOS.workflow(name="stamp")
def stamp_workflow(seq: int) -> None:
    stamp(seq)


@DBOS.workflow(name="work")
def work_workflow(seq: int) -> None:
    work(seq)


def serve(executor_id: str) -> None:
    """A worker process: launch DBOS on the system database as ``executor_id`` and
    serve the queue with DBOS's defaults (a 1 s polling interval, no concurrency
    limit) on ``EXECUTOR_THREADS`` threads until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS(config={"name": "peers", "system_database_url": os.environ[URL_ENV],
                 "executor_id": executor_id, "log_level": "WARNING",
                 "max_executor_threads": EXECUTOR_THREADS})
    DBOS.launch()
    DBOS.register_queue(QUEUE)
    stop.wait()
    DBOS.destroy()


class _Dbos(System):
    database: ClassVar[str]
    packages = ("dbos", "SQLAlchemy", "psycopg")
    bulk_api = "none: DBOSClient.enqueue() inserts one workflow per call"
    recovery = (
        "Each worker process is launched with its own executor_id (peers-<instance>-<k>; "
        "the DBOS docs ask for one per process when several serve one system database, "
        "which is also what keeps a restart from taking the other instance's running "
        "workflows). On launch, DBOS re-enqueues the PENDING workflows of its executor "
        "id, so the restarted instance gets its dead predecessor's workflows back at "
        "once; they then run as queue work again (queue polling: 1 s).")

    def open(self) -> None:
        import subprocess

        from dbos import DBOSClient

        if self.database == "sqlite":
            path = self.workdir / "dbos.sqlite"
            path.unlink(missing_ok=True)  # W4 opens twice in one work dir
            url = f"sqlite:///{path}"
        else:
            dsn = self.stack.enter_context(fresh_pg_database("peers_dbos"))
            url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        self.env[URL_ENV] = url
        # The client never migrates: create the system tables as `dbos migrate` does.
        migrate = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "dbos"), "migrate",
             "--sys-db-url", url], env=self.env, capture_output=True, text=True)
        if migrate.returncode:
            raise RuntimeError(f"dbos migrate failed: {migrate.stderr[-2000:]}")
        self.client = DBOSClient(system_database_url=url)
        self.stack.callback(self.client.destroy)
        self.done: set[str] = set()

    def worker_commands(self, instance: int) -> list[list[str]]:
        return [[sys.executable, "-m", "bench.peers.systems.dbos", f"peers-{instance}-{k}"]
                for k in range(PROCESSES)]

    def enqueue(self, task: str, seq: int) -> Any:
        handle = self.client.enqueue({"queue_name": QUEUE, "workflow_name": task}, seq)
        return handle.get_workflow_id()

    def count_complete(self, handles: Sequence[Any]) -> int:
        """Workflows in status SUCCESS. While any are still queued or running (one
        ``list_queued_workflows`` call, cheap as it shrinks) the count is the jobs
        no longer listed; at the end it is checked with ``list_workflows``."""
        queued = self.client.list_queued_workflows(
            queue_name=QUEUE, load_input=False, load_output=False)
        if queued:
            return len(handles) - len(queued)
        succeeded = self.client.list_workflows(
            queue_name=QUEUE, status="SUCCESS", load_input=False, load_output=False)
        return len({w.workflow_id for w in succeeded} & set(handles))


class DbosSqlite(_Dbos):
    """Two worker processes (one per core), each a DBOS application launched on one
    SQLite system database, serving the queue with DBOS's defaults (polled
    every 1 s, no concurrency limit); each runs workflows on 64 executor threads
    (``max_executor_threads``; DBOS's default pool has no bound). W3 runs two such
    pairs of processes."""

    name = "dbos-sqlite"
    database = "sqlite"


class DbosPostgres(_Dbos):
    """Two worker processes (one per core), each a DBOS application launched on a
    fresh PostgreSQL system database, serving the queue with DBOS's defaults
    (polled every 1 s, no concurrency limit); each runs workflows on 64 executor
    threads (``max_executor_threads``; DBOS's default pool has no bound). W3 runs two
    such pairs of processes."""

    name = "dbos-postgres"
    database = "postgres"


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "local")
