"""RQ on Redis (runs in ``bench/.peers-venv``). The job functions below are what the
RQ workers import (``bench.peers.systems.rq.noop``); ``import rq`` is the installed
package, not this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.peers.common import flush_redis, redis_url, stamp, venv_bin, work
from bench.peers.systems.base import System

REDIS_DB = 11
QUEUE = "peers"


def noop(seq: int) -> None:
    return None


def stamp_job(seq: int) -> None:
    stamp(seq)


def work_job(seq: int) -> None:
    work(seq)


FUNCS = {"noop": noop, "stamp": stamp_job, "work": work_job}
#: W3 jobs are enqueued with ``Retry(max=RETRIES)``: without retries left, RQ moves an
#: abandoned job to the FailedJobRegistry instead of running it again.
RETRIES = 3


class RQ(System):
    """Two ``rq worker`` processes (the default ``rq.Worker``) on Redis DB 11, one per
    core. The default worker forks a work horse for every job, which is what keeps
    a crashing or leaking job from taking the worker down; that fork is RQ's
    documented way of running jobs, so it is kept. Completion is the count of
    RQ's ``FinishedJobRegistry``."""

    name = "rq"
    packages = ("rq", "redis")
    bulk_api = "Queue.enqueue_many(): all jobs in one Redis pipeline"

    def open(self) -> None:
        from redis import Redis
        from rq import Queue
        from rq.registry import FinishedJobRegistry

        flush_redis(REDIS_DB)
        self.stack.callback(flush_redis, REDIS_DB)
        self.redis = Redis.from_url(redis_url(REDIS_DB))
        self.stack.callback(self.redis.close)
        self.queue = Queue(QUEUE, connection=self.redis)
        self.finished = FinishedJobRegistry(queue=self.queue)

    def worker_commands(self, instance: int) -> list[list[str]]:
        command = [venv_bin("rq"), "worker", "--url", redis_url(REDIS_DB),
                   "--logging_level", "WARNING", QUEUE]
        return [command, command]

    def enqueue(self, task: str, seq: int) -> Any:
        from rq import Retry

        retry = Retry(max=RETRIES) if task == "work" else None
        return self.queue.enqueue(FUNCS[task], seq, retry=retry).id

    def enqueue_bulk(self, task: str, seqs: Sequence[int]) -> list[Any] | None:
        from rq import Queue, Retry

        retry = Retry(max=RETRIES) if task == "work" else None
        jobs = self.queue.enqueue_many(
            [Queue.prepare_data(FUNCS[task], (seq,), retry=retry) for seq in seqs])
        return [job.id for job in jobs]

    def count_complete(self, handles: Sequence[Any]) -> int:
        return self.finished.count
