"""What one chaos run does: the load, the workers, the faults and when each one falls.

Pure: no processes, no clock (the start time is passed in), randomness from the caller's
``random.Random``. :mod:`.faults` carries the schedule out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: The kind of every chaos job, and the name of its handler.
KIND = "chaos"


@dataclass(frozen=True)
class Plan:
    """What one run does. Fault times are fractions of the flow time ``jobs / rate``."""

    jobs: int = 20_000
    rate: float = 400.0  # offered load, jobs/s
    workers: int = 4
    concurrency: int = 16
    lease_ttl: float = 3.0
    max_attempts: int = 25  # a job that dies of bad luck would show as lost work
    worker_kills: int = 8
    coordinator_kills: tuple[float, ...] = (0.2, 0.5)
    cut_at: float | None = 0.33  # None: no network cut
    cut_for: float = 7.0  # seconds; must exceed lease_ttl
    pg_restart_at: float | None = 0.75  # PostgreSQL store only
    recovery_limit: float = 10.0
    recovery_level: float = 0.9
    drain_timeout: float = 120.0
    netns: bool = True

    @property
    def flow_time(self) -> float:
        return self.jobs / self.rate


QUICK = Plan(jobs=1500, rate=100.0, workers=3, concurrency=8, worker_kills=1,
             coordinator_kills=(0.3,), cut_at=0.45, cut_for=6.0, pg_restart_at=0.8,
             drain_timeout=60.0)


@dataclass(frozen=True)
class Step:
    """One planned fault (or the end of one: a restore)."""

    at: float  # epoch seconds
    what: str  # coordinator kill, cut, restore, postgres restart, worker kill
    target: str | None = None  # the worker, for a cut and its restore

    @property
    def label(self) -> str:
        return self.what if self.target is None else f"{self.what} {self.target}"


def schedule(plan: Plan, start: float, rng: random.Random, *, victim: str,
             postgres: bool) -> list[Step]:
    """The faults of ``plan`` for a flow that starts at ``start``; ``victim`` is the
    worker whose network is cut. Worker kills fall at random in even slices of the flow
    (which worker dies is drawn when it happens)."""
    flow = plan.flow_time
    steps = [Step(start + frac * flow, "coordinator kill") for frac in plan.coordinator_kills]
    if plan.cut_at is not None:
        steps.append(Step(start + plan.cut_at * flow, "cut", victim))
        steps.append(Step(start + plan.cut_at * flow + plan.cut_for, "restore", victim))
    if postgres and plan.pg_restart_at is not None:
        steps.append(Step(start + plan.pg_restart_at * flow, "postgres restart"))
    for i in range(plan.worker_kills):
        when = start + flow * (0.1 + 0.8 * (i + rng.uniform(0.2, 0.8)) / plan.worker_kills)
        steps.append(Step(when, "worker kill"))
    return steps
