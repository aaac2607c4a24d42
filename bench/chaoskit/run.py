"""One chaos run: a fresh, empty store in, a checked :class:`~.report.Report` out.

Starts the cluster on its hosts, waits for the first acknowledged submit, carries the
fault schedule out while the jobs flow, waits for them to drain, stops every process and
runs the checks.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chaoskit.cluster import Cluster
from bench.chaoskit.faults import Chaos
from bench.chaoskit.hosts import LAN_PREFIX, LanSite, LocalSite, free_port
from bench.chaoskit.invariants import check
from bench.chaoskit.plan import KIND, Plan
from bench.chaoskit.report import Report
from lan.netns import cleanup_stale


def run(store_url: str, workdir: Path, plan: Plan, *, store: str, seed: int | None = None,
        say: Callable[[str], None] = print) -> Report:
    """Run the chaos plan against a fresh, empty store at ``store_url``; ``workdir`` (empty)
    holds the data dir, logs and side log. Returns the checked :class:`Report`."""
    rng = random.Random(seed)
    report = Report(store, plan, workdir=str(workdir))
    data = workdir / "data"
    data.mkdir(parents=True)
    if not plan.netns and plan.cut_at is not None:
        raise ValueError("a network cut needs network namespaces (netns=True)")
    names = [f"w{i + 1}" for i in range(plan.workers)]
    if plan.netns:
        cleanup_stale(LAN_PREFIX)  # what crashed earlier runs left behind
    site = LanSite(data, names) if plan.netns else LocalSite(data, free_port())
    try:
        cluster = Cluster(site, workdir, store_url, plan)
        try:
            _flow(cluster, report, store_url, plan, rng, say)
        finally:
            cluster.close()
    finally:
        site.close()
    say("checking the invariants ...")
    acked = cluster.acked()
    report.submitted = max((at for _, at in acked), default=None)
    summary = (workdir / "submitter.log").read_text(errors="replace").split()
    if "batches" in summary:  # "submitted N jobs, K batches sent again"
        report.submit_retries = int(summary[summary.index("batches") - 1])
    check(report, store_url, cluster.side_log, [job_id for job_id, _ in acked],
          sorted(workdir.glob("w*.log")))
    return report


def _flow(cluster: Cluster, report: Report, store_url: str, plan: Plan,
          rng: random.Random, say: Callable[[str], None]) -> None:
    from hearth.store import open_store

    cluster.start_coordinator()
    cluster.site.enroll(cluster.names)
    for name in cluster.names:
        cluster.start_worker(name)
    submitter = cluster.start_submitter()
    while not cluster.acked():
        if submitter.poll() is not None:
            raise RuntimeError(f"the submitter exited: see {cluster.run_dir}/submitter.log")
        time.sleep(0.02)
    report.started = start = time.time()
    chaos = Chaos(cluster, report, store_url, rng)
    chaos.plan(start, plan, store_url.startswith("postgres"))
    say(f"{report.store}: {plan.jobs:,} jobs at {plan.rate:g}/s, {plan.workers} workers x "
        f"{plan.concurrency}, lease TTL {plan.lease_ttl:g} s, "
        f"{'namespaces' if plan.netns else 'loopback'}; {len(chaos.timeline)} faults planned")
    store = open_store(store_url)  # read only: counts for progress
    deadline = start + 3 * plan.flow_time + plan.drain_timeout
    finished: float | None = None  # when the submitter exited
    try:
        shown = 0.0
        while True:
            chaos.step()
            now = time.time()
            if finished is None and submitter.poll() is not None:
                if submitter.returncode != 0:
                    raise RuntimeError(f"the submitter failed: {cluster.run_dir}/submitter.log")
                finished = now
            counts = _counts(store)
            if counts is not None and now - shown >= 3.0:
                shown = now
                say(f"  t={now - start:5.1f}s acked {len(cluster.acked()):,}; "
                    + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
            unfinished = None if counts is None else sum(
                v for k, v in counts.items() if k in ("queued", "leased", "failed"))
            if finished is not None and chaos.due() is None and unfinished == 0:
                break
            if now > deadline or (finished is not None
                                  and now - finished > plan.drain_timeout):
                say(f"  gave up waiting: {unfinished} jobs unfinished")
                break
            time.sleep(max(0.0, min(0.25, (chaos.due() or now + 1) - time.time())))
    finally:
        store.close()
        chaos.join()
        for fault in report.faults:
            if fault.back is None and fault.kind == "network-cut":
                cluster.site.restore(fault.target)


def _counts(store: Any) -> dict[str, int] | None:
    try:
        found: dict[str, int] = collections.Counter()
        for row in store.counts():
            if row.kind == KIND:
                found[str(row.state)] += row.count
        return dict(found)
    except Exception:  # the database may be restarting
        return None
