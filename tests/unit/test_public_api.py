"""The public Python API: ``hearth.__all__`` is pinned, resolves, and stays cheap to import.

Changing the public API is a deliberate act: update the list below together with
``src/hearth/__init__.py`` and the docs. Import checks run in a fresh interpreter,
because this test process has long since imported everything.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

import hearth

PUBLIC = [
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

#: Where each public name is defined; the re-export must be that very object.
HOMES = {
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
ERRORS = ["Conflict", "Forbidden", "HearthError", "InvalidTransition", "NotFound",
          "PayloadTooLarge", "StaleLease", "Unauthorized", "Unavailable", "ValidationError"]

#: The coordinator's stack: never loaded by users of the client or the worker.
SERVER_MODULES = ("sqlalchemy", "fastapi", "uvicorn", "alembic", "starlette")
#: What the client and the worker need; loaded on first use, not by ``import hearth``.
CLIENT_MODULES = ("pydantic", "httptools")
#: Loaded only for the first blob upload or streamed answer (hearth.client.http).
STREAM_MODULES = ("aiohttp",)


def test_all_is_pinned_and_sorted() -> None:
    assert hearth.__all__ == PUBLIC
    assert sorted(PUBLIC) == PUBLIC


def test_every_public_name_resolves_to_its_definition() -> None:
    for name in PUBLIC:
        assert getattr(hearth, name) is not None, name
        assert name in dir(hearth), name
    for name, module in HOMES.items():
        assert getattr(hearth, name) is getattr(importlib.import_module(module), name), name
    errors = importlib.import_module("hearth.errors")
    assert sorted(ERRORS) == errors.__all__
    for name in ERRORS:
        assert getattr(hearth, name) is getattr(errors, name), name
    assert hearth.__version__ == importlib.metadata.version("hearth")


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        hearth.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def _loaded_after(code: str, watched: tuple[str, ...] = SERVER_MODULES) -> set[str]:
    """Which of the ``watched`` packages ``code`` imports, in a clean interpreter."""
    probe = (f"import sys\n{code}\n"
             f"print(','.join(m for m in {watched!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(filter(None, out.stdout.strip().split(",")))


def test_import_hearth_does_not_load_the_server_stack() -> None:
    assert _loaded_after("import hearth") == set()


def test_import_hearth_loads_the_client_stack_only_on_first_use() -> None:
    assert _loaded_after("import hearth", CLIENT_MODULES) == set()
    assert _loaded_after("import hearth\nhearth.Client", CLIENT_MODULES) == set(CLIENT_MODULES)


def test_aiohttp_is_loaded_only_for_uploads_and_streams() -> None:
    assert _loaded_after("import hearth\nhearth.Client\nhearth.Worker", STREAM_MODULES) == set()
    code = ("import asyncio\nfrom hearth.client.http import HttpCore\n"
            "core = HttpCore('http://127.0.0.1:9', None, timeout=1)\n"
            "async def main():\n"
            "    async with core.stream('GET', '/v1/watch'):\n"
            "        pass\n"
            "try:\n    asyncio.run(main())\nexcept Exception:\n    pass")
    assert _loaded_after(code, STREAM_MODULES) == set(STREAM_MODULES)


def test_the_whole_public_api_does_not_load_the_server_stack() -> None:
    code = "import hearth\nfor name in hearth.__all__: getattr(hearth, name)"
    assert _loaded_after(code) == set()
