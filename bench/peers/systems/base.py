"""The one interface every system under test implements.

An adapter does only what a user of that system would do through its own public API:
start and stop its worker processes, enqueue a job with one client call, enqueue many
with its bulk API (or say it has none), and answer "how many of these jobs are
complete?" from the system's own state (its result store, registry or job table),
never from a side channel. The workloads (``workloads.py``) time these calls; the
adapter never measures anything itself.

Three task kinds exist on every system:
- ``noop(seq)``: does nothing (W1);
- ``stamp(seq)``: calls :func:`bench.peers.common.stamp` first thing (W2, W4);
- ``work(seq)``: :func:`bench.peers.common.work_started`, a 5 ms sleep, then
  :func:`bench.peers.common.work_finished` (W3).

Each adapter's class docstring says how its workers are sized for this 2-core machine
and why, and how the system gets back the jobs a killed worker held (W3); ``run.py``
records that text with the figures. One worker *instance* is what
:meth:`System.start_workers` starts: the same set of processes in every workload, one
process group, so that W3's ``kill -9`` of the group is a whole instance dying.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.peers.common import (
    INSTANCE_ENV,
    STAMPS_ENV,
    WORKLOG_ENV,
    ProcessGroup,
    child_env,
)

TASKS = ("noop", "stamp", "work")
#: Jobs per bulk call when a W4 backlog is loaded.
LOAD_CHUNK = 10_000


class TooSlow(Exception):
    """Loading a W4 backlog ran past its deadline."""


class System(ABC):
    """A job system under test, opened on fresh state for one workload."""

    name: ClassVar[str]
    #: Distributions whose versions go into the results.
    packages: ClassVar[tuple[str, ...]] = ()
    #: What the bulk enqueue uses, or why there is none (then ``enqueue_bulk`` is None).
    bulk_api: ClassVar[str | None] = None
    #: W3 and W4 enqueue with the bulk API when there is one, unless this is False (a
    #: system whose bulk API is slower than one call per job).
    use_bulk: ClassVar[bool] = True
    #: W4 measures this system's deep backlog however long loading it takes (Hearth:
    #: the issue's target is its); other systems are skipped when loading is too slow.
    backlog_required: ClassVar[bool] = False
    #: W3: how this system, set up as here, gets back the jobs a killed worker held
    #: (or that it does not), and which of its settings decide how soon.
    recovery: ClassVar[str] = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stamps = workdir / "stamps.txt"
        self.worklog = workdir / "worklog.txt"
        self.env = child_env(**{STAMPS_ENV: str(self.stamps), WORKLOG_ENV: str(self.worklog)})
        self.stack = contextlib.ExitStack()
        self.groups: list[ProcessGroup] = []
        #: Every group ever started, for the logs of a failed part (``groups`` holds
        #: only those not stopped yet).
        self.started: list[ProcessGroup] = []

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
    def worker_commands(self, instance: int) -> list[list[str]]:
        """The commands of worker instance ``instance``: its processes, started as one
        group. Where a system names its workers, a restarted instance gets the names
        it had (as a supervisor restarting it would)."""

    def start_workers(self, instance: int = 0) -> ProcessGroup:
        generation = sum(1 for g in self.groups if g.label.split(".")[0] == str(instance))
        label = f"{instance}.{generation}"
        group = ProcessGroup(self.worker_commands(instance),
                             env={**self.env, INSTANCE_ENV: label}, label=label,
                             log=self.workdir / f"workers-{label}.log")
        self.groups.append(group)
        self.started.append(group)
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

    @property
    def bulk(self) -> bool:
        """Whether W3 and W4 enqueue with the bulk API: there is one, and ``use_bulk``."""
        return self.use_bulk and type(self).enqueue_bulk is not System.enqueue_bulk

    def enqueue_many(self, task: str, seqs: Sequence[int]) -> list[Any]:
        """The bulk API if :attr:`bulk`, else one call per job."""
        handles = self.enqueue_bulk(task, seqs) if self.bulk else None
        return handles if handles is not None else [self.enqueue(task, s) for s in seqs]

    def load_backlog(self, task: str, seqs: range, deadline: float) -> str:
        """Queue ``seqs`` for W4 (workers stopped) the fastest documented way: the bulk
        API in chunks of ``LOAD_CHUNK`` if :attr:`bulk`, else one call per job; answers
        which. Raises :class:`TooSlow` once ``time.monotonic()`` passes ``deadline``.
        Handles are not kept."""
        step = LOAD_CHUNK if self.bulk else 1_000  # look at the clock as often
        for start in range(seqs.start, seqs.stop, step):
            self.enqueue_many(task, range(start, min(start + step, seqs.stop)))
            done = min(start + step, seqs.stop) - seqs.start
            if time.monotonic() > deadline and done < len(seqs):
                raise TooSlow(f"{done:,} of {len(seqs):,} jobs loaded by the deadline")
        if self.bulk:
            return f"{self.bulk_api}, {LOAD_CHUNK:,} jobs per call"
        return "one enqueue call per job"

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
