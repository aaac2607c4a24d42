"""Carries a run's fault schedule out against its :class:`~.cluster.Cluster`.

Each fault is recorded as a :class:`~.report.Fault` when it is injected, and marked when
its target is back (restarted and listening, or its link restored). The schedule itself
(:func:`.plan.schedule`) is pure; this module only acts on it, at the times it names.
Restarts that take a while run on threads so that later faults keep their times.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from bench.chaoskit.cluster import Cluster
from bench.chaoskit.plan import Plan, Step, schedule
from bench.chaoskit.postgres import pg_cluster, restart_postgres
from bench.chaoskit.report import Fault, Report


class Chaos:
    """Runs a timeline of faults against a :class:`Cluster`, recording each."""

    def __init__(self, cluster: Cluster, report: Report, store_url: str,
                 rng: random.Random) -> None:
        self.cluster = cluster
        self.report = report
        self.rng = rng
        #: The worker whose network is cut; never killed, so that its late outcomes
        #: (and leases granted while it was cut off) do reach the coordinator.
        self.victim: str | None = None
        self.store_url = store_url
        self.pg = pg_cluster(store_url) if store_url.startswith("postgres") else None
        self.timeline: list[tuple[float, int, str, Callable[[], None]]] = []
        #: Restarts that take a while run on threads, so the timeline keeps its times.
        self.busy: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def plan(self, start: float, plan: Plan, postgres: bool) -> None:
        if plan.cut_at is not None:
            self.victim = self.cluster.names[-1]
        if postgres and plan.pg_restart_at is not None and self.pg is None:
            raise SystemExit("cannot restart PostgreSQL: no local cluster found with "
                             "pg_lsclusters/pg_ctlcluster (use --no-pg-restart)")
        for step in schedule(plan, start, self.rng, victim=self.cluster.names[-1],
                             postgres=postgres):
            self._at(step.at, step.label, self._action(step))

    def _action(self, step: Step) -> Callable[[], None]:
        target = step.target or ""
        return {"coordinator kill": self.kill_coordinator,
                "cut": lambda: self.cut_off(target),
                "restore": lambda: self.restore(target),
                "postgres restart": self.restart_pg,
                "worker kill": self.kill_worker}[step.what]

    def _at(self, when: float, what: str, action: Callable[[], None]) -> None:
        self.timeline.append((when, len(self.timeline), what, action))
        self.timeline.sort()

    def due(self) -> float | None:
        """When the next action is due; None once every fault is done."""
        self.busy = [t for t in self.busy if t.is_alive()]
        if self.timeline:
            return self.timeline[0][0]
        return time.time() + 0.1 if self.busy else None

    def step(self) -> None:
        """Run every action that is due."""
        if self.errors:
            raise RuntimeError(f"a fault could not be injected: {self.errors[0]}")
        while self.timeline and self.timeline[0][0] <= time.time():
            _, _, _, action = self.timeline.pop(0)
            action()

    def _background(self, action: Callable[[], None]) -> None:
        def target() -> None:
            try:
                action()
            except BaseException as exc:  # reported by step()
                self.errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.busy.append(thread)

    def join(self) -> None:
        for thread in self.busy:
            thread.join(120)

    def _record(self, kind: str, target: str) -> Fault:
        fault = Fault(kind, target, time.time())
        self.report.faults.append(fault)
        return fault

    def kill_worker(self) -> None:
        live = [n for n in self.cluster.names if n != self.victim and self.cluster.alive(n)]
        if not live:
            return
        name = self.rng.choice(live)
        fault = self._record("worker-kill", name)
        self.cluster.kill(name)

        def restart() -> None:
            self.cluster.start_worker(name)
            fault.back = time.time()

        self._at(time.time() + 1.0, f"restart {name}", restart)

    def kill_coordinator(self) -> None:
        fault = self._record("coordinator-kill", "coordinator")
        self.cluster.kill("coordinator")

        def restart() -> None:
            fault.back = self.cluster.start_coordinator()

        self._background(restart)

    def restart_pg(self) -> None:
        pg = self.pg
        assert pg is not None
        fault = self._record("postgres-restart", "-".join(pg))

        def restart() -> None:
            fault.at, fault.back = restart_postgres(pg, self.store_url)

        self._background(restart)

    def cut_off(self, name: str) -> None:
        self._record("network-cut", name)
        self.cluster.site.cut(name)

    def restore(self, name: str) -> None:
        self.cluster.site.restore(name)
        for fault in self.report.faults:
            if fault.kind == "network-cut" and fault.target == name and fault.back is None:
                fault.back = time.time()
