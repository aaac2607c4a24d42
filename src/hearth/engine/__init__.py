"""The job engine's async services and controllers, between the HTTP API and the Store."""

from __future__ import annotations

from hearth.engine.controllers import LeaseReaper, Retention
from hearth.engine.feed import ChangeFeed
from hearth.engine.metrics import Metrics
from hearth.engine.service import QueueService
from hearth.engine.waker import Waker

__all__ = ["ChangeFeed", "LeaseReaper", "Metrics", "QueueService", "Retention", "Waker"]
