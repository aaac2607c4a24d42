"""What every peer adapter and the driver share: worker process groups, the side files
the W2/W4 handlers stamp and the W3 handlers log to, fresh PostgreSQL databases and
Redis DBs.

This module is imported in both virtualenvs (the project's, for Hearth, and
``bench/.peers-venv``, for the peers) and by the worker processes of every system, so
it imports nothing beyond the standard library at module level. It never measures:
the workloads do (``workloads.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_DSN = os.environ.get("HEARTH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379")

# Set by the driver before it imports an adapter; inherited by the worker processes.
STAMPS_ENV = "PEERS_STAMPS"  # the side file W2 handlers append "<seq> <time.time()>" to
WORKDIR_ENV = "PEERS_WORKDIR"  # a fresh directory for this run's files (SQLite databases)
WORKLOG_ENV = "PEERS_WORKLOG"  # the side file W3 handlers log every start and finish to
INSTANCE_ENV = "PEERS_INSTANCE"  # "<instance>.<generation>" of the worker group (W3)

#: How long a W3 ``work`` job sleeps.
WORK_SECONDS = 0.005


def workdir() -> Path:
    """This run's directory (set by the driver before it imports an adapter)."""
    return Path(os.environ[WORKDIR_ENV])


def _append(env: str, line: str) -> None:
    fd = os.open(os.environ[env], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def stamp(seq: int) -> None:
    """The W2 and W4 handler body: note when the handler started, on the machine clock.

    One ``O_APPEND`` write per line keeps lines whole across processes and threads.
    The time is read first, so the write itself is not part of the latency."""
    now = time.time()
    _append(STAMPS_ENV, f"{seq} {now!r}\n")


def _work_line(seq: int, phase: str) -> None:
    now = time.time()
    _append(WORKLOG_ENV, f"{seq} {now!r} {os.environ.get(INSTANCE_ENV, '?')} "
                         f"{os.getpid()} {phase}\n")


def work_started(seq: int) -> None:
    """First thing a W3 ``work`` handler does: log ``<seq> <time> <instance> <pid> s``.
    Every execution logs its start, so a job run twice shows twice."""
    _work_line(seq, "s")


def work_finished(seq: int) -> None:
    """Last thing a W3 ``work`` handler does: the same line ending in ``d`` (its body ran
    to the end; whether the system then recorded the outcome is up to the system)."""
    _work_line(seq, "d")


def work(seq: int) -> None:
    """The W3 handler body for sync handlers: log the start, sleep 5 ms, log the end.
    Async handlers do the same with ``await asyncio.sleep(WORK_SECONDS)``."""
    work_started(seq)
    time.sleep(WORK_SECONDS)
    work_finished(seq)


class LineReader:
    """Follows an append-only side file and hands out the whole lines added since the
    last look (a line still being written waits for the next look)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def new_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        return lines


class WorkLog(LineReader):
    """The W3 side file, read into ``(seq, time, instance, pid, phase)`` events."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.events: list[tuple[int, float, str, int, str]] = []

    def refresh(self) -> None:
        for line in self.new_lines():
            seq, at, instance, pid, phase = line.decode().split()
            self.events.append((int(seq), float(at), instance, int(pid), phase))


class StampReader(LineReader):
    """Follows the side file and answers when handler ``seq`` started."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.seen: dict[int, list[float]] = {}
        #: Every handler start read so far, in file order (W4 counts and times these).
        self.starts: list[float] = []

    def refresh(self) -> None:
        """Read the lines appended since the last look."""
        for line in self.new_lines():
            seq, at = line.split()
            self.seen.setdefault(int(seq), []).append(float(at))
            self.starts.append(float(at))

    def wait(self, seq: int, timeout: float,
             still: Callable[[], None] | None = None) -> float:
        """The first handler start of ``seq``; polls the file every 0.5 ms, and calls
        ``still()`` (which may raise) every second while it waits."""
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + 1
        while seq not in self.seen:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"handler for job {seq} did not start within {timeout:g}s")
            if still is not None and now > next_check:
                still()
                next_check = now + 1
            time.sleep(0.0005)
            self.refresh()
        return self.seen[seq][0]


class ProcessGroup:
    """Worker processes started together in one new process group, stopped together.

    ``kill -9`` of the group (W3) reaches every process the system forked, which a
    kill of the parent alone would not."""

    def __init__(self, commands: Sequence[Sequence[str]], *, env: dict[str, str],
                 log: Path, cwd: Path = ROOT, label: str = "0.0") -> None:
        #: ``<instance>.<generation>``: which instance, and how many times it was
        #: started before (W3 restarts instance 0 as ``0.1``).
        self.label = label
        self.killed = False
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.procs: list[subprocess.Popen[bytes]] = []
        for command in commands:
            group = 0 if not self.procs else self.procs[0].pid
            self.procs.append(subprocess.Popen(
                list(command), env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=group))
        self.pgid = self.procs[0].pid

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def kill(self) -> None:
        """``kill -9`` the whole group at once (W3's crash), and reap it."""
        self.signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        self.killed = True
        self.log.close()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
        if self.killed:
            return  # reaped already; its process group id may belong to another by now
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
        self.signal(signal.SIGKILL)  # also reaps forked children the parents left behind
        for proc in self.procs:
            proc.wait()
        self.log.close()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for worker processes: this one, ``bench`` importable, no
    buffering, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def venv_bin(name: str) -> str:
    """A console script of the virtualenv this process runs in."""
    return str(Path(sys.executable).parent / name)


def redis_url(db: int) -> str:
    return f"{REDIS_BASE}/{db}"


def flush_redis(db: int) -> None:
    import redis

    client = redis.Redis.from_url(redis_url(db))
    try:
        client.flushdb()
    finally:
        client.close()


def redis_version() -> str:
    import redis

    client = redis.Redis.from_url(redis_url(0))
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def pg_started_at() -> str | None:
    """When the PostgreSQL server last started (a change during a part means somebody
    restarted it meanwhile), or None if it cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
    except psycopg.OperationalError:
        return None
    return str(row[0]) if row else None


def pg_version() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def _pg_admin(statement: str, attempts: int = 15) -> None:
    """Run one statement on the admin database, retrying for ~30 s while the server is
    unreachable (others on this machine restart PostgreSQL in their chaos runs)."""
    import psycopg

    for attempt in range(attempts):
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(statement)  # type: ignore[arg-type]
            return
        except psycopg.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(2)


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one run; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def package_versions(names: Sequence[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
