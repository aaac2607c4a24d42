"""What one chaos run found: its faults and figures, printed and kept as one JSON line.

Filled by :mod:`.faults` (the faults as they happen) and :mod:`.invariants` (the figures
and the verdicts at the end); this module only holds and shows them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaoskit.plan import Plan
from bench.common import RESULTS, machine


@dataclass
class Fault:
    kind: str  # worker-kill, coordinator-kill, postgres-restart, network-cut
    target: str
    at: float  # epoch seconds when it was injected
    back: float | None = None  # epoch seconds: restarted and listening / link restored
    pre_rate: float | None = None  # completions/s before the fault
    recovery: float | None = None  # seconds from `at` to 90 % of pre_rate
    expired: int = 0  # leases (of the target worker) that expired in its wake
    resumed: float | None = None  # seconds from `back` to the target's next success

    @property
    def measured(self) -> bool:
        return self.kind in ("coordinator-kill", "postgres-restart")


@dataclass
class Report:
    store: str
    plan: Plan
    started: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    acked: int = 0
    submit_retries: int = 0
    jobs_in_store: int = 0
    states: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    handler_runs: int = 0
    rerun_jobs: int = 0  # jobs whose handler ran more than once (allowed)
    stale_refused: int = 0  # outcomes the coordinator refused as stale (worker logs)
    flow_rate: float = 0.0
    submitted: float | None = None  # epoch seconds the last submit was acknowledged
    drain_s: float = 0.0  # from then to the last success
    invariants: dict[str, list[str]] = field(default_factory=dict)  # name -> failures
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return all(not problems for problems in self.invariants.values())


def show(report: Report, say: Callable[[str], None] = print) -> None:
    t0 = report.started
    say(f"\n== chaos on {report.store}: {'PASSED' if report.ok else 'FAILED'} ==")
    say(f"jobs: {report.acked:,} acknowledged, {report.jobs_in_store:,} in the store, states "
        f"{report.states}; completions {report.flow_rate:.0f}/s on average, the last "
        f"{report.drain_s:.2f} s after the last submit")
    say(f"events: {report.events}")
    say(f"submits: {report.submit_retries} batches sent again after an error (the "
        "coordinator or the database was down)")
    say(f"handlers: {report.handler_runs:,} runs, {report.handler_runs - report.acked:,} "
        f"beyond the first (at-least-once) on {report.rerun_jobs:,} jobs; "
        f"{report.stale_refused} stale outcomes refused by the coordinator")
    say("faults (t from the first acknowledged submit):")
    for fault in sorted(report.faults, key=lambda f: f.at):
        line = f"  t={fault.at - t0:6.2f}s  {fault.kind:17} {fault.target:12}"
        if fault.back is not None:
            line += f" back after {fault.back - fault.at:5.2f} s"
        if fault.kind in ("worker-kill", "network-cut"):
            line += f", {fault.expired:3} of its leases expired"
        if fault.kind == "network-cut":
            line += ", its next success " + ("never" if fault.resumed is None
                                             else f"{fault.resumed:.2f} s after the restore")
        if fault.measured:
            rec = "never" if fault.recovery is None else f"{fault.recovery:.2f} s"
            line += f"  {fault.pre_rate:g} jobs/s before; recovered in {rec}"
        say(line)
    for name, problems in report.invariants.items():
        say(f"  [{'ok' if not problems else 'FAIL'}] {name}"
            + (f": {len(problems)} problems, e.g. {problems[:5]}" if problems else ""))
    if not report.ok:
        say(f"logs and side log kept in {report.workdir}")


def record(report: Report, path: Path = RESULTS / "chaos.jsonl") -> None:
    t0 = report.started
    line = {
        "bench": "chaos", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(), "store": report.store, "passed": report.ok,
        "plan": dataclasses.asdict(report.plan), "acked": report.acked,
        "jobs_in_store": report.jobs_in_store, "states": report.states,
        "events": report.events, "handler_runs": report.handler_runs,
        "rerun_jobs": report.rerun_jobs, "stale_refused": report.stale_refused,
        "submit_retries": report.submit_retries,
        "flow_rate": round(report.flow_rate, 1), "drain_s": round(report.drain_s, 2),
        "faults": [{"kind": f.kind, "target": f.target, "t": round(f.at - t0, 2),
                    "down_s": None if f.back is None else round(f.back - f.at, 2),
                    "pre_rate": f.pre_rate, "expired": f.expired,
                    "resumed_s": None if f.resumed is None else round(f.resumed, 2),
                    "recovery_s": None if f.recovery is None else round(f.recovery, 2)}
                   for f in report.faults],
        "invariants": {k: {"ok": not v, "problems": v[:20]}
                       for k, v in report.invariants.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
