"""Re-exports loaded on first use (PEP 562), for packages whose public names live in
heavier modules: ``import hearth`` must not load the HTTP stack, and
``import hearth.security`` must not load ``cryptography``. It imports nothing at run
time but ``importlib`` (``typing`` alone would be most of the cost of ``import hearth``).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


def lazy_exports(namespace: dict[str, Any], homes: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the module whose ``globals()`` is
    ``namespace``: each name in ``homes`` is imported from its module on first access
    and then cached in ``namespace``."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
