"""Chaos: crash and cut Hearth's processes while jobs flow, then prove nothing went wrong.

A submitter feeds a steady stream of quick jobs (default 20,000 at 400 jobs/s) to a
real ``hearth coordinator``; real ``hearth worker`` processes run them. Meanwhile:

- random workers are killed with ``kill -9`` and restarted about 1 s later;
- the coordinator is killed with ``kill -9`` twice and restarted on its port and data dir;
- PostgreSQL is restarted once (``pg_ctlcluster ... restart``; PostgreSQL store only);
- one worker's network is cut for longer than the lease TTL (3 s), then restored.

The hosts are network namespaces (``tests/lan/netns.py``): the coordinator runs on
``coord`` with ``--host 0.0.0.0`` (mutual TLS), each worker on its own host ``w1``..
``wN`` with a bundle from ``hearth enroll``, and the submitter on ``coord`` with the
admin bundle. Such a coordinator reaches a local PostgreSQL through its Unix socket.
Every handler appends ``<job_id> <worker> <attempt>`` to a side log (one ``O_APPEND``
write per line) and returns ``{"worker", "attempt"}`` as its result.

At the end, from the store (``hearth.store.open_store``, read only) and the side log:

1. every job whose submit was acknowledged has succeeded;
2. no job has two ``succeeded`` events;
3. no completion was accepted from a stale lease. Events carry the attempt and the
   worker but not the fencing token (a new token is drawn for each attempt, so the
   attempt number names the lease). For each ``succeeded`` event: the job's last
   ``leased`` event before it has the same attempt and worker; no event in between
   ended that lease (expired, timed_out, failed, released, cancelled, dead); the stored
   result, which the handler wrote, names that same worker and attempt (the event
   copies them from the job row, so only the result shows whose outcome was taken);
   and the side log holds that line (the handler really ran that attempt there);
4. after each coordinator kill and PostgreSQL restart, completions per second (from the
   ``succeeded`` events' timestamps) reach 90 % of the pre-fault level (median of the
   1 s bins in the 5 s before the fault) within 10 s: the recovery time runs from the
   kill (or from the moment PostgreSQL stopped answering) to the end of the first 1 s
   window at that level that starts once the coordinator listens again (or PostgreSQL
   answers again). The submitter catches up on what it could not submit meanwhile.

It prints the figures (faults with their times, recovery times, handler runs beyond the
first, stale outcomes the coordinator refused), appends one JSON line to
``bench/results/chaos.jsonl`` and exits 1 if an invariant failed.

Usage (root, for the namespaces and ``pg_ctlcluster``):

    python bench/chaos.py                       # both stores, 20,000 jobs each
    python bench/chaos.py --store postgres --jobs 50000 --rate 500
    python bench/chaos.py --quick               # 1,500 jobs, one fault of each kind
    python bench/chaos.py --no-netns            # loopback only, no network cut

Never part of the test suite: ``tests/acceptance/test_chaos.py`` calls :func:`run`
with :data:`QUICK`.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.common import PG_DSN, RESULTS, fresh_store, hearth_bin, machine  # noqa: E402
from lan.netns import Lan, available, cleanup_stale  # noqa: E402

KIND = "chaos"
PORT = 7843  # the coordinator host is a namespace of its own: the port is free
LAN_PREFIX = "chaos"  # of the namespaces' names
PG_SOCKET_DIR = "/var/run/postgresql"
#: Event types that end a lease (the attempt is over, whatever comes later).
LEASE_ENDS = {"expired", "timed_out", "failed", "released", "cancelled", "dead", "succeeded"}

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


# -- hosts: network namespaces, or plain loopback ------------------------------------------


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return {**base, **extra}


class LocalSite:
    """Every "host" is this machine; the coordinator listens on loopback (tokens)."""

    netns = False

    def __init__(self, data: Path, port: int) -> None:
        self.data = data
        self.url = f"http://127.0.0.1:{port}"
        self.port = port

    def spawn(self, host: str, argv: list[str], log: IO[bytes],
              env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def coordinator_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def enroll(self, names: list[str]) -> None:
        pass

    def worker_args(self, name: str) -> list[str]:
        return ["--data", str(self.data), "--url", self.url, "--name", name]

    def client_args(self) -> list[str]:
        return ["--url", self.url, "--token", str(self.data / "admin.token")]

    def cut(self, host: str) -> None:
        raise RuntimeError("a network cut needs network namespaces")

    restore = cut

    def close(self) -> None:
        pass


class LanSite(LocalSite):
    """Hosts ``coord`` and ``w1``..``wN`` in network namespaces on one switch."""

    netns = True

    def __init__(self, data: Path, workers: list[str]) -> None:
        self.lan = Lan(("coord", *workers), prefix=LAN_PREFIX)
        self.lan.__enter__()
        super().__init__(data, PORT)
        self.url = f"https://{self.lan.address('coord')}:{PORT}"

    def spawn(self, host: str, argv: list[str], log: IO[bytes],
              env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.lan.popen(host, argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)

    def coordinator_args(self) -> list[str]:
        return ["--host", "0.0.0.0", "--port", str(PORT), "--no-mdns"]

    def enroll(self, names: list[str]) -> None:
        procs = [self.lan.popen("coord", [hearth_bin(), "enroll", name, "--force", "--out",
                                          str(self.bundle(name)), "--data", str(self.data)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env({}))
                 for name in names]
        for name, proc in zip(names, procs, strict=True):
            out, _ = proc.communicate(timeout=90)
            if proc.returncode != 0:
                raise RuntimeError(f"hearth enroll {name} failed: {out.decode().strip()}")

    def bundle(self, name: str) -> Path:
        return self.data.parent / f"{name}.hearth"

    def worker_args(self, name: str) -> list[str]:
        return [str(self.bundle(name)), "--no-mdns"]

    def client_args(self) -> list[str]:
        return ["--url", self.url, "--bundle", str(self.data / "admin.hearth")]

    def cut(self, host: str) -> None:
        self.lan.cut(host)

    def restore(self, host: str) -> None:
        self.lan.restore(host)

    def close(self) -> None:
        self.lan.__exit__(None, None, None)


# -- PostgreSQL ---------------------------------------------------------------------------


def pg_socket_url(store_url: str) -> str | None:
    """``store_url`` through the Unix socket of a local PostgreSQL, or None if there is
    none. A network namespace has no route to the machine's loopback, but a Unix socket
    is a file: the coordinator on host ``coord`` reaches the database through it."""
    parts = urlsplit(store_url)
    port = parts.port or 5432
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not Path(
            PG_SOCKET_DIR, f".s.PGSQL.{port}").exists():
        return None
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{parts.path}?host={PG_SOCKET_DIR}&port={port}"


def coordinator_store_url(store_url: str, netns: bool) -> str:
    """The URL the coordinator uses (see :func:`pg_socket_url`)."""
    if not netns or not store_url.startswith("postgres"):
        return store_url
    url = pg_socket_url(store_url)
    if url is None:
        raise RuntimeError(f"PostgreSQL at {urlsplit(store_url).netloc} cannot be reached "
                           f"from a network namespace (no socket in {PG_SOCKET_DIR})")
    return url


def pg_cluster(store_url: str) -> list[str] | None:
    """``[version, name]`` of the local cluster serving ``store_url`` (pg_lsclusters)."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    port = str(urlsplit(store_url).port or 5432)
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                             check=False).stdout
    for line in listing.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[2] == port:
            return cols[:2]
    return None


def restart_postgres(cluster: list[str], store_url: str) -> tuple[float, float]:
    """Restart the cluster; return when it stopped answering and when it answered again,
    as seen by a connection that runs ``SELECT 1`` every 10 ms (``pg_ctlcluster`` itself
    spends a second or two before and after the outage)."""
    import psycopg

    seen: list[float] = []
    finished = threading.Event()

    def probe() -> None:
        with psycopg.connect(store_url, autocommit=True, connect_timeout=2) as conn:
            try:
                while not finished.is_set():
                    conn.execute("SELECT 1")
                    time.sleep(0.01)
                return
            except psycopg.Error:
                seen.append(time.time())
        while True:
            try:
                psycopg.connect(store_url, autocommit=True, connect_timeout=2).close()
            except psycopg.Error:
                time.sleep(0.01)
                continue
            seen.append(time.time())
            return

    watcher = threading.Thread(target=probe, daemon=True)
    watcher.start()
    time.sleep(0.05)
    try:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"],
                       check=True, capture_output=True, timeout=120)
        time.sleep(0.1)
    finally:
        finished.set()
        watcher.join(60)
    if len(seen) < 2:
        raise RuntimeError("PostgreSQL was restarted, but the probe saw no outage")
    return seen[0], seen[1]


# -- the processes of one run -------------------------------------------------------------


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
        proc = self.site.spawn(host, argv, log, _env(env or {}))
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
            sys.executable, str(Path(__file__).resolve()), "_submit",
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


# -- faults ---------------------------------------------------------------------------------


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
        flow = plan.flow_time
        for frac in plan.coordinator_kills:
            self._at(start + frac * flow, "coordinator kill", self.kill_coordinator)
        if plan.cut_at is not None:
            self.victim = victim = self.cluster.names[-1]
            self._at(start + plan.cut_at * flow, f"cut {victim}", lambda: self.cut_off(victim))
            self._at(start + plan.cut_at * flow + plan.cut_for, f"restore {victim}",
                     lambda: self.restore(victim))
        if postgres and plan.pg_restart_at is not None:
            if self.pg is None:
                raise SystemExit("cannot restart PostgreSQL: no local cluster found with "
                                 "pg_lsclusters/pg_ctlcluster (use --no-pg-restart)")
            self._at(start + plan.pg_restart_at * flow, "postgres restart", self.restart_pg)
        for i in range(plan.worker_kills):
            when = start + flow * (0.1 + 0.8 * (i + self.rng.uniform(0.2, 0.8))
                                   / plan.worker_kills)
            self._at(when, "worker kill", self.kill_worker)

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


# -- one run --------------------------------------------------------------------------------


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


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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


# -- the checks -----------------------------------------------------------------------------


def check(report: Report, store_url: str, side_log: Path, acked: list[str],
          worker_logs: list[Path]) -> None:
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
    report.invariants["no completion accepted from a stale lease"] = _stale(jobs, history, ran)
    report.invariants["throughput back to 90 % within 10 s"] = _recovery(
        report, succeeded_at)


def _stale(jobs: dict[str, Any], history: dict[str, list[Any]],
           ran: set[tuple[str, str, int]]) -> list[str]:
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


def _recovery(report: Report, succeeded_at: list[float]) -> list[str]:
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


# -- output ---------------------------------------------------------------------------------


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


# -- the submitter (runs on the coordinator's host) ------------------------------------------


def submit_main(argv: list[str]) -> int:
    """Submit ``--jobs`` jobs at ``--rate`` per second (catching up after an outage), in
    batches with idempotency keys so a batch whose answer was lost is safely sent again;
    append each acknowledged id to ``--out``."""
    from hearth.client import Client
    from hearth.errors import HearthError, Unavailable

    parser = argparse.ArgumentParser(prog="chaos.py _submit")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token")
    parser.add_argument("--bundle")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--max-attempts", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    token = Path(args.token).read_text().strip() if args.token else None
    backoff = {"initial": 0.1, "max": 1.0, "multiplier": 2.0, "jitter": 0.2}
    done = retries = 0
    with Client(args.url, token=token, bundle=args.bundle, timeout=5.0) as client, \
            open(args.out, "a") as out:
        start = time.monotonic()
        while done < args.jobs:
            due = min(args.jobs, int((time.monotonic() - start) * args.rate) + 1)
            if due <= done:
                time.sleep(max(0.0, start + done / args.rate - time.monotonic()))
                continue
            numbers = range(done, min(due, done + 200))
            specs = [{"kind": KIND, "payload": n, "idempotency_key": f"chaos-{n}",
                      "lease_ttl": args.lease_ttl, "max_attempts": args.max_attempts,
                      "backoff": backoff} for n in numbers]
            try:
                answered = client.submit_many(specs)
            except HearthError as exc:
                retries += 1
                if not isinstance(exc, Unavailable) and exc.status < 500:
                    raise
                time.sleep(0.05)
                continue
            now = time.time()
            out.write("".join(f"{job.id} {now:.6f}\n" for job in answered))
            out.flush()
            done = numbers[-1] + 1
    print(f"submitted {done} jobs, {retries} batches sent again", flush=True)
    return 0


# -- command line ----------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/chaos.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Crash, restart and cut Hearth's processes while jobs flow, then check that
            nothing went wrong. A submitter offers a steady load of quick jobs (a few ms
            each) to a real coordinator; real worker processes run them, each on its own
            network namespace, and write "<job_id> <worker> <attempt>" to a side log.

            faults, at fixed fractions of the flow time (jobs / rate):
              - kill -9 of random workers, each restarted 1 s later (--quick: one)
              - kill -9 of the coordinator, restarted on its port and data dir (two;
                --quick: one)
              - one PostgreSQL restart with pg_ctlcluster (PostgreSQL store only)
              - the last worker's network cut for 7 s (lease TTL 3 s), then restored

            invariants, checked from the store and the side log at the end:
              1. every job whose submit was acknowledged succeeded
              2. no job has two "succeeded" events
              3. no completion came from a stale lease: each success's attempt and
                 worker match the last lease granted before it, no expiry or failure
                 ended that lease first, the stored result was written by that very
                 attempt, and the side log shows that handler run
              4. completions/s back to 90 % of the pre-fault level within 10 s of each
                 coordinator kill and PostgreSQL restart

            It prints progress, then per store: the jobs and events, the faults with
            their times (from the first acknowledged submit), how long each restart
            took and how long throughput took to recover, leases that expired, handler
            runs beyond the first (allowed: delivery is at-least-once) and late outcomes
            the coordinator refused as stale. About a minute per store at the defaults.
            Needs root (namespaces, pg_ctlcluster) unless told otherwise below."""),
        epilog=textwrap.dedent("""\
            examples:
              python bench/chaos.py                      # make chaos: both stores
              python bench/chaos.py --quick --store sqlite
              python bench/chaos.py --store postgres --jobs 50000 --rate 500
              python bench/chaos.py --no-netns --no-pg-restart   # no root needed

            Exit status 1 if an invariant failed; the work dir (data dir, every
            process's log, the side log, acknowledged ids) is kept then and named.
            Each store's run appends one JSON line to bench/results/chaos.jsonl.
            PostgreSQL comes from $HEARTH_TEST_PG_DSN: a fresh database is made and
            dropped; the coordinator reaches it through its Unix socket."""))
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both",
                        help="which store to run on (default: both, one after the other)")
    parser.add_argument("--quick", action="store_true",
                        help="the short variant CI runs: 1,500 jobs at 100/s, one fault "
                             "of each kind")
    parser.add_argument("--jobs", type=int, help="jobs per store (default 20,000)")
    parser.add_argument("--rate", type=float, help="offered load in jobs/s (default 400)")
    parser.add_argument("--workers", type=int,
                        help="worker processes, at least 2 (default 4; --quick 3)")
    parser.add_argument("--no-netns", action="store_true",
                        help="run every process on loopback; skips the network cut")
    parser.add_argument("--no-pg-restart", action="store_true",
                        help="do not restart PostgreSQL")
    parser.add_argument("--seed", type=int, help="seed for the choice of workers to kill")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work dir of a passing run too")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    changes: dict[str, Any] = {k: v for k, v in (("jobs", args.jobs), ("rate", args.rate),
                                                 ("workers", args.workers)) if v is not None}
    if args.no_netns:
        changes["netns"] = False
        changes["cut_at"] = None
    if args.no_pg_restart:
        changes["pg_restart_at"] = None
    plan = dataclasses.replace(plan, **changes)
    if plan.workers < 2 or plan.jobs < 1 or plan.rate <= 0:
        raise SystemExit("need at least 2 workers, 1 job and a positive rate")
    return plan


@contextlib.contextmanager
def _store(kind: str, path: Path) -> Iterator[str]:
    """A SQLite file in the work dir (kept with it), or a fresh PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{path / 'hearth.db'}"
        return
    with fresh_store(kind) as (url, _):
        yield url


def main(argv: list[str]) -> int:
    if argv[:1] == ["_submit"]:
        return submit_main(argv[1:])
    args = parse(argv)
    plan = plan_from(args)
    if plan.netns and (reason := available()) is not None:
        raise SystemExit(f"{reason} Run as root, or pass --no-netns.")
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    if "postgres" in stores and plan.netns and pg_socket_url(PG_DSN) is None:
        raise SystemExit(f"PostgreSQL at {PG_DSN} has no local Unix socket, so the "
                         "coordinator's namespace cannot reach it; pass --no-netns.")
    failed = False
    for store in stores:
        path = Path(tempfile.mkdtemp(prefix="hearth-chaos-"))
        with _store(store, path) as url:
            report = run(url, path, plan, store=store, seed=args.seed)
            show(report)
            record(report)
            if report.ok and not args.keep:  # else the logs and side log stay
                shutil.rmtree(path, ignore_errors=True)
            failed = failed or not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
