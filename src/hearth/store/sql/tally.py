"""Exact job counts per (namespace, kind, state) without counting rows, on SQLite.

``GET /metrics`` reports how many jobs are in each state. Counting them is a scan of
the whole jobs table (a million rows: about a second here), repeated at every
scrape and by anyone who polls for completion. The SQLite store is the only writer
of its file (one coordinator per data dir), and every change of a job's state passes
through its transactions, so it keeps the counts itself:

- loaded once by counting, inside a write transaction (nothing changes meanwhile);
- changed by each committed transaction, after its commit and before the writer
  connection is released, so a reader never sees counts that disagree with the rows;
- checked against ``PRAGMA data_version`` on the writer connection before each use:
  that number changes only when *another* connection committed to the file (a tool,
  a second process), and then the counts are loaded again rather than trusted.

PostgreSQL is shared by coordinator replicas, so it always counts in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Key = tuple[str, str, str]


class Delta:
    """The count changes of one transaction, applied only if it commits."""

    __slots__ = ("changes",)

    def __init__(self) -> None:
        self.changes: dict[Key, int] = {}

    def add(self, namespace: str, kind: str, state: str, n: int = 1) -> None:
        key = (namespace, kind, state)
        self.changes[key] = self.changes.get(key, 0) + n

    def move(self, namespace: str, kind: str, before: str, after: str) -> None:
        if before != after:
            self.add(namespace, kind, before, -1)
            self.add(namespace, kind, after, 1)


class Tally:
    """The counts, and the database version they were taken at."""

    def __init__(self) -> None:
        self._counts: dict[Key, int] | None = None
        self._version: Any = None

    def current(self, version: Any) -> dict[Key, int] | None:
        """The counts if they still describe the database at ``version``, else None
        (never loaded, or another connection wrote since)."""
        if self._counts is None or version != self._version:
            self._counts = None
            return None
        return dict(self._counts)

    def load(self, rows: Iterable[tuple[str, str, str, int]], version: Any) -> dict[Key, int]:
        self._counts = {(ns, kind, state): int(n) for ns, kind, state, n in rows if n}
        self._version = version
        return dict(self._counts)

    def apply(self, delta: Delta) -> None:
        counts = self._counts
        if counts is None:
            return
        for key, n in delta.changes.items():
            left = counts.get(key, 0) + n
            if left:
                counts[key] = left
            else:
                counts.pop(key, None)


__all__ = ["Delta", "Tally"]
