"""``hearth.run_worker``: a whole worker in one call, from an enrollment bundle.

    import hearth

    def shout(ctx):
        return ctx.payload.upper()

    hearth.run_worker("my-laptop.hearth", {"shout": shout})

The bundle names the worker, carries its certificate and says where the coordinator
is (else mDNS finds it); the mapping gives a handler per job kind. It runs until
SIGTERM or Ctrl-C, like ``hearth worker my-laptop.hearth --import ...``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from hearth.errors import ValidationError
from hearth.worker.runtime import Worker


def run_worker(bundle: str | os.PathLike[str], handlers: Mapping[str, Callable[..., Any]],
               *, concurrency: int = 8, addr: str | None = None, mdns: bool = True,
               log_level: str | None = "info") -> None:
    """Run ``handlers`` (job kind -> sync or async function of a JobContext) as the
    worker enrolled in ``bundle`` until stopped. ``addr`` (``host:port``) overrides the
    bundle's addresses; ``log_level`` None leaves logging as the caller set it up."""
    if not handlers:
        raise ValidationError("run_worker needs at least one handler: "
                              "{\"kind\": function}")
    if log_level is not None and not logging.getLogger().handlers:
        logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    worker = Worker(bundle=bundle, addr=addr, mdns=mdns, concurrency=concurrency)
    for kind, fn in handlers.items():
        worker.handler(kind)(fn)
    worker.run()


__all__ = ["run_worker"]
