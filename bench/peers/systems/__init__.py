"""The systems under test, by the name ``run.py --systems`` takes.

Each entry names the adapter module, its class, and the virtualenv it runs in:
``project`` (``.venv``, where Hearth is installed as users install it) or ``peers``
(``bench/.peers-venv``). Nothing here imports a job system, so the orchestrator can
read it from either virtualenv.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.peers.systems.base import System


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    cls: str
    venv: str  # "project" or "peers"
    hearth: bool = False

    def load(self) -> type[System]:
        module = importlib.import_module(f"bench.peers.systems.{self.module}")
        found: type[System] = getattr(module, self.cls)
        return found


SYSTEMS: dict[str, Entry] = {e.name: e for e in [
    Entry("hearth-sqlite", "hearth", "HearthSqlite", "project", hearth=True),
    Entry("hearth-postgres", "hearth", "HearthPostgres", "project", hearth=True),
    Entry("celery", "celery", "CeleryRedis", "peers"),
    Entry("rq", "rq", "RQ", "peers"),
    Entry("huey-sqlite", "huey", "HueySqlite", "peers"),
    Entry("huey-redis", "huey", "HueyRedis", "peers"),
    Entry("dramatiq", "dramatiq", "DramatiqRedis", "peers"),
    Entry("procrastinate", "procrastinate", "Procrastinate", "peers"),
    Entry("dbos-sqlite", "dbos", "DbosSqlite", "peers"),
    Entry("dbos-postgres", "dbos", "DbosPostgres", "peers"),
]}
