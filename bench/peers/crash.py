"""W3 crash: two worker instances, ``kill -9`` of one at 25 %, a restart 1 s later.

The definition, and why it is so, is in :mod:`bench.peers.workloads`' docstring, with
the other workloads'. This module runs it and tallies the side file. The kill and
the restart come from a thread that reads only the side file (never the system's
client, which is the main thread's), so that they land on time while the main thread
is still in a long enqueue call.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from bench.peers.common import WORK_SECONDS, ProcessGroup, WorkLog
from bench.peers.systems.base import System
from bench.peers.workloads import check_alive, pause, wait_complete

#: The fraction of handlers finished at which instance 0 is killed, the pause before
#: its restart, and Hearth's target (all done within this many seconds of the kill).
KILL_AT, RESTART_AFTER, CRASH_TARGET_S = 0.25, 1.0, 5.0


class Killer(threading.Thread):
    """Watches the side file; once ``threshold`` of jobs ``0..jobs-1`` have finished
    their handler, kills ``doomed`` and, ``RESTART_AFTER`` later, starts a new
    instance 0. Touches the system only through ``start_workers``."""

    def __init__(self, system: System, doomed: ProcessGroup, jobs: int, threshold: int
                 ) -> None:
        super().__init__(name="w3-killer", daemon=True)
        self.system, self.doomed, self.jobs, self.threshold = system, doomed, jobs, threshold
        self.stopping = threading.Event()
        self.restarted = threading.Event()
        self.killed_at: float | None = None  # perf_counter() of the kill
        self.finished_at_kill = 0
        self.restart_after = 0.0
        self.replacement: ProcessGroup | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            log = WorkLog(self.system.worklog)
            finished: set[int] = set()
            seen = 0
            while len(finished) < self.threshold:
                if self.stopping.wait(0.002):
                    return
                log.refresh()
                for seq, _, _, _, phase in log.events[seen:]:
                    if phase == "d" and 0 <= seq < self.jobs:
                        finished.add(seq)
                seen = len(log.events)
            self.doomed.kill()
            self.killed_at = time.perf_counter()
            self.finished_at_kill = len(finished)
            if self.stopping.wait(max(0.0, self.killed_at + RESTART_AFTER
                                      - time.perf_counter())):
                return
            self.replacement = self.system.start_workers(instance=0)
            self.restart_after = time.perf_counter() - self.killed_at
            self.restarted.set()
        except BaseException as exc:
            self.error = exc


def crash(system: System, jobs: int = 2_000, deadline: float = 120.0,
          start_timeout: float = 120.0) -> dict[str, Any]:
    log = WorkLog(system.worklog)
    doomed = system.start_workers(instance=0)
    other = system.start_workers(instance=1)
    warm = warm_instances(system, log, [doomed, other], start_timeout)
    # Counts of systems that count every job in their fresh state (not per handle)
    # include the warm-up jobs: those are taken off.
    baseline = system.count_complete([])
    killer = Killer(system, doomed, jobs, math.ceil(jobs * KILL_AT))
    killer.start()
    try:
        began = time.perf_counter()
        handles = system.enqueue_many("work", range(jobs))
        enqueue_s = time.perf_counter() - began
        done, done_after = _until_done(system, killer, other, handles, baseline, jobs,
                                       began, deadline, start_timeout)
    finally:
        killer.stopping.set()
        killer.join()
    time.sleep(0.2)  # the last lines of the side file
    log.refresh()
    return {
        "jobs": jobs,
        "work_ms": WORK_SECONDS * 1000,
        "instances": 2,
        "warmup_jobs": warm,
        "enqueue_s": enqueue_s,
        "enqueued_with": "one bulk call" if system.bulk else "one call per job",
        "kill_at_fraction": KILL_AT,
        "finished_at_kill": killer.finished_at_kill,
        "kill_after_first_enqueue_s": (killer.killed_at or began) - began,
        "restart_after_kill_s": killer.restart_after,
        "deadline_s": deadline,
        "complete_at_end": done,
        "lost": jobs - done,
        "all_done_after_kill_s": done_after,
        "target_s": CRASH_TARGET_S,
        "within_target": done_after is not None and done_after <= CRASH_TARGET_S,
        **tally_work(log.events, jobs, killed=doomed.label),
        "recovery": system.recovery,
    }


def _until_done(system: System, killer: Killer, other: ProcessGroup, handles: list[Any],
                baseline: int, jobs: int, began: float, deadline: float,
                start_timeout: float) -> tuple[int, float | None]:
    """Poll the system's count (at the usual pace) until every job is complete and the
    restart happened, or ``deadline`` after the kill. Answers (jobs complete, seconds
    from the kill until all were, or None)."""
    done_after: float | None = None
    while True:
        check_began = time.perf_counter()
        done = system.count_complete(handles) - baseline
        now = time.perf_counter()
        if killer.error is not None:
            raise killer.error
        if killer.killed_at is None:
            if now - began > start_timeout:
                raise TimeoutError(f"{done} of {jobs} jobs were complete and instance 0 "
                                   f"still not killed {start_timeout:g}s after the "
                                   "first was enqueued")
            check_alive(other)
        else:
            if done >= jobs and done_after is None:
                done_after = now - killer.killed_at
            if killer.restarted.is_set():
                if done_after is not None or now - killer.killed_at > deadline:
                    return done, done_after
                if killer.replacement is not None and not (
                        other.alive() or killer.replacement.alive()):
                    check_alive(killer.replacement)
        pause(now - check_began)


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
