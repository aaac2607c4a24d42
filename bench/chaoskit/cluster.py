"""The processes of one chaos run: a coordinator, its workers and the submitter.

Each process leads its own session (so ``kill -9`` takes its children too) and writes
``<name>.log`` in the run dir. Every handler appends ``<job_id> <worker> <attempt>`` to a
side log (one ``O_APPEND`` write per line) and returns ``{"worker", "attempt"}`` as its
result: :mod:`.invariants` reads both. This module starts and stops processes; it never
decides when (that is :mod:`.faults`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from bench.chaoskit.hosts import LocalSite, child_env
from bench.chaoskit.plan import Plan
from bench.chaoskit.postgres import coordinator_store_url
from bench.common import hearth_bin

#: The entry point; ``chaos.py _submit`` runs :func:`bench.chaoskit.submit.submit_main`.
ENTRY = Path(__file__).resolve().parent.parent / "chaos.py"

HANDLERS = '''
"""The chaos run's handler (written by bench/chaos.py)."""
import asyncio
import os
import random

WHO = os.environ["CHAOS_WORKER"]
SIDE = os.open(os.environ["CHAOS_SIDE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


async def chaos(ctx):
    await asyncio.sleep(random.uniform(0.002, 0.005))
    os.write(SIDE, f"{ctx.id} {WHO} {ctx.attempt}\\n".encode())
    return {"worker": WHO, "attempt": ctx.attempt}


def register(worker):
    worker.handler("chaos")(chaos)
'''


class Cluster:
    def __init__(self, site: LocalSite, run_dir: Path, store_url: str, plan: Plan) -> None:
        self.site = site
        self.run_dir = run_dir
        self.data = site.data
        self.store_url = coordinator_store_url(store_url, site.netns)
        self.plan = plan
        self.side_log = run_dir / "side.log"
        self.names = [f"w{i + 1}" for i in range(plan.workers)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []
        (run_dir / "chaos_tasks.py").write_text(HANDLERS)
        self.side_log.touch()

    def _spawn(self, host: str, name: str, argv: list[str],
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        proc = self.site.spawn(host, argv, log, child_env(env or {}))
        self.procs[name] = proc
        return proc

    def start_coordinator(self) -> float:
        """Start it and return the time it is listening."""
        endpoint = self.data / "coordinator.json"
        endpoint.unlink(missing_ok=True)
        proc = self._spawn("coord", "coordinator", [
            hearth_bin(), "coordinator", "--data", str(self.data), "--store", self.store_url,
            *self.site.coordinator_args()])
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(endpoint.read_text()).get("pid") == proc.pid:
                    return time.time()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the coordinator did not start; see "
                                   f"{self.run_dir / 'coordinator.log'}")
            time.sleep(0.02)

    def start_worker(self, name: str) -> None:
        self._spawn(name, name, [
            hearth_bin(), "worker", *self.site.worker_args(name), "--import", "chaos_tasks",
            "--concurrency", str(self.plan.concurrency)],
            {"PYTHONPATH": str(self.run_dir), "CHAOS_WORKER": name,
             "CHAOS_SIDE_LOG": str(self.side_log)})

    def start_submitter(self) -> subprocess.Popen[bytes]:
        return self._spawn("coord", "submitter", [
            sys.executable, str(ENTRY), "_submit",
            *self.site.client_args(), "--jobs", str(self.plan.jobs),
            "--rate", str(self.plan.rate), "--lease-ttl", str(self.plan.lease_ttl),
            "--max-attempts", str(self.plan.max_attempts),
            "--out", str(self.run_dir / "acked.txt")])

    def kill(self, name: str) -> None:
        """``kill -9`` of the process group (each process leads its own session)."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def stop(self, name: str, timeout: float = 40.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)

    def close(self) -> None:
        for name in [*self.names, "submitter", "coordinator"]:
            self.stop(name)
        for log in self.logs:
            log.close()

    def acked(self) -> list[tuple[str, float]]:
        """The acknowledged job ids, each with the time of its acknowledgement."""
        path = self.run_dir / "acked.txt"
        found = []
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = line.split()
            if len(parts) == 2:  # a line being written may be incomplete
                found.append((parts[0], float(parts[1])))
        return found
