"""The checks of a chaos run, over the store's jobs and events and the handlers' side log.

1. every job whose submit was acknowledged has succeeded;
2. no job has two ``succeeded`` events;
3. no completion was accepted from a stale lease (:func:`stale_completions`);
4. throughput came back within the plan's limit after each coordinator kill and
   PostgreSQL restart (:func:`check_recovery`).

They read the store only (``hearth.store.open_store``), after every process has stopped.
"""

from __future__ import annotations

import bisect
import collections
import json
import statistics
from pathlib import Path
from typing import Any

from bench.chaoskit.plan import KIND
from bench.chaoskit.report import Report

#: Event types that end a lease (the attempt is over, whatever comes later).
LEASE_ENDS = {"expired", "timed_out", "failed", "released", "cancelled", "dead", "succeeded"}


def check(report: Report, store_url: str, side_log: Path, acked: list[str],
          worker_logs: list[Path]) -> None:
    """Fill ``report``'s figures and invariants from the store at ``store_url``, the side
    log, the acknowledged job ids and the workers' logs."""
    from hearth.store import JobFilter, open_store

    store = open_store(store_url)
    try:
        jobs = {}
        cursor = None
        while True:
            page = store.list_jobs(JobFilter(kinds=(KIND,)), limit=1000, cursor=cursor)
            jobs.update((job.id, job) for job in page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                break
        events = []
        while batch := store.events(after=events[-1].seq if events else 0, limit=10_000):
            events.extend(batch)
    finally:
        store.close()

    runs: collections.Counter[str] = collections.Counter()
    ran: set[tuple[str, str, int]] = set()
    for line in side_log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            runs[parts[0]] += 1
            ran.add((parts[0], parts[1], int(parts[2])))
    history: dict[str, list[Any]] = collections.defaultdict(list)
    for event in events:
        history[event.job_id].append(event)

    report.acked = len(set(acked))
    report.jobs_in_store = len(jobs)
    report.states = dict(collections.Counter(str(j.state) for j in jobs.values()))
    report.events = dict(collections.Counter(str(e.type) for e in events))
    report.handler_runs = sum(runs.values())
    report.rerun_jobs = sum(1 for n in runs.values() if n > 1)
    report.stale_refused = sum(log.read_text(errors="replace").count("was not needed any more")
                               for log in worker_logs)
    succeeded_at = sorted(e.at for e in events if str(e.type) == "succeeded")
    if succeeded_at:
        report.flow_rate = len(succeeded_at) / max(succeeded_at[-1] - report.started, 1e-9)
        report.drain_s = succeeded_at[-1] - (report.submitted or succeeded_at[-1])

    lost = [f"{i}: {jobs[i].state if i in jobs else 'not in the store'}"
            for i in acked if i not in jobs or str(jobs[i].state) != "succeeded"]
    report.invariants["every acknowledged job succeeded"] = lost
    doubled = [f"{job_id}: {n} succeeded events" for job_id, n in collections.Counter(
        e.job_id for e in events if str(e.type) == "succeeded").items() if n > 1]
    report.invariants["no job succeeded twice"] = doubled
    expiries = [e for e in events if str(e.type) == "expired"]
    for fault in report.faults:
        until = (fault.back or fault.at) + report.plan.lease_ttl + 2.0
        fault.expired = sum(1 for e in expiries
                            if fault.at <= e.at <= until and e.worker == fault.target)
        if fault.kind == "network-cut" and fault.back is not None:
            fault.resumed = next((e.at - fault.back for e in events if str(e.type) ==
                                  "succeeded" and e.worker == fault.target
                                  and e.at > fault.back), None)
    report.invariants["no completion accepted from a stale lease"] = stale_completions(
        jobs, history, ran)
    report.invariants["throughput back to 90 % within 10 s"] = check_recovery(
        report, succeeded_at)


def stale_completions(jobs: dict[str, Any], history: dict[str, list[Any]],
           ran: set[tuple[str, str, int]]) -> list[str]:
    """The successes a stale lease won. Events carry the attempt and the worker, not the
    fencing token (the attempt names the lease). For each ``succeeded`` event the job's
    last ``leased`` event before it must have the same attempt and worker, with nothing
    in between that ended the lease; the stored result (written by the handler) must
    name that worker and attempt; and the side log (``ran``) must show that run."""
    problems = []
    for job_id, seen in history.items():
        lease = None
        for event in seen:
            kind = str(event.type)
            if kind == "succeeded":
                where = f"{job_id} succeeded (seq {event.seq}, attempt {event.attempt}, " \
                        f"worker {event.worker})"
                if lease is None:
                    problems.append(f"{where} with no live lease before it")
                elif (lease.attempt, lease.worker) != (event.attempt, event.worker):
                    problems.append(f"{where}, but the lease was attempt {lease.attempt} "
                                    f"of {lease.worker} (seq {lease.seq})")
                result = _result(jobs.get(job_id))
                if result != (event.worker, event.attempt):
                    problems.append(f"{where}, but its stored result came from {result}")
                if (job_id, event.worker, event.attempt) not in ran:
                    problems.append(f"{where}, but no handler ran that attempt there")
            if kind == "leased":
                lease = event
            elif kind in LEASE_ENDS:
                lease = None
    return problems


def _result(job: Any) -> tuple[str, int] | None:
    if job is None or job.result is None:
        return None
    try:
        found = json.loads(job.result.payload)
        return str(found["worker"]), int(found["attempt"])
    except (ValueError, KeyError, TypeError):
        return None


def check_recovery(report: Report, succeeded_at: list[float]) -> list[str]:
    """Fill each restart's pre-fault rate and recovery time; return the failures."""
    plan = report.plan

    def count(lo: float, hi: float) -> int:
        return bisect.bisect_left(succeeded_at, hi) - bisect.bisect_left(succeeded_at, lo)

    problems = []
    for fault in report.faults:
        if not fault.measured:
            continue
        bins = [count(fault.at - k - 1, fault.at - k) for k in range(5)
                if fault.at - k - 1 >= report.started + 1.0] or [count(fault.at - 1, fault.at)]
        fault.pre_rate = statistics.median(bins)
        if not fault.pre_rate:
            problems.append(f"{fault.kind} at t={fault.at - report.started:.1f}s: nothing "
                            "completed before it, so there is no level to come back to "
                            "(faults too close together)")
            continue
        target = plan.recovery_level * fault.pre_rate
        moment = fault.back or fault.at  # windows start once it is back
        while moment + 1.0 <= fault.at + plan.recovery_limit + 5.0:
            if count(moment, moment + 1.0) >= target:
                fault.recovery = moment + 1.0 - fault.at
                break
            moment += 0.05
        if fault.recovery is None or fault.recovery > plan.recovery_limit:
            problems.append(f"{fault.kind} at t={fault.at - report.started:.1f}s: "
                            f"{fault.pre_rate:g} jobs/s before, not back to "
                            f"{target:g}/s within {plan.recovery_limit:g} s")
    return problems
