"""Find the handlers ``hearth worker --import MODULE[:ATTR]`` should run.

A module offers handlers in one of two ways: a :class:`hearth.worker.Worker`
instance at module level (``worker`` by default, or any single one), or a
``register(worker)`` function that adds handlers to a worker the CLI builds from its
options. ``MODULE:ATTR`` names either explicitly. The current directory is put on
the import path first, like ``python -m`` does, so ``examples.img2pdf.img2pdf`` works
from the repository root. A module that offers neither is a usage error (exit 2).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hearth.cli.common import CliUsageError
from hearth.cli.parse import parse_import
from hearth.errors import ValidationError

HOW = ("define `worker = Worker()` with handlers at module level, or a "
       "`register(worker)` function that adds them")


def _import(module_name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "this module does not exist" is the user's typo; a missing dependency
        # inside the module is a real error and keeps its traceback.
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CliUsageError(
                f"cannot import {module_name}: no module named {missing} on the Python "
                "path (the current directory is included); check the name or set "
                "PYTHONPATH") from None
        raise


def load_worker(spec: str, worker_type: type, build: Callable[[], Any]) -> Any:
    """The worker to run for ``spec``: found in the module, or built by ``build()`` and
    handed to the module's register function."""
    try:
        module_name, attr = parse_import(spec)
    except ValidationError as exc:
        raise CliUsageError(exc.message) from None
    module = _import(module_name)
    if attr is not None:
        if not hasattr(module, attr):
            raise CliUsageError(f"module {module_name} has no attribute {attr!r}: {HOW}")
        return _use(getattr(module, attr), f"{module_name}:{attr}", worker_type, build)
    found = getattr(module, "worker", None)
    if isinstance(found, worker_type):
        return found
    instances = {id(v): (k, v) for k, v in vars(module).items() if isinstance(v, worker_type)}
    if len(instances) == 1:
        return next(iter(instances.values()))[1]
    if len(instances) > 1:
        names = ", ".join(sorted(k for k, _ in instances.values()))
        raise CliUsageError(f"module {module_name} has several workers ({names}): name "
                            f"one with --import {module_name}:NAME")
    register = getattr(module, "register", None)
    if callable(register):
        return _use(register, f"{module_name}:register", worker_type, build)
    raise CliUsageError(f"module {module_name} offers no handlers to run: {HOW}")


def _use(obj: Any, where: str, worker_type: type, build: Callable[[], Any]) -> Any:
    if isinstance(obj, worker_type):
        return obj
    if callable(obj):
        worker = build()
        obj(worker)
        return worker
    raise CliUsageError(f"{where} is neither a Worker nor a register(worker) function "
                        f"(it is a {type(obj).__name__}): {HOW}")


__all__ = ["load_worker"]
