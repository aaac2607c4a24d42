"""Submit-to-start latency at idle, through a real coordinator process.

An idle worker long-polls; jobs are submitted one at a time with a small gap; the
handler stamps the time it started (same machine clock) and returns it. Latency is
handler start minus the moment the submit call began. Prints p50/p95/p99.

Usage: python bench/latency.py [--store sqlite|postgres] [--jobs 200] [--gap 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import coordinator, fresh_store, percentile, record
from hearth.client import AsyncClient
from hearth.worker import Worker


async def run(store: str, jobs: int, gap: float) -> None:
    with fresh_store(store) as (store_url, data), coordinator(store_url, data) as coord:
        async with AsyncClient(coord.url, token=coord.token) as client:
            worker = Worker(coord.url, token=coord.token, name="bench", concurrency=8)
            starts: dict[str, float] = {}
            arrived = asyncio.Event()

            @worker.handler("stamp")
            async def stamp(ctx) -> None:  # type: ignore[no-untyped-def]
                starts[ctx.id] = time.time()
                arrived.set()

            stop = asyncio.Event()
            task = asyncio.create_task(worker.run_async(stop))
            # Warm up: the worker registered and one job went through.
            await client.submit("stamp")
            await asyncio.wait_for(arrived.wait(), 30)
            await asyncio.sleep(0.5)
            latencies = []
            for _ in range(jobs):
                arrived.clear()
                began = time.time()
                job = await client.submit("stamp")
                await asyncio.wait_for(arrived.wait(), 30)
                latencies.append((starts[job.id] - began) * 1000)
                await asyncio.sleep(gap)
            stop.set()
            await task
    record("latency", store=store, jobs=jobs, p50_ms=percentile(latencies, 50),
           p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99),
           max_ms=max(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.01)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.store, args.jobs, args.gap))


if __name__ == "__main__":
    main()
