"""Shared test helpers: a real coordinator in a subprocess.

:class:`CoordinatorProcess` runs ``hearth.coordinator.run(Settings(...))`` in a child
Python (no CLI involved), waits for ``<data>/coordinator.json`` written by that child,
and reads the admin token. It can be stopped and started again on the same port and
data dir, to test what clients and workers do across a coordinator restart. Its output
goes to ``<data>/coordinator.log`` (shown by :meth:`log_tail` when a test fails).

For acceptance tests of the CLI: :func:`hearth` runs one ``hearth`` command,
:class:`CliCoordinator` starts the coordinator with ``hearth coordinator`` and
:class:`WorkerProcess` runs ``hearth worker --import ...`` as a child process.

Tests import it as ``from helpers import CoordinatorProcess`` (``tests/`` is on the
path because ``tests/conftest.py`` lives there).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_CHILD = """
import sys
from pathlib import Path
from hearth.coordinator import Settings, run
extra = {"store_url": sys.argv[3]} if len(sys.argv) > 3 else {}
run(Settings(data_dir=Path(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), **extra))
"""


class CoordinatorProcess:
    """A coordinator child process on ``data`` (port 0 picks a free port once)."""

    def __init__(self, data: Path, *, port: int = 0, store_url: str | None = None) -> None:
        self.data = Path(data)
        self.port = port
        self.store_url = store_url
        self.url = ""
        self.token = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> CoordinatorProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> CoordinatorProcess:
        if self.running:
            raise RuntimeError("this coordinator is already running")
        self.data.mkdir(parents=True, exist_ok=True)
        endpoint = self.data / "coordinator.json"
        endpoint.unlink(missing_ok=True)
        args = self._command()
        self._log = open(self.data / "coordinator.log", "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._close_log()
                raise RuntimeError("the coordinator exited with status "
                                   f"{self._proc.returncode}:\n{self.log_tail()}")
            try:
                info = json.loads(endpoint.read_text())
                if info.get("pid") == self._proc.pid:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the coordinator did not start within {timeout:g} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        self.url = str(info["url"]).rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        self.token = (self.data / "admin.token").read_text().strip()
        return self

    def _command(self) -> list[str]:
        args = [sys.executable, "-c", _CHILD, str(self.data), str(self.port)]
        if self.store_url:
            args.append(self.store_url)
        return args

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit within ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: the coordinator dies without any cleanup."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
        self._close_log()

    def restart(self) -> CoordinatorProcess:
        """Stop and start again on the same port and data dir."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.data / "coordinator.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()


def eventually(check: Callable[[], Any], *, timeout: float = 30.0, every: float = 0.05,
               what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail after
    ``timeout`` seconds. For waiting on conditions, never for timing assertions."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


@contextlib.contextmanager
def running_worker(worker: Any, *, join_timeout: float = 60.0) -> Iterator[Any]:
    """Run ``worker.run()`` (a :class:`hearth.worker.Worker`) on a thread; on exit stop it
    gracefully, wait for it, and re-raise anything it raised."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"worker-{worker.name}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(join_timeout)
        if thread.is_alive():
            raise AssertionError(f"worker {worker.name} did not stop within "
                                 f"{join_timeout:g} s")
    if failure:
        raise failure[0]


# -- the real CLI as processes (acceptance tests) ------------------------------------

#: The ``hearth`` console script of the environment running the tests.
HEARTH = str(Path(sys.executable).with_name("hearth"))


def hearth(*args: str, data: Path | None = None, url: str | None = None,
           env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """Run ``hearth ARGS`` to completion and return its exit code, stdout and stderr.

    ``data`` and ``url`` become ``--data``/``--url`` after the arguments (every client
    command takes them); ``$HEARTH_*`` of the test environment are not inherited.
    """
    command = [HEARTH, *args]
    if data is not None:
        command += ["--data", str(data)]
    if url is not None:
        command += ["--url", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(env), cwd=cwd, check=False)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without ``$HEARTH_*``, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return {**base, **(extra or {})}


class CliCoordinator(CoordinatorProcess):
    """A coordinator started the way users start it: ``hearth coordinator``, with
    any ``extra`` command-line options."""

    def __init__(self, data: Path, *, port: int = 0, store_url: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        super().__init__(data, port=port, store_url=store_url)
        self.extra = extra

    def _command(self) -> list[str]:
        args = [HEARTH, "coordinator", "--data", str(self.data), "--port", str(self.port)]
        if self.store_url:
            args += ["--store", self.store_url]
        return [*args, *self.extra]


class WorkerProcess:
    """``hearth worker --import MODULE ...`` as a child process (log in ``<data>``).

    Stop it with :meth:`stop` (SIGTERM: graceful, then SIGKILL) or use it as a context
    manager. ``env`` adds variables (e.g. ``PYTHONPATH`` for a handler module written by
    the test); ``cwd`` is where relative imports such as ``examples.*`` resolve.
    """

    def __init__(self, data: Path, *imports: str, url: str | None = None,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.data = Path(data)
        self.command = [HEARTH, "worker", "--data", str(self.data), *args]
        if url is not None:
            self.command += ["--url", url]
        for module in imports:
            self.command += ["--import", module]
        self.env = cli_env(env)
        self.cwd = cwd
        self.log_path = self.data / f"worker-{id(self):x}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("this worker is not running")
        return self._proc.pid

    def start(self) -> WorkerProcess:
        self.data.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(self.command, stdout=self._log,
                                      stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        return self

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            code = proc.returncode
        log, self._log = self._log, None
        if log is not None:
            log.close()
        return code

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


__all__ = [
    "HEARTH",
    "CliCoordinator",
    "CoordinatorProcess",
    "WorkerProcess",
    "cli_env",
    "eventually",
    "hearth",
    "running_worker",
]


@contextlib.contextmanager
def http_server(handler: Callable[[Any], Any]) -> Iterator[str]:
    """A real HTTP server on a loopback port, on its own thread, answering every
    request with ``await handler(request)`` (an ``aiohttp.web`` request and response):
    for client tests that need answers a coordinator would never give. Yields the
    base URL."""
    import asyncio

    from aiohttp import web

    ready: list[str] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        ready.append(f"http://127.0.0.1:{port}")
        return runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="test-http-server", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the test HTTP server did not start within 10 s")
    try:
        yield ready[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
