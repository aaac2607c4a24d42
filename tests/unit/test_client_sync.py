"""The blocking client is derived from the async one, method for method."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
from aiohttp import web

import hearth.client
from hearth.client import AsyncClient, Client
from hearth.errors import NotFound
from helpers import http_server


def public_methods(cls: type) -> set[str]:
    found: set[str] = set()
    for klass in cls.__mro__[:-1]:  # mixins too, not object
        found |= {name for name, value in vars(klass).items()
                  if not name.startswith("_") and inspect.isfunction(value)}
    return found


def test_public_api_is_pinned() -> None:
    assert hearth.client.__all__ == ["AsyncClient", "Client", "error_for"]


def test_every_async_method_has_a_blocking_twin_with_the_same_signature() -> None:
    missing = public_methods(AsyncClient) - {"aclose"} - public_methods(Client)
    assert not missing, f"Client lacks {sorted(missing)}"
    for name in public_methods(AsyncClient) - {"aclose", "retarget"}:
        assert getattr(Client, name).__wrapped__ is getattr(AsyncClient, name)
    # retarget is not a coroutine: the blocking client forwards it by hand.
    assert not inspect.iscoroutinefunction(AsyncClient.retarget)


def test_blocking_calls_and_iterators_run_on_the_private_loop() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.json_response({"status": "ok"})
        if request.path.startswith("/v1/blobs/"):
            return web.Response(body=b"abc" * 10)
        return web.json_response({"error": "no such job.", "code": "not_found"}, status=404)

    with http_server(handler) as url, Client(url, token="t") as client:
        assert client.health() == {"status": "ok"}
        assert b"".join(client.stream_blob("a" * 64)) == b"abc" * 10
        with pytest.raises(NotFound, match="no such job"):
            client.get("j_x")
    client.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        client.health()


def test_a_client_never_closed_is_closed_without_a_warning() -> None:
    """A script that forgets close() (or drops the client) must not end with aiohttp's
    "Unclosed client session" warnings on stderr: the client closes when collected,
    and at exit."""
    script = (
        "import gc\n"
        "from aiohttp import web\n"
        "from helpers import http_server\n"
        "from hearth.client import Client\n"
        "async def handler(request):\n"
        "    return web.json_response({'status': 'ok'})\n"
        "with http_server(handler) as url:\n"
        "    dropped = Client(url, token='t')\n"
        "    assert dropped.health() == {'status': 'ok'}\n"
        "    del dropped\n"
        "    gc.collect()\n"
        "    kept = Client(url, token='t')\n"
        "    assert kept.health() == {'status': 'ok'}\n"
        "    print('ok')\n")
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=tests_dir, PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "Unclosed" not in done.stderr, done.stderr
