"""What a handler sees of its job: :class:`JobContext`.

One context per attempt. It gives the payload (decoded), the input blobs (streamed,
read whole, or — for sync handlers — downloaded to a temp file removed after the job),
a thread-safe progress report the next heartbeat carries, and the cancellation flag.

A context never talks to the coordinator on its own except to fetch blobs: progress
and outcomes travel in the runtime's batched heartbeats and finishes. Sync handlers
run on executor threads, so every method meant for them is safe off the loop thread.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hearth.client import AsyncClient
from hearth.domain.validation import DIGEST_RE
from hearth.errors import NotFound, ValidationError
from hearth.wire import BlobRefOut, JobOut, ProgressOut
from hearth.worker.outcome import JobCancelled

_FLAG_LOCK = threading.Lock()


class CancelFlag:
    """A ``threading.Event``-like flag: ``is_set()``, ``wait(timeout)``, truthiness.

    The event behind ``wait`` is made only when someone waits, so the common case (a
    job that is never cancelled and never waited on) costs one attribute.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def __bool__(self) -> bool:
        return self._set

    def __repr__(self) -> str:
        return f"CancelFlag(set={self._set})"

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with _FLAG_LOCK:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block (a sync handler's thread) until set or ``timeout``; True if set."""
        if self._set:
            return True
        with _FLAG_LOCK:
            if self._event is None:
                self._event = threading.Event()
                if self._set:
                    self._event.set()
            event = self._event
        return event.wait(timeout)


class JobContext:
    """The job a handler runs, and the ways it can talk back while it runs."""

    def __init__(self, job: JobOut, token: str, client: AsyncClient,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.token = token
        #: Set when the job must stop: cancelled by a user, timed out, lease lost, or
        #: the worker shutting down. Sync handlers should check it between steps.
        self.cancelled = CancelFlag()
        #: Why ``cancelled`` was set: "cancel", "timeout", "stale" or "shutdown".
        self.reason: str | None = None
        self._client = client
        self._loop = loop
        self._progress: tuple[int, ProgressOut] | None = None
        self._tmp: Path | None = None
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JobContext(id={self.id!r}, kind={self.kind!r}, attempt={self.attempt})"

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def payload(self) -> Any:
        """The payload: the JSON value for JSON jobs, bytes for bytes jobs."""
        if self.job.payload_type == "json":
            return self.job.payload
        return self.job.payload_bytes()

    @property
    def payload_bytes(self) -> bytes:
        """The payload as bytes (JSON jobs: the JSON text)."""
        return self.job.payload_bytes()

    @property
    def input_blobs(self) -> list[BlobRefOut]:
        return list(self.job.input_blobs)

    # -- progress and cancellation ------------------------------------------------------

    def report_progress(self, percent: float | None = None, message: str = "") -> None:
        """Record progress; the next heartbeat carries it. Safe from any thread."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValidationError(f"progress percent must be between 0 and 100, not {percent}")
        with self._lock:
            version = self._progress[0] + 1 if self._progress else 1
            self._progress = (version, ProgressOut(percent=percent, message=str(message)))

    def progress_since(self, version: int) -> tuple[int, ProgressOut] | None:
        """The latest progress if it is newer than ``version`` (for the heartbeat)."""
        current = self._progress
        if current is None or current[0] <= version:
            return None
        return current

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job must stop."""
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.id} was stopped ({self.reason or 'cancelled'})")

    def interrupt(self, reason: str) -> bool:
        """Mark the job as stopping for ``reason``; False if it already was."""
        with self._lock:
            if self.reason is not None:
                return False
            self.reason = reason
        self.cancelled.set()
        return True

    # -- input blobs --------------------------------------------------------------------

    def _ref(self, name_or_digest: str) -> BlobRefOut:
        for ref in self.job.input_blobs:
            if ref.name and ref.name == name_or_digest:
                return ref
        for ref in self.job.input_blobs:
            if ref.digest == name_or_digest:
                return ref
        if isinstance(name_or_digest, str) and DIGEST_RE.match(name_or_digest):
            return BlobRefOut(digest=name_or_digest, size=0)
        names = ", ".join(repr(r.name or r.digest) for r in self.job.input_blobs) or "none"
        raise NotFound(f"job {self.id} has no input blob {name_or_digest!r}; its blobs are: "
                       f"{names}")

    async def open_blob(self, name_or_digest: str) -> AsyncIterator[bytes]:
        """An input blob's content in chunks (by its name in the job, or its digest)."""
        async for block in self._client.stream_blob(self._ref(name_or_digest).digest):
            yield block

    async def read_blob(self, name_or_digest: str) -> bytes:
        """A whole input blob in memory."""
        return await self._client.get_blob(self._ref(name_or_digest).digest)

    async def save_blob(self, name_or_digest: str) -> Path:
        """Download an input blob to a temp file (removed after the job); its path."""
        ref = self._ref(name_or_digest)
        key = ref.digest + "/" + ref.name
        with self._lock:
            known = self._paths.get(key)
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix=f"hearth-{self.id}-"))
            target = self._tmp / (ref.name or ref.digest)
        if known is not None:
            return known
        if target.exists():  # another blob with this name: keep both
            target = self._tmp / ref.digest
        await self._client.download_blob(ref.digest, target)
        with self._lock:
            self._paths[key] = target
        return target

    def blob_path(self, name_or_digest: str) -> Path:
        """For sync handlers: :meth:`save_blob`, blocking until the file is there."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError(
                "JobContext.blob_path blocks and cannot be called from an async handler; "
                "use `await ctx.save_blob(...)` there")
        future = asyncio.run_coroutine_threadsafe(self.save_blob(name_or_digest), self._loop)
        return future.result()

    def cleanup(self) -> None:
        """Remove the job's temp files (called by the runtime after the job)."""
        with self._lock:
            tmp, self._tmp = self._tmp, None
            self._paths.clear()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["CancelFlag", "JobContext"]
