"""Handlers by kind: what ``@worker.handler("kind")`` records.

A handler is a plain function of one argument, the :class:`JobContext`, either
``async def`` (run on the worker's event loop) or ``def`` (run on a thread of the
worker's pool). Kinds are explicit strings checked with the same rule the coordinator
uses, so a typo fails at import time rather than as jobs nobody leases.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hearth.domain.validation import check_kind
from hearth.errors import ValidationError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Handler:
    kind: str
    fn: Callable[..., Any]
    is_async: bool
    #: Execution timeout per attempt in seconds (the job's own timeout also applies).
    timeout: float | None = None

    def timeout_for(self, job_timeout: float | None) -> float | None:
        """The stricter of the handler's and the job's timeout."""
        limits = [t for t in (self.timeout, job_timeout) if t is not None]
        return min(limits) if limits else None


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def any_sync(self) -> bool:
        return any(not h.is_async for h in self._handlers.values())

    def add(self, kind: str, fn: Callable[..., Any], timeout: float | None = None) -> Handler:
        check_kind(kind)
        if kind in self._handlers:
            raise ValidationError(f"a handler for kind {kind!r} is already registered")
        if not callable(fn):
            raise ValidationError(f"the handler for kind {kind!r} is not callable")
        if timeout is not None and not (isinstance(timeout, int | float)
                                        and math.isfinite(timeout) and timeout > 0):
            raise ValidationError(f"the timeout of handler {kind!r} must be a positive "
                                  "number of seconds")
        handler = Handler(kind, fn, inspect.iscoroutinefunction(fn), timeout)
        self._handlers[kind] = handler
        return handler

    def decorator(self, kind: str, timeout: float | None = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.add(kind, fn, timeout)
            return fn

        return register


__all__ = ["Handler", "Registry"]
