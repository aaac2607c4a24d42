"""Leasing throughput with a deep backlog versus a shallow one.

The backlog is loaded straight into a fresh store (the coordinator is not running
yet: loading a million jobs over HTTP would only measure the loader). Then a real
coordinator process starts and an in-process worker leases and completes jobs; the
rate is measured over the handler starts after a warm-up, for the same number of jobs
at each depth. The claim is that leasing cost does not grow with the queue.

Usage: python bench/backlog.py [--store sqlite|postgres] [--deep 1000000] [--shallow 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import coordinator, fresh_store, record
from hearth.client import AsyncClient
from hearth.domain.jobs import JobSpec
from hearth.ids import new_job_id
from hearth.store import open_store
from hearth.worker import Worker

REFILL = 200


def preload(store_url: str, n: int) -> float:
    store = open_store(store_url)
    started = time.perf_counter()
    try:
        now = time.time()
        for start in range(0, n, 5000):
            count = min(5000, n - start)
            store.submit([JobSpec(kind="noop")] * count, now=now, new_id=new_job_id)
            if n >= 100_000 and (start // 5000) % 20 == 0:
                print(f"  loaded {start + count:,} / {n:,}", flush=True)
    finally:
        store.close()
    return time.perf_counter() - started


async def measure(url: str, token: str, window: int, windows: int, warmup: int
                  ) -> list[float]:
    """Steady state at a fixed depth: every job handled is replaced by a new one
    (submitted in batches of ``REFILL``), so the queue stays at its depth and both
    depths carry exactly the same submit load. Returns the rate of each window of
    ``window`` handler starts after ``warmup`` jobs."""
    worker = Worker(url, token=token, name="bench", concurrency=256)
    stamps: list[float] = []
    done = asyncio.Event()
    refill = asyncio.Event()
    wanted = warmup + window * windows

    @worker.handler("noop")
    async def noop(ctx) -> None:  # type: ignore[no-untyped-def]
        stamps.append(time.perf_counter())
        if len(stamps) % REFILL == 0:
            refill.set()
        if len(stamps) >= wanted:
            done.set()

    async def feeder(client: AsyncClient) -> None:
        submitted = 0
        while not done.is_set():
            await refill.wait()
            refill.clear()
            while submitted + REFILL <= len(stamps):
                await client.submit_many([{"kind": "noop"}] * REFILL)
                submitted += REFILL

    stop = asyncio.Event()
    async with AsyncClient(url, token=token) as client:
        feeding = asyncio.create_task(feeder(client))
        task = asyncio.create_task(worker.run_async(stop))
        await asyncio.wait_for(done.wait(), 900)
        stop.set()
        refill.set()
        await task
        await feeding
    rates = []
    for w in range(windows):
        first, last = warmup + w * window, warmup + (w + 1) * window - 1
        rates.append((window - 1) / (stamps[last] - stamps[first]))
    return rates


def run_depth(store: str, depth: int, window: int, windows: int, warmup: int) -> list[float]:
    with fresh_store(store) as (store_url, data):
        load_s = preload(store_url, depth)
        print(f"  backlog of {depth:,} loaded in {load_s:.1f}s", flush=True)
        with coordinator(store_url, data) as coord:
            return uvloop.run(measure(coord.url, coord.token, window, windows, warmup))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--deep", type=int, default=1_000_000)
    parser.add_argument("--shallow", type=int, default=1_000)
    args = parser.parse_args()
    warmup, window, windows = 2000, 5000, 5
    shallow_rates = run_depth(args.store, args.shallow, window, windows, warmup)
    deep_rates = run_depth(args.store, args.deep, window, windows, warmup)
    shallow, deep = statistics.median(shallow_rates), statistics.median(deep_rates)
    record("backlog", store=args.store, depth=args.shallow, jobs_per_s=shallow,
           runs=[round(r) for r in shallow_rates])
    record("backlog", store=args.store, depth=args.deep, jobs_per_s=deep,
           runs=[round(r) for r in deep_rates])
    record("backlog_ratio", store=args.store, deep=args.deep, shallow=args.shallow,
           ratio=deep / shallow)


if __name__ == "__main__":
    main()
