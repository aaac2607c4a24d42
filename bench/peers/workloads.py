"""The workloads, written once for every system (issue 4).

- **W1 throughput.** With the workers stopped, enqueue ``jobs`` no-op jobs with one
  client call each (the per-call enqueue rate). Start the workers and time until the
  system's own API reports every job complete (the drain rate; the clock starts when
  the worker processes are launched, so their start-up is part of it). Then, with the
  workers stopped again, enqueue another ``jobs`` with the system's bulk API (the bulk
  enqueue rate, or null where the system has none). The rate after the first job
  completed, without the workers' start-up, is recorded too.
- **W2 latency.** Workers started and warmed by a few jobs, then idle; ``jobs`` jobs
  submitted one at a time, each after the previous one's handler started plus
  ``gap`` seconds. Latency = handler start (``time.time()`` in the handler, written to
  a side file) minus the moment the submit call began.
- **W3 crash** (``crash.py``). Two worker instances start together, each the same set
  of processes as in W1, in its own process group. Warm-up ``work`` jobs go in (in
  growing bursts) until each instance has started one, and run to completion: an
  instance that has not come up yet cannot be killed meaningfully, and a system that
  drains 2,000 jobs in a fraction of a second would otherwise run them all on
  whichever instance came up first. Then the ``jobs`` (2,000) ``work`` jobs (log the
  start, sleep 5 ms, log the end, in a side file) are enqueued while the workers run,
  all at once (one bulk call, or one call per job), so that a queue builds up. A
  thread that reads only the side file kills instance 0's whole process group
  (SIGKILL) as soon as 25 % of the jobs have finished their handler (the system's own
  count trails that by its outcome reporting), and starts a new instance 0 1 s later
  (with the names the dead one had, where the system names workers): both land on
  time even while the main thread is still enqueueing. The main thread, once done
  enqueueing, polls the system's own count at the usual pace until every job is
  complete or ``deadline`` (120 s) after the kill. Recorded: lost = jobs not
  reported complete by the deadline; the time from the kill until all were complete
  (null if they never were) and whether it is within 5 s; executions (handler
  starts) in total, duplicate executions (starts beyond one per job), how many of
  those re-ran a job whose handler had already finished once (its outcome died with
  the process), and how many jobs the killed instance had started but not finished.
  Each adapter's ``recovery`` text says how that system gets back a killed worker's
  jobs and which settings decide how soon. Documented production settings are used;
  only where a system needs a setting to recover at all is one added (RQ's
  ``Retry``, Procrastinate's stalled-jobs recipe, DBOS's executor ids, Hearth's
  worker names).
- **W4 backlog** (``backlog.py``). Leasing throughput with a deep queue (1,000,000)
  against a shallow one (1,000), each on fresh state. The backlog of ``stamp`` jobs
  is loaded with the workers stopped, by the system's bulk API in chunks of 10,000
  (one call per job where there is none, or where it is the slower). Then the workers
  start and every handler start is replaced by a new job (in batches of 200 with a
  bulk API, as ``bench/backlog.py`` does, else one call per job at once), so each
  queue stays at its depth and both depths carry the same submit load. The rate is
  that of handler starts (from the side file, so polling plays no part): after
  ``warmup`` (1,000) starts, ``windows`` (5) windows of the same number of starts at
  both depths; the figure is the median window. The window is chosen at the shallow
  depth as about 2 s of starts at the warm-up's rate (200 to 5,000) and reused at the
  deep one. The mean and the lowest depth seen during the windows are recorded, and
  the share of looks that found less than a twentieth of the depth left: a system
  whose refill cannot keep up with its workers shows it there (its shallow rate is
  then partly the feeder's). A peer whose loading rate
  (measured on the shallow backlog) would need more than ``load_limit`` (300 s) for
  the deep one is skipped for that depth, and so is one whose deep loading runs past
  twice that: ``{"skipped": why}`` is recorded with the shallow figures. Hearth's deep
  backlog is always measured. A depth that is not measured within ``timeout`` gets
  the rate of the starts seen so far, marked ``timed_out``.

Completion is polled: every check costs the system something (a query, a round trip),
so the pause between checks is at least 20 ms and at least five times what the last
check took. Polls thus cost the system under test at most a sixth of one core, and
the drain time is overstated by at most one pause (shortest near the end, when
fewer jobs are left to ask about).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.common import percentile
from bench.peers.common import ProcessGroup, StampReader
from bench.peers.systems.base import System

WARMUP_JOBS = 5


def check_alive(group: ProcessGroup) -> None:
    if not group.alive():
        raise RuntimeError(f"every worker process exited; their log ends with:\n"
                           f"{group.tail()}")


def pause(check_s: float) -> None:
    """The pause after a completion check that took ``check_s`` (see above)."""
    time.sleep(max(0.02, 5 * check_s))


def wait_complete(system: System, group: ProcessGroup, handles: Sequence[Any],
                  timeout: float) -> tuple[float, tuple[float, int] | None, int]:
    """Poll until all ``handles`` are complete. Answers (seconds until all were seen
    complete, (seconds, count) at the first check that saw any complete, number of
    checks), counted from the call."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    checks = 0
    n = len(handles)
    while True:
        check_began = time.perf_counter()
        done = system.count_complete(handles)
        checks += 1
        now = time.perf_counter()
        if done and first is None:
            first = (now - started, done)
        if done >= n:
            return now - started, first, checks
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {n} jobs were reported complete "
                               f"after {timeout:g}s")
        check_alive(group)
        pause(now - check_began)


def throughput(system: System, jobs: int, timeout: float = 900.0) -> dict[str, Any]:
    seqs = range(jobs)
    began = time.perf_counter()
    handles = [system.enqueue("noop", i) for i in seqs]
    per_call_s = time.perf_counter() - began

    group = system.start_workers()
    drain_s, first, checks = wait_complete(system, group, handles, timeout)
    system.stop_workers(group)
    first_s, first_done = first or (drain_s, jobs)
    # The rate once the workers were up, without their start-up: from the first check
    # that saw a job complete to the end (None when that check already saw them all).
    settled = ((jobs - first_done) / (drain_s - first_s)
               if first_done < jobs and drain_s > first_s else None)

    began = time.perf_counter()
    bulk = system.enqueue_bulk("noop", range(jobs, 2 * jobs))
    bulk_s = time.perf_counter() - began
    if bulk is not None and len(bulk) != jobs:
        raise RuntimeError(f"the bulk enqueue answered {len(bulk)} handles for {jobs} jobs")
    return {
        "jobs": jobs,
        "enqueue_per_call_jobs_per_s": jobs / per_call_s,
        "enqueue_bulk_jobs_per_s": None if bulk is None else jobs / bulk_s,
        "bulk_api": system.bulk_api,
        "drain_jobs_per_s": jobs / drain_s,
        "drain_s": drain_s,
        "first_complete_s": first_s,
        "drain_after_first_jobs_per_s": settled,
        "completion_checks": checks,
    }


def latency(system: System, jobs: int, gap: float = 0.02, timeout: float = 30.0
            ) -> dict[str, Any]:
    reader = StampReader(system.stamps)
    group = system.start_workers()
    # Warm up: worker processes up, connections open, the handler imported and run.
    for k in range(WARMUP_JOBS):
        system.enqueue("stamp", -1 - k)
        reader.wait(-1 - k, timeout=120 if k == 0 else timeout,
                    still=lambda: check_alive(group))
    time.sleep(0.5)
    latencies, calls = [], []
    for i in range(jobs):
        began = time.time()
        system.enqueue("stamp", i)
        calls.append((time.time() - began) * 1000)
        latencies.append((reader.wait(i, timeout) - began) * 1000)
        time.sleep(gap)
    time.sleep(0.2)
    reader.refresh()
    duplicates = sum(len(v) - 1 for k, v in reader.seen.items() if k >= 0)
    return {
        "jobs": jobs,
        "gap_ms": gap * 1000,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "min_ms": min(latencies),
        "max_ms": max(latencies),
        "mean_ms": sum(latencies) / len(latencies),
        # How long the submit call itself took (the handler may start before it returns).
        "submit_call_p50_ms": percentile(calls, 50),
        "duplicate_starts": duplicates,
    }
