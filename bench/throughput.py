"""End-to-end throughput of no-op jobs through a real coordinator process.

Three figures, each on a fresh store:
- enqueue: jobs/s accepted by ``POST /v1/jobs/batch`` (1,000 per request), no worker;
- drain: a worker started after the enqueue; jobs/s from its start until the store
  reports every job succeeded;
- end to end: the worker already idle; jobs/s from the first submit until the store
  reports every job succeeded (submission and execution overlap).

Usage: python bench/throughput.py [--store sqlite|postgres] [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import coordinator, fresh_store, record
from hearth.client import AsyncClient
from hearth.worker import Worker


async def succeeded(client: AsyncClient, kind: str) -> int:
    text = await client.metrics_text()
    total = 0
    for line in text.splitlines():
        if line.startswith("hearth_jobs{") and f'kind="{kind}"' in line and \
                'state="succeeded"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def wait_succeeded(client: AsyncClient, kind: str, n: int, timeout: float,
                         handled: Callable[[], int]) -> None:
    """Wait until the store reports ``n`` succeeded jobs of ``kind``. The store is only
    asked once the handlers have run ``n`` times: /metrics counts every job, and
    polling it during the run would slow down what is being measured."""
    deadline = time.monotonic() + timeout
    while handled() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {handled()} of {n} jobs were handled")
        await asyncio.sleep(0.005)
    while await succeeded(client, kind) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {await succeeded(client, kind)} of {n} jobs finished")
        await asyncio.sleep(0.02)


async def enqueue(client: AsyncClient, kind: str, n: int) -> float:
    started = time.perf_counter()
    for start in range(0, n, 1000):
        await client.submit_many([{"kind": kind} for _ in range(min(1000, n - start))])
    return time.perf_counter() - started


async def run(store: str, jobs: int, concurrency: int) -> None:
    with fresh_store(store) as (store_url, data), coordinator(store_url, data) as coord:
        async with AsyncClient(coord.url, token=coord.token) as client:
            worker = Worker(coord.url, token=coord.token, name="bench", concurrency=concurrency)
            handled = 0

            @worker.handler("noop")
            async def noop(ctx: object) -> None:
                nonlocal handled
                handled += 1

            @worker.handler("noop2")
            async def noop2(ctx: object) -> None:
                nonlocal handled
                handled += 1

            enqueue_s = await enqueue(client, "noop", jobs)
            record("enqueue", store=store, jobs=jobs, jobs_per_s=jobs / enqueue_s)

            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(worker.run_async(stop))
            await wait_succeeded(client, "noop", jobs, 600, lambda: handled)
            drain_s = time.perf_counter() - started
            record("drain", store=store, jobs=jobs, concurrency=concurrency,
                   jobs_per_s=jobs / drain_s, seconds=drain_s)

            started = time.perf_counter()
            handled = 0
            await enqueue(client, "noop2", jobs)
            await wait_succeeded(client, "noop2", jobs, 600, lambda: handled)
            e2e_s = time.perf_counter() - started
            record("end_to_end", store=store, jobs=jobs, concurrency=concurrency,
                   jobs_per_s=jobs / e2e_s, seconds=e2e_s)
            stop.set()
            await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.store, args.jobs, args.concurrency))


if __name__ == "__main__":
    main()
