"""Huey on SQLite and on Redis (runs in ``bench/.peers-venv``). The two Huey instances
below are what the consumers load (``huey_consumer bench.peers.systems.huey.sqlite_huey``);
``import huey`` is the installed package, not this file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from huey import RedisHuey, SqliteHuey

from bench.peers.common import WORKDIR_ENV, flush_redis, redis_url, stamp, venv_bin, work
from bench.peers.systems.base import System

REDIS_DB = 12
_DIR = Path(os.environ.get(WORKDIR_ENV) or tempfile.gettempdir())

# Results stay on (Huey's default): they are how the harness learns a job finished, so
# the tasks return True (Huey does not store None).
sqlite_huey = SqliteHuey("peers", filename=str(_DIR / "huey.db"))
redis_huey = RedisHuey("peers", url=redis_url(REDIS_DB))


def _tasks(instance: Any) -> dict[str, Any]:
    @instance.task(name="noop")
    def noop(seq: int) -> bool:
        return True

    @instance.task(name="stamp")
    def stamp_task(seq: int) -> bool:
        stamp(seq)
        return True

    @instance.task(name="work")
    def work_task(seq: int) -> bool:
        work(seq)
        return True

    return {"noop": noop, "stamp": stamp_task, "work": work_task}


SQLITE_TASKS = _tasks(sqlite_huey)
REDIS_TASKS = _tasks(redis_huey)


class _Huey(System):
    instance: ClassVar[str]
    packages = ("huey", "redis")
    bulk_api = "none: Huey enqueues one task per storage call"
    recovery = (
        "None: a consumer's dequeue removes the task from storage (RPOP/BRPOP on Redis, "
        "a DELETE on SQLite) and Huey has no acknowledgement, so the tasks a killed "
        "consumer was running are gone. Huey's retries (retries=N) only cover a task "
        "that raised an exception, not a consumer that died.")

    def open(self) -> None:
        self.huey = sqlite_huey if self.instance == "sqlite_huey" else redis_huey
        self.tasks = SQLITE_TASKS if self.instance == "sqlite_huey" else REDIS_TASKS
        self.huey.flush()

    def worker_commands(self, instance: int) -> list[list[str]]:
        return [[venv_bin("huey_consumer"), f"bench.peers.systems.huey.{self.instance}",
                 "--worker-type", "process", "--workers", "2", "--quiet"]]

    def enqueue(self, task: str, seq: int) -> Any:
        return self.tasks[task](seq).id

    def count_complete(self, handles: Sequence[Any]) -> int:
        """Results in Huey's result store (``Huey.result_count()``)."""
        return int(self.huey.result_count())


class HueySqlite(_Huey):
    """One ``huey_consumer`` with 2 worker processes (``-k process -w 2``, one per
    core: with threads, no-op tasks would all run under one GIL) on a SQLite file
    (Huey's ``SqliteHuey``, WAL). The consumer polls SQLite: Huey's defaults are kept
    (first poll after 0.1 s, backing off by 1.15x to at most 10 s while idle).
    W3 runs two such consumers."""

    name = "huey-sqlite"
    instance = "sqlite_huey"


class HueyRedis(_Huey):
    """One ``huey_consumer`` with 2 worker processes (``-k process -w 2``, one per
    core: with threads, no-op tasks would all run under one GIL) on Redis DB 12
    (``RedisHuey``; its default blocking dequeue, BRPOP, wakes a worker at once).
    W3 runs two such consumers."""

    name = "huey-redis"
    instance = "redis_huey"

    def open(self) -> None:
        flush_redis(REDIS_DB)
        self.stack.callback(flush_redis, REDIS_DB)
        super().open()
