"""The local worker processes of ``hearth up``: start, watch, restart, stop in order.

Each worker is a real ``hearth worker`` process (the same thing a user would run), in
its own session so a Ctrl-C in the terminal reaches only ``hearth up``, which then
stops the workers first (SIGTERM: finish or hand back their jobs) and the coordinator
last. A worker that dies while the pool is up is restarted with a growing pause, so
a broken handler module cannot spin the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import click

#: Seconds a worker gets after SIGTERM to finish or release its jobs before SIGKILL:
#: the worker's own grace (30 s) plus time to settle and report its last outcomes.
GRACE_SECONDS = 50.0


class WorkerPool:
    """``count`` processes of ``hearth worker --import <imports> --data <directory>``."""

    def __init__(self, directory: Path, count: int, concurrency: int,
                 imports: Sequence[str] = ("hearth.builtins",)) -> None:
        self.directory = directory
        self.count = count
        self.concurrency = concurrency
        self.imports = tuple(imports)
        self.url = ""
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._pauses = [1.0] * count
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor = threading.Thread(target=self._watch, name="hearth-pool", daemon=True)

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "hearth.cli", "worker", "--data", str(self.directory),
                   "--url", self.url, "--concurrency", str(self.concurrency)]
        for module in self.imports:
            command += ["--import", module]
        return command

    def _spawn(self, index: int) -> None:
        # The token is read from the data dir by the worker: never put it in argv.
        env = {k: v for k, v in os.environ.items() if k not in ("HEARTH_URL", "HEARTH_TOKEN")}
        self._procs[index] = subprocess.Popen(self._command(), start_new_session=True,
                                              stdin=subprocess.DEVNULL, env=env)

    def start(self, url: str) -> None:
        self.url = url
        with self._lock:
            if self._stopping.is_set():
                return
            for index in range(self.count):
                self._spawn(index)
        self._monitor.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                if self._stopping.is_set():
                    return
                for index, proc in enumerate(self._procs):
                    if proc is None or proc.poll() is None:
                        continue
                    pause = self._pauses[index]
                    click.echo(f"hearth up: worker {index + 1} exited with code "
                               f"{proc.returncode}; restarting it in {pause:g} s", err=True)
                    self._procs[index] = None
                    threading.Timer(pause, self._restart, args=(index,)).start()
                    self._pauses[index] = min(pause * 2, 60.0)

    def _restart(self, index: int) -> None:
        with self._lock:
            if not self._stopping.is_set() and self._procs[index] is None:
                self._spawn(index)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None]

    def hurry(self, *, kill: bool = False) -> None:
        """Signal the workers again: a second SIGTERM skips their grace period; ``kill``
        ends them at once."""
        with self._lock:
            procs = [p for p in self._procs if p is not None and p.poll() is None]
        for proc in procs:
            if kill:
                proc.kill()
            else:
                proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, then SIGKILL the rest."""
        with self._lock:
            self._stopping.set()
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


__all__ = ["GRACE_SECONDS", "WorkerPool"]
