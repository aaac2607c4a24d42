"""Crashes of real processes: ``kill -9`` of a worker, of the coordinator, and retries.

Every process here is the real thing a user runs (``hearth coordinator``, ``hearth
worker``, ``hearth retry``), started as a child in its own session so that a crash is
a ``SIGKILL`` of its whole process group: no handler, no ``finally``, no flush. Each
test runs on a SQLite file and on a PostgreSQL database (``store_url``).

Handlers are written into ``tmp_path`` (put on the worker's ``PYTHONPATH``) and append
one line per step to a side log, which shows what really ran, independently of what
the coordinator recorded. Waits are conditions with generous limits, never timings.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from hearth.client import Client
from hearth.errors import Unavailable
from hearth.wire import EventOut
from helpers import HEARTH, cli_env, eventually, hearth

pytestmark = pytest.mark.slow

HANDLERS = '''
import time
from pathlib import Path

SIDE_LOG = Path({side_log!r})


def note(*words):
    with SIDE_LOG.open("a") as out:
        out.write(" ".join(str(w) for w in words) + "\\n")


def slow_first(ctx):
    note("start", ctx.id, ctx.attempt)
    time.sleep(5.0 if ctx.attempt == 1 else 0.05)
    note("done", ctx.id, ctx.attempt)
    return {{"attempt": ctx.attempt}}


def record(ctx):
    time.sleep(0.02)
    note("ran", ctx.id, ctx.attempt)


def always_fails(ctx):
    raise RuntimeError(f"broken on attempt {{ctx.attempt}}")


def register(worker):
    worker.handler("slow-first")(slow_first)
    worker.handler("record")(record)
    worker.handler("always-fails")(always_fails)
'''

#: Small, exact backoff (no jitter): 0.2 s, then 0.4 s.
BACKOFF = {"initial": 0.2, "max": 0.5, "multiplier": 2.0, "jitter": 0.0}


class Group:
    """One ``hearth`` command in a new session (its own process group), logging to a
    file. :meth:`crash` is ``kill -9`` of the whole group; :meth:`stop` is graceful."""

    def __init__(self, command: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.command = command
        self.log_path = log_path
        self.env = cli_env(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Group:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def crash(self) -> int:
        """SIGKILL the process group; returns the exit status (-9)."""
        assert self.proc is not None, "not started"
        self._signal_group(signal.SIGKILL)
        return self._reap(self.proc.wait(30))

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the group, then SIGKILL it if it has not exited within ``timeout``."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(30)
        self._reap(self.proc.returncode)

    def _reap(self, code: int) -> int:
        self.proc = None
        log, self._log = self._log, None
        if log is not None:
            log.close()
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Stack:
    """The processes of one test; :meth:`close` stops them all (workers first)."""

    def __init__(self, root: Path, store_url: str) -> None:
        self.data = root / "data"
        self.mods = root / "mods"
        self.side_log = root / "side.log"
        self.store_url = store_url
        self.url = ""
        self.token = ""
        self.coordinator: Group | None = None
        self.workers: list[Group] = []
        self.mods.mkdir()
        (self.mods / "crash_tasks.py").write_text(HANDLERS.format(side_log=str(self.side_log)))
        self.side_log.touch()

    def start_coordinator(self, port: int = 0) -> Group:
        """``hearth coordinator``; returns once it has announced its URL."""
        self.data.mkdir(parents=True, exist_ok=True)
        endpoint = self.data / "coordinator.json"
        endpoint.unlink(missing_ok=True)
        group = Group([HEARTH, "coordinator", "--data", str(self.data), "--port", str(port),
                       "--store", self.store_url], self.data / "coordinator.log").start()
        self.coordinator = group

        def announced() -> dict[str, object] | None:
            if not group.alive:
                raise AssertionError("the coordinator exited:\n" + group.log_tail())
            try:
                info: dict[str, object] = json.loads(endpoint.read_text())
            except (OSError, ValueError):
                return None
            return info if group.proc is not None and info.get("pid") == group.proc.pid else None

        info = eventually(announced, timeout=60, what="the coordinator listening")
        url = str(info["url"]).rstrip("/")
        assert not self.url or url == self.url, "the coordinator came back on another URL"
        self.url = url
        self.token = (self.data / "admin.token").read_text().strip()
        return group

    def start_worker(self, name: str | None = None) -> Group:
        """``hearth worker --import crash_tasks`` with the test's handler module."""
        index = len(self.workers)
        group = Group([HEARTH, "worker", "--import", "crash_tasks", "--data", str(self.data),
                       "--url", self.url, "--name", name or f"crash-worker-{index}",
                       "--concurrency", "4"],
                      self.data / f"worker-{index}.log",
                      env={"PYTHONPATH": str(self.mods)}).start()
        self.workers.append(group)
        return group

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.url, token=self.token, timeout=timeout)

    def side_lines(self) -> list[list[str]]:
        return [line.split() for line in self.side_log.read_text().splitlines()]

    def wait_for_node(self, client: Client, name: str) -> None:
        eventually(lambda: any(n.name == name for n in client.nodes()), timeout=60,
                   what=f"worker {name} registering")

    def close(self) -> None:
        for group in self.workers:
            group.stop()
        if self.coordinator is not None:
            self.coordinator.stop()

    def logs(self) -> str:
        parts = [f"--- worker {i} ---\n{w.log_tail()}" for i, w in enumerate(self.workers)]
        if self.coordinator is not None:
            parts.append(f"--- coordinator ---\n{self.coordinator.log_tail()}")
        return "\n".join(parts)


@pytest.fixture
def stack(tmp_path: Path, store_url: str) -> Iterator[Stack]:
    made = Stack(tmp_path, store_url)
    try:
        yield made
    finally:
        made.close()
        print(made.logs())  # shown by pytest only when the test failed


def free_port() -> int:
    """A port free right now, so a restarted coordinator comes back on the same URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def types_and_attempts(events: list[EventOut]) -> list[tuple[str, int]]:
    return [(e.type, e.attempt) for e in events]


# -- 1. kill -9 of a worker in the middle of a job ---------------------------------------


def test_a_job_whose_worker_is_killed_runs_again_and_succeeds_once(stack: Stack) -> None:
    stack.start_coordinator()
    first = stack.start_worker()
    with stack.client() as client:
        stack.wait_for_node(client, "crash-worker-0")
        job = client.submit("slow-first", {"n": 1}, lease_ttl=2, backoff=BACKOFF)
        eventually(lambda: ["start", job.id, "1"] in stack.side_lines(), timeout=60,
                   what="attempt 1 starting")

        assert first.crash() == -signal.SIGKILL
        stack.start_worker()
        done = client.wait(job.id, timeout=60)
        events = client.events(job.id)

    history = types_and_attempts(events)
    assert done.state == "succeeded", history
    assert done.attempt == 2, history
    assert [a for t, a in history if t == "succeeded"] == [2], history
    assert ("expired", 1) in history, history
    assert history.index(("expired", 1)) < history.index(("succeeded", 2)), history
    (winner,) = [e for e in events if e.type == "succeeded"]
    assert winner.worker == "crash-worker-1", history
    mine = [line for line in stack.side_lines() if line[1] == job.id]
    assert [line for line in mine if line[0] == "done"] == [["done", job.id, "2"]], mine
    assert ["start", job.id, "1"] in mine, mine


def test_a_worker_restarted_after_kill_9_frees_its_dead_processs_jobs_at_once(
        stack: Stack) -> None:
    """The same worker name registering from a new process ends the old process's
    leases at once: the job does not wait out its (here 120 s) lease."""
    stack.start_coordinator()
    first = stack.start_worker()
    with stack.client() as client:
        stack.wait_for_node(client, "crash-worker-0")
        job = client.submit("slow-first", {"n": 2}, lease_ttl=120, backoff=BACKOFF)
        eventually(lambda: ["start", job.id, "1"] in stack.side_lines(), timeout=60,
                   what="attempt 1 starting")
        assert first.crash() == -signal.SIGKILL
        stack.start_worker(name="crash-worker-0")
        done = client.wait(job.id, timeout=60)  # far less than the 120 s lease
        events = client.events(job.id)
    history = types_and_attempts(events)
    assert (done.state, done.attempt) == ("succeeded", 2), history
    [expired] = [e for e in events if e.type == "expired"]
    assert expired.attempt == 1 and "was restarted" in json.dumps(expired.data), expired
    assert [a for t, a in history if t == "succeeded"] == [2], history
    assert "registered as a new process" in stack.coordinator.log_tail(200)  # type: ignore[union-attr]


# -- 2. kill -9 of the coordinator while jobs are submitted and run -----------------------


class Submitter(threading.Thread):
    """Submits ``record`` jobs one at a time, as fast as it can; keeps only the ids of
    submits that were acknowledged. Refused connections while the coordinator is down
    are expected and counted; any other error is kept and fails the test."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(name="submitter", daemon=True)
        self.stack = stack
        self.acked: list[str] = []
        self.unavailable = 0
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        try:
            with self.stack.client(timeout=5.0) as client:
                while not self.halt.is_set():
                    n += 1
                    try:
                        job = client.submit("record", n, lease_ttl=3, backoff=BACKOFF)
                    except Unavailable:
                        self.unavailable += 1
                        time.sleep(0.02)
                        continue
                    self.acked.append(job.id)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def succeeded_ids(client: Client) -> set[str]:
    return {job.id for job in client.iter_jobs(kinds=["record"], states=["succeeded"],
                                               page_size=1000)}


def all_events(client: Client) -> list[EventOut]:
    found: list[EventOut] = []
    while page := client.feed(found[-1].seq if found else 0, limit=10_000):
        found.extend(page)
    return found


def test_killing_the_coordinator_under_load_loses_no_acknowledged_job(stack: Stack) -> None:
    port = free_port()
    coordinator = stack.start_coordinator(port)
    worker = stack.start_worker()
    submitter = Submitter(stack)
    with stack.client() as client:
        stack.wait_for_node(client, "crash-worker-0")
        submitter.start()
        try:
            eventually(lambda: len(submitter.acked) >= 300 or submitter.errors, timeout=60,
                       what="300 acknowledged submits")
            ran_before = len(stack.side_lines())
            assert ran_before > 0, "no job ran before the crash"
            assert coordinator.crash() == -signal.SIGKILL
            acked_at_crash = len(submitter.acked)
            time.sleep(1.0)  # the submitter keeps trying against a dead coordinator
            failed_while_down = submitter.unavailable
            stack.start_coordinator(port)
            eventually(lambda: len(submitter.acked) >= acked_at_crash + 300
                       or submitter.errors, timeout=60,
                       what="300 more acknowledged submits after the restart")
        finally:
            submitter.halt.set()
            submitter.join(30)
        assert not submitter.errors, submitter.errors
        assert failed_while_down > 0, "the submitter never noticed the coordinator was down"
        acked = list(submitter.acked)
        assert len(set(acked)) == len(acked)
        counts = (f"{len(acked)} acknowledged ({acked_at_crash} before the crash, "
                  f"{ran_before} run by then), {submitter.unavailable} submits refused")

        def all_succeeded() -> bool:
            return not set(acked) - succeeded_ids(client)

        try:
            eventually(all_succeeded, timeout=60, every=0.5,
                       what="every acknowledged job succeeding")
        except AssertionError:
            missing = sorted(set(acked) - succeeded_ids(client))
            states = collections.Counter(client.get(i).state for i in missing[:200])
            raise AssertionError(f"{len(missing)} of {counts} never succeeded; states of "
                                 f"the first 200: {dict(states)}") from None
        history = all_events(client)
        successes = collections.Counter(e.job_id for e in history if e.type == "succeeded")
        assert worker.alive, "the worker died instead of reconnecting"
        nodes = [n.name for n in client.nodes()]

    kinds = collections.Counter(e.type for e in history)
    counts += f"; events {dict(kinds)}"
    lost = [i for i in acked if successes[i] == 0]
    doubled = {i: n for i, n in successes.items() if n > 1}
    assert not lost, f"{len(lost)} of {counts} have no 'succeeded' event"
    assert not doubled, f"{len(doubled)} jobs of {counts} succeeded more than once: {doubled}"
    assert nodes == ["crash-worker-0"], nodes
    ran = {line[1] for line in stack.side_lines() if line[0] == "ran"}
    assert set(acked) <= ran, f"{len(set(acked) - ran)} of {counts} never ran a handler"


# -- 3. a handler that always fails: backoff, dead, then `hearth retry` -----------------


def test_a_failing_job_backs_off_dies_and_the_retry_command_runs_it_again(
        stack: Stack) -> None:
    stack.start_coordinator()
    stack.start_worker()
    with stack.client() as client:
        stack.wait_for_node(client, "crash-worker-0")
        job = client.submit("always-fails", "x", max_attempts=3, backoff=BACKOFF)
        dead = client.wait(job.id, timeout=60)
        events = client.events(job.id)
        assert dead.state == "dead", types_and_attempts(events)
        assert dead.failures == 3
        assert dead.attempt == 3
        assert dead.last_error is not None
        assert "broken on attempt 3" in dead.last_error.message

        endings = [e for e in events if e.type in ("failed", "dead")]
        assert [(e.type, e.attempt) for e in endings] == [
            ("failed", 1), ("failed", 2), ("dead", 3)], types_and_attempts(events)
        leases = {e.attempt: e for e in events if e.type == "leased"}
        for failure, expected in ((1, 0.2), (2, 0.4)):
            event = endings[failure - 1]
            spacing = float(event.data["retry_at"]) - event.at
            # At least the configured delay (1e-6: float rounding of epoch seconds), and
            # no more than it either: jitter is 0.
            assert expected - 1e-6 <= spacing < expected + 1e-3, (failure, event.data)
            # ... and the next attempt really waited for it.
            assert leases[failure + 1].at >= float(event.data["retry_at"]), (failure, events)

        retried = hearth("retry", job.id, data=stack.data)
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.split()[:2] == [job.id, "queued"]

        def failed_again() -> list[EventOut] | None:
            found = client.events(job.id)
            return found if ("failed", 4) in types_and_attempts(found) else None

        after = eventually(failed_again, timeout=60, what="attempt 4 running and failing")
    history = types_and_attempts(after)
    assert history.index(("dead", 3)) < history.index(("retried", 3)) < history.index(
        ("leased", 4)), history
    (fourth,) = [e for e in after if e.type == "failed" and e.attempt == 4]
    assert "broken on attempt 4" in str(fourth.data.get("error")), fourth.data
