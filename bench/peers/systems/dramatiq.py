"""Dramatiq on Redis, with the Results middleware on Redis (runs in
``bench/.peers-venv``). This module is what the workers import
(``dramatiq bench.peers.systems.dramatiq``); ``import dramatiq`` is the installed
package, not this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from bench.peers.common import flush_redis, redis_url, stamp, venv_bin, work
from bench.peers.systems.base import System

REDIS_DB = 13
QUEUE = "peers"

results = RedisBackend(url=redis_url(REDIS_DB))
broker = RedisBroker(url=redis_url(REDIS_DB))
broker.add_middleware(Results(backend=results))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=QUEUE, store_results=True)
def noop(seq: int) -> bool:
    return True


@dramatiq.actor(actor_name="stamp", queue_name=QUEUE, store_results=True)
def stamp_actor(seq: int) -> bool:
    stamp(seq)
    return True


@dramatiq.actor(actor_name="work", queue_name=QUEUE, store_results=True)
def work_actor(seq: int) -> bool:
    work(seq)
    return True


ACTORS = {"noop": noop, "stamp": stamp_actor, "work": work_actor}


class DramatiqRedis(System):
    """``dramatiq`` with its defaults for this machine: 2 worker processes (one per
    core, Dramatiq's default) of 8 threads each, on Redis DB 13. Messages are acked
    after the actor ran and a dead worker's unacked messages are requeued (the Redis
    broker's default behaviour). Completion is read from the Results middleware's
    Redis backend. W3 runs two such ``dramatiq`` commands."""

    name = "dramatiq"
    packages = ("dramatiq", "redis")
    bulk_api = "none: group().run() sends one message per broker call"
    recovery = (
        "Acks after the actor ran: the messages a killed worker process had fetched "
        "stay in its per-worker ack set. The Redis broker's maintenance, run with a "
        "chance of maintenance_chance (1,000) in a million on every broker command, "
        "moves the unacked messages of workers whose heartbeat is older than "
        "heartbeat_timeout (60 s) back to the queue. Defaults kept.")

    def open(self) -> None:
        flush_redis(REDIS_DB)
        self.stack.callback(flush_redis, REDIS_DB)
        self.done: set[str] = set()

    def worker_commands(self, instance: int) -> list[list[str]]:
        return [[venv_bin("dramatiq"), "bench.peers.systems.dramatiq",
                 "--processes", "2", "--threads", "8", "--queues", QUEUE]]

    def enqueue(self, task: str, seq: int) -> Any:
        return ACTORS[task].send(seq)

    def count_complete(self, handles: Sequence[Any]) -> int:
        """Successful results in the Results backend, for the messages not yet seen
        complete: one pipelined read of their result keys per call."""
        pending = [m for m in handles if m.message_id not in self.done]
        if pending:
            with results.client.pipeline(transaction=False) as pipe:
                for message in pending:
                    pipe.lindex(results.build_message_key(message), 0)
                found = pipe.execute()
            for message, data in zip(pending, found, strict=True):
                if data is None:
                    continue
                try:
                    results.unwrap_result(results.encoder.decode(data))
                except Exception:  # a stored failure is not a completion
                    continue
                self.done.add(message.message_id)
        return sum(1 for m in handles if m.message_id in self.done)
