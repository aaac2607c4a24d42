"""The one interface every system under test implements.

An adapter does only what a user of that system would do through its own public API:
start and stop its worker processes, enqueue a job with one client call, enqueue many
with its bulk API (or say it has none), and answer "how many of these jobs are
complete?" from the system's own state (its result store, registry or job table),
never from a side channel. The workloads (``workloads.py``) time these calls; the
adapter never measures anything itself.

Two task kinds exist on every system:
- ``noop(seq)``: does nothing (W1);
- ``stamp(seq)``: calls :func:`bench.peers.common.stamp` first thing (W2).

Each adapter's class docstring says how its workers are sized for this 2-core machine
and why; ``run.py`` records that text with the figures.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.peers.common import STAMPS_ENV, ProcessGroup, child_env

TASKS = ("noop", "stamp")


class System(ABC):
    """A job system under test, opened on fresh state for one workload."""

    name: ClassVar[str]
    #: Distributions whose versions go into the results.
    packages: ClassVar[tuple[str, ...]] = ()
    #: What the bulk enqueue uses, or why there is none (then ``enqueue_bulk`` is None).
    bulk_api: ClassVar[str | None] = None

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stamps = workdir / "stamps.txt"
        self.env = child_env(**{STAMPS_ENV: str(self.stamps)})
        self.stack = contextlib.ExitStack()
        self.groups: list[ProcessGroup] = []

    # -- lifecycle ---------------------------------------------------------------------

    @abstractmethod
    def open(self) -> None:
        """Fresh, empty state (a new database, a flushed Redis DB) and a client; start
        any server the system itself needs (Hearth's coordinator). Workers stay
        stopped. Register cleanups on ``self.stack``."""

    def close(self) -> None:
        for group in self.groups:
            group.stop(grace=2)
        self.groups.clear()
        self.stack.close()

    @abstractmethod
    def worker_commands(self) -> list[list[str]]:
        """The commands of one worker instance: its processes, started as one group."""

    def start_workers(self, instance: int = 0) -> ProcessGroup:
        group = ProcessGroup(self.worker_commands(), env=self.env,
                             log=self.workdir / f"workers-{instance}-{len(self.groups)}.log")
        self.groups.append(group)
        return group

    def stop_workers(self, group: ProcessGroup) -> None:
        group.stop()
        self.groups.remove(group)

    # -- jobs --------------------------------------------------------------------------

    @abstractmethod
    def enqueue(self, task: str, seq: int) -> Any:
        """Enqueue one job with one client call; answer a handle for counting."""

    def enqueue_bulk(self, task: str, seqs: Sequence[int]) -> list[Any] | None:
        """Enqueue many jobs with the system's bulk API; None when it has none."""
        return None

    @abstractmethod
    def count_complete(self, handles: Sequence[Any]) -> int:
        """How many of ``handles`` the system reports as successfully complete.

        May remember jobs already seen complete, so that repeated calls only ask about
        the rest (complete is final on every system here)."""

    # -- description -------------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        from bench.peers.common import package_versions

        return package_versions(self.packages)

    @classmethod
    def setup_note(cls) -> str:
        """The class docstring: how the workers are sized and why."""
        return " ".join(inspect.getdoc(cls).split()) if inspect.getdoc(cls) else ""
