"""Celery with Redis as broker and result backend (runs in ``bench/.peers-venv``).

This module is also the app the worker imports (``celery -A bench.peers.systems.celery
worker``); ``import celery`` below is the installed package, not this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, group

from bench.peers.common import flush_redis, redis_url, stamp, venv_bin, work
from bench.peers.systems.base import System

REDIS_DB = 10
QUEUE = "peers"

app = Celery("peers", broker=redis_url(REDIS_DB), backend=redis_url(REDIS_DB))
app.conf.update(
    # The reliable settings the Celery docs give: acknowledge after the task ran, so a
    # worker that dies mid-task leaves the message to be redelivered, and reserve only
    # one message per process, so a dead worker holds as little as possible.
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(seq: int) -> None:
    return None


@app.task(name="stamp")
def stamp_task(seq: int) -> None:
    stamp(seq)


@app.task(name="work")
def work_task(seq: int) -> None:
    work(seq)


TASKS = {"noop": noop, "stamp": stamp_task, "work": work_task}


class CeleryRedis(System):
    """One ``celery worker`` with the default prefork pool of 2 child processes (the
    Celery default, one per core) on Redis DB 10, ``task_acks_late=True`` and
    ``worker_prefetch_multiplier=1``. ``--without-mingle --without-gossip``: with a
    single worker there is nobody to synchronise with, and both only cost start-up
    time and broker traffic. Completion is read from the Redis result backend.
    W3 runs two such workers (``-n peers0@%h``, ``peers1@%h``)."""

    name = "celery"
    packages = ("celery", "kombu", "redis")
    bulk_api = "group(...).apply_async(): one publish per job over one producer connection"
    # One delay() per job publishes faster than group().apply_async() here (W1).
    use_bulk = False
    recovery = (
        "acks_late: a message is acknowledged after its task ran, so the messages the "
        "killed worker had reserved stay in the Redis transport's unacked set. Kombu "
        "puts them back on the queue once they are older than the transport's "
        "visibility_timeout (broker_transport_options; default 3,600 s, kept here: the "
        "Celery docs only ask to raise it, above the longest ETA or countdown, and a "
        "lower one redelivers tasks that are still running), checked at worker start "
        "and then every unacked_restore_interval x unacked_restore_throttle (10 x 10 s).")

    def open(self) -> None:
        flush_redis(REDIS_DB)
        self.stack.callback(flush_redis, REDIS_DB)
        self.done: set[str] = set()

    def worker_commands(self, instance: int) -> list[list[str]]:
        return [[venv_bin("celery"), "-A", "bench.peers.systems.celery", "worker",
                 "--pool", "prefork", "--concurrency", "2", "--queues", QUEUE,
                 "--hostname", f"peers{instance}@%h",
                 "--loglevel", "WARNING", "--without-mingle", "--without-gossip"]]

    def enqueue(self, task: str, seq: int) -> Any:
        return TASKS[task].delay(seq).id

    def enqueue_bulk(self, task: str, seqs: Sequence[int]) -> list[Any] | None:
        result = group(TASKS[task].s(seq) for seq in seqs).apply_async()
        return [r.id for r in result.results]

    def count_complete(self, handles: Sequence[Any]) -> int:
        """Successful results, from the result backend's ``get_many`` (one MGET of the
        ids not yet seen complete per call)."""
        pending = [h for h in handles if h not in self.done]
        if pending:
            for task_id, meta in app.backend.get_many(pending, interval=0, max_iterations=1):
                if meta["status"] == "SUCCESS":
                    self.done.add(task_id)
        return sum(1 for h in handles if h in self.done)
