"""The Store port and its adapters. ``open_store(url)`` is the one way in."""

from __future__ import annotations

from hearth.store.port import (
    CertRecord,
    FinishItem,
    HeartbeatItem,
    ItemResult,
    JobFilter,
    Node,
    Page,
    QueueCount,
    Store,
    Submitted,
    TokenRecord,
)

__all__ = [
    "CertRecord",
    "FinishItem",
    "HeartbeatItem",
    "ItemResult",
    "JobFilter",
    "Node",
    "Page",
    "QueueCount",
    "Store",
    "Submitted",
    "TokenRecord",
    "open_store",
]


def open_store(url: str) -> Store:
    """Open (and migrate to the latest schema) the store at ``url``:
    ``sqlite:///path/to/hearth.db`` or ``postgresql://user@host:port/db``."""
    from hearth.store.sql import open_sql_store

    return open_sql_store(url)
