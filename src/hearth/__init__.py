"""Hearth: durable, governed background work for Python.

The public Python API, in one place::

    from hearth import Client, Worker, JobContext, NonRetryable

``import hearth`` stays cheap and never loads the coordinator's stack (FastAPI,
SQLAlchemy, uvicorn): the errors are imported at once (one small module), everything
else on first use through the module ``__getattr__`` below. The client and the worker
need only pydantic and httptools (aiohttp for blob transfers and streams), so a worker
machine never imports the server side.
``tests/unit/test_public_api.py`` pins ``__all__`` and these import rules.
"""

from __future__ import annotations

# First: hearth.client and hearth.worker import it from here.
__version__ = "0.1.0"

from hearth.errors import (
    Conflict,
    Forbidden,
    HearthError,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    StaleLease,
    Unauthorized,
    Unavailable,
    ValidationError,
)

# Not ``typing.TYPE_CHECKING``: importing typing would be most of the cost of
# ``import hearth``. Type checkers treat a constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from hearth.client import AsyncClient, Client
    from hearth.domain.jobs import JobState
    from hearth.worker import (
        Fatal,
        JobCancelled,
        JobContext,
        NonRetryable,
        Output,
        Worker,
        run_worker,
    )

#: Public name -> the module that defines it, imported on first access.
_LAZY = {
    "AsyncClient": "hearth.client",
    "Client": "hearth.client",
    "Fatal": "hearth.worker",
    "JobCancelled": "hearth.worker",
    "JobContext": "hearth.worker",
    "JobState": "hearth.domain.jobs",
    "NonRetryable": "hearth.worker",
    "Output": "hearth.worker",
    "Worker": "hearth.worker",
    "run_worker": "hearth.worker",
}


from hearth._lazy import lazy_exports  # noqa: E402 - after __version__, like the errors

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "Fatal",
    "Forbidden",
    "HearthError",
    "InvalidTransition",
    "JobCancelled",
    "JobContext",
    "JobState",
    "NonRetryable",
    "NotFound",
    "Output",
    "PayloadTooLarge",
    "StaleLease",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "Worker",
    "__version__",
    "run_worker",
]
