"""W3 crash: two worker instances, ``kill -9`` of one at 25 %, a restart 1 s later.

The definition, and why it is so, is in :mod:`bench.peers.workloads`' docstring, with
the other workloads'. This module only runs it and tallies the side file.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from bench.peers.common import WORK_SECONDS, ProcessGroup, WorkLog
from bench.peers.systems.base import System
from bench.peers.workloads import check_alive, wait_complete

#: The fraction complete at which instance 0 is killed, the pause before its restart,
#: and Hearth's target (all done within this many seconds of the kill).
KILL_AT, RESTART_AFTER, CRASH_TARGET_S = 0.25, 1.0, 5.0
#: At most this many jobs per enqueue (one bulk call, or that many single calls)
#: between two polls.
CHUNK = 200


def crash(system: System, jobs: int = 2_000, deadline: float = 120.0,
          start_timeout: float = 120.0) -> dict[str, Any]:
    log = WorkLog(system.worklog)
    doomed = system.start_workers(instance=0)
    other = system.start_workers(instance=1)
    warm = warm_instances(system, log, [doomed, other], start_timeout)
    # Counts of systems that count every job in their fresh state (not per handle)
    # include the warm-up jobs: those are taken off.
    baseline = system.count_complete([])
    threshold = math.ceil(jobs * KILL_AT)
    began = time.perf_counter()
    chunk = max(1, min(CHUNK, jobs // 10))
    todo = [range(s, min(s + chunk, jobs)) for s in range(0, jobs, chunk)]
    handles: list[Any] = []
    enqueue_s = 0.0
    at_kill = 0
    killed = 0.0  # perf_counter() of the kill, once it happened
    replacement: ProcessGroup | None = None
    restarted = 0.0
    done_after: float | None = None
    while True:
        if todo:
            # A tenth of the jobs (at most CHUNK) per bulk call, or as many calls,
            # between two polls.
            handles += system.enqueue_many("work", todo.pop(0))
            if not todo:
                enqueue_s = time.perf_counter() - began
        check_began = time.perf_counter()
        done = system.count_complete(handles) - baseline
        now = time.perf_counter()
        if not killed:
            if done >= threshold:
                doomed.kill()
                killed, at_kill = time.perf_counter(), done
            elif now - began > start_timeout:
                raise TimeoutError(f"only {done} of {jobs} jobs were complete "
                                   f"{start_timeout:g}s after the first was enqueued")
            else:
                check_alive(doomed)
                check_alive(other)
        else:
            # Polled from the kill on, the restart pause included; the new instance 0
            # starts 1 s after the kill even if every job is complete by then.
            if done >= jobs and done_after is None:
                done_after = now - killed
            if replacement is None and now - killed >= RESTART_AFTER:
                replacement = system.start_workers(instance=0)
                restarted = time.perf_counter() - killed
            if replacement is not None:
                if done_after is not None or now - killed > deadline:
                    break
                if not (other.alive() or replacement.alive()):
                    check_alive(replacement)
        if todo:
            continue
        # Before the kill, look often (the kill should land near 25 %); after it, at
        # the usual pace, but wake up for the restart.
        check_s = now - check_began
        pause = max(0.02, 5 * check_s) if killed else max(0.005, check_s)
        if killed and replacement is None:
            pause = min(pause, max(0.0, killed + RESTART_AFTER - time.perf_counter()))
        time.sleep(pause)
    time.sleep(0.2)  # the last lines of the side file
    log.refresh()
    return {
        "jobs": jobs,
        "work_ms": WORK_SECONDS * 1000,
        "instances": 2,
        "warmup_jobs": warm,
        "enqueue_s": enqueue_s,
        "enqueued_with": (f"{chunk} jobs per bulk call" if system.bulk
                          else "one call per job"),
        "kill_at_fraction": KILL_AT,
        "complete_at_kill": at_kill,
        "kill_after_first_enqueue_s": killed - began,
        "restart_after_kill_s": restarted,
        "deadline_s": deadline,
        "complete_at_end": done,
        "lost": jobs - done,
        "all_done_after_kill_s": done_after,
        "target_s": CRASH_TARGET_S,
        "within_target": done_after is not None and done_after <= CRASH_TARGET_S,
        **tally_work(log.events, jobs, killed=doomed.label),
        "recovery": system.recovery,
    }


def warm_instances(system: System, log: WorkLog, groups: Sequence[ProcessGroup],
                   timeout: float) -> int:
    """Run warm-up ``work`` jobs (negative seqs, in growing bursts) until every group
    has started one, then wait until all of them are complete. Answers how many
    there were."""
    labels = {g.label for g in groups}
    warm: list[Any] = []
    deadline = time.monotonic() + timeout
    burst = 1
    while True:
        log.refresh()
        if labels <= {e[2] for e in log.events if e[4] == "s"}:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm-up jobs never reached instance(s) "
                               f"{', '.join(sorted(labels))} within {timeout:g}s")
        for group in groups:
            check_alive(group)
        warm += system.enqueue_many("work", range(-len(warm) - burst, -len(warm)))
        burst = min(2 * burst, 64)
        time.sleep(0.2)
    wait_complete(system, groups[0], warm, timeout)
    return len(warm)


def tally_work(events: Iterable[tuple[int, float, str, int, str]], jobs: int, *,
               killed: str) -> dict[str, Any]:
    """W3's execution counts from the side file's ``(seq, time, instance, pid, phase)``
    events: every start of jobs ``0..jobs-1`` is one execution; a start is finished
    when the same process logged the end of the same job. ``killed`` is the label of
    the instance that was killed. Pure."""
    starts: list[tuple[int, float, str, int]] = []
    finished: set[tuple[int, str, int]] = set()
    for seq, at, instance, pid, phase in events:
        if not 0 <= seq < jobs:
            continue
        if phase == "s":
            starts.append((seq, at, instance, pid))
        else:
            finished.add((seq, instance, pid))
    runs: dict[int, list[tuple[float, bool]]] = {}
    for seq, at, instance, pid in starts:
        runs.setdefault(seq, []).append((at, (seq, instance, pid) in finished))
    after_finish = 0
    for attempts in runs.values():
        attempts.sort()
        seen_finish = False
        for _, done in attempts:
            after_finish += seen_finish
            seen_finish = seen_finish or done
    by_killed = [s for s in starts if s[2] == killed]
    return {
        "executions": len(starts),
        "duplicate_executions": len(starts) - len(runs),
        "duplicates_after_finish": after_finish,
        "never_run": jobs - len(runs),
        "killed_instance_runs": len(by_killed),
        "killed_in_flight": sum(1 for seq, _, i, pid in by_killed
                                if (seq, i, pid) not in finished),
        "runs_by_instance": dict(sorted(Counter(s[2] for s in starts).items())),
    }
