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
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import coordinator, fresh_store, record
from hearth.domain.jobs import JobSpec
from hearth.ids import new_job_id
from hearth.store import open_store
from hearth.worker import Worker


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


async def measure(url: str, token: str, measured: int, warmup: int) -> float:
    worker = Worker(url, token=token, name="bench", concurrency=256)
    stamps: list[float] = []
    done = asyncio.Event()

    @worker.handler("noop")
    async def noop(ctx) -> None:  # type: ignore[no-untyped-def]
        stamps.append(time.perf_counter())
        if len(stamps) >= warmup + measured:
            done.set()

    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_async(stop))
    await asyncio.wait_for(done.wait(), 900)
    stop.set()
    await task
    window = stamps[warmup + measured - 1] - stamps[warmup]
    return (measured - 1) / window


def run_depth(store: str, depth: int, measured: int, warmup: int) -> float:
    with fresh_store(store) as (store_url, data):
        load_s = preload(store_url, depth)
        print(f"  backlog of {depth:,} loaded in {load_s:.1f}s", flush=True)
        with coordinator(store_url, data) as coord:
            return uvloop.run(measure(coord.url, coord.token, measured, warmup))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--deep", type=int, default=1_000_000)
    parser.add_argument("--shallow", type=int, default=1_000)
    args = parser.parse_args()
    warmup, measured = 100, args.shallow - 100
    shallow = run_depth(args.store, args.shallow, measured, warmup)
    record("backlog", store=args.store, depth=args.shallow, jobs_per_s=shallow)
    deep = run_depth(args.store, args.deep, measured, warmup)
    record("backlog", store=args.store, depth=args.deep, jobs_per_s=deep)
    record("backlog_ratio", store=args.store, deep=args.deep, shallow=args.shallow,
           ratio=deep / shallow)


if __name__ == "__main__":
    main()
