"""SQLite's WAL is checkpointed by the store's own thread, never inside a commit.

A real store on a real file: the commits of the coordinator's writer connection must
not checkpoint (that stalled the event loop for milliseconds: W2's p99), and the WAL
must still stay short while jobs keep coming.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hearth.domain.jobs import JobSpec
from hearth.ids import new_job_id
from hearth.store import open_store
from hearth.store.sql import backend


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _submit(store: object, n: int) -> None:
    specs = [JobSpec(kind="k", payload=os.urandom(8000)) for _ in range(n)]
    store.submit(specs, now=time.time(), new_id=new_job_id)  # type: ignore[attr-defined]


def test_commits_never_checkpoint_and_the_thread_keeps_the_wal_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "CHECKPOINT_EVERY", 0.05)
    path = tmp_path / "hearth.db"
    store = open_store(f"sqlite:///{path}")
    try:
        _submit(store, 1)
        writer = store._b._writer  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        sizes = []
        for _ in range(8):  # about 1 MB of pages per round, 8 MB in all
            _submit(store, 120)
            time.sleep(0.3)  # the checkpointer runs; the next commit starts the WAL over
            sizes.append(_wal(path))
        assert max(sizes) < 4_000_000, sizes
        # Everything committed is in the database file, readable by a new connection.
        assert sum(c.count for c in store.counts()) == 8 * 120 + 1
    finally:
        store.close()
    assert _wal(path) == 0  # the last connection to close checkpointed the rest


def test_without_the_checkpointer_the_wal_would_grow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: the same load with the thread never
    checkpointing leaves every page in the WAL."""
    monkeypatch.setattr(backend, "CHECKPOINT_EVERY", 3600.0)
    path = tmp_path / "hearth.db"
    store = open_store(f"sqlite:///{path}")
    try:
        for _ in range(8):
            _submit(store, 120)
        assert _wal(path) > 7_000_000
    finally:
        store.close()


def _steady_writes(store: object, path: Path, seconds: float) -> tuple[int, int]:
    """Commits back to back for ``seconds``: (the largest WAL seen, commits made)."""
    largest = commits = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _submit(store, 8)  # about 64 KB of pages per commit
        commits += 1
        largest = max(largest, _wal(path))
    return largest, commits


def test_under_steady_writes_the_wal_is_still_started_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With commits back to back one always lands while a checkpoint runs, so no
    checkpoint alone ever copies the whole WAL; past the limit, the writer runs one
    itself after its commit, and the next commit starts the WAL over."""
    monkeypatch.setattr(backend, "CHECKPOINT_EVERY", 0.02)
    monkeypatch.setattr(backend, "WAL_PAGES_LIMIT", 256)  # 1 MiB
    path = tmp_path / "hearth.db"
    store = open_store(f"sqlite:///{path}")
    try:
        largest, commits = _steady_writes(store, path, 2.0)
        assert commits * 64_000 > 30_000_000, commits  # the WAL would have grown past it
        assert largest < 12_000_000, largest
        assert sum(c.count for c in store.counts()) == commits * 8
    finally:
        store.close()


def test_under_steady_writes_without_the_limit_the_wal_grows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: PASSIVE checkpoints alone, racing the writer."""
    monkeypatch.setattr(backend, "CHECKPOINT_EVERY", 0.02)
    monkeypatch.setattr(backend, "WAL_PAGES_LIMIT", 10**9)
    path = tmp_path / "hearth.db"
    store = open_store(f"sqlite:///{path}")
    try:
        largest, commits = _steady_writes(store, path, 2.0)
        assert largest > 20_000_000, (largest, commits)
    finally:
        store.close()
