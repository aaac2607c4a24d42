"""The coordinator's composition root: settings, the app with its lifecycle, the server.

:func:`build_app` opens the store (``hearth.store.open_store``) and the blob store
when the app starts, builds the queue service with the injected clock, randomness and
id generators, starts the lease reaper and retention controllers, and closes all of it
on shutdown. :func:`run` serves it with uvicorn and records the real listening URL in
``<data>/coordinator.json`` once the socket is bound (also for port 0).

Secure by default: a listener on a non-loopback address is refused (mutual TLS for
the LAN comes with enrollment); there is deliberately no override. Never log tokens
or payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from hearth import __version__, config
from hearth.api.app import create_app
from hearth.api.auth import BearerTokenAuthenticator
from hearth.api.context import ApiContext
from hearth.blobs.fs import FsBlobStore
from hearth.engine.controllers import LeaseReaper, Retention
from hearth.engine.metrics import Metrics
from hearth.engine.service import QueueService
from hearth.errors import ValidationError
from hearth.ids import new_job_id, new_token

log = logging.getLogger("hearth.coordinator")

MiB = 1024 * 1024


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6), "level": record.levelname.lower(),
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send every log record to stderr as text or JSON lines (replaces root handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a coordinator is configured with. ``port=0`` picks a free port."""

    data_dir: Path = field(default_factory=config.data_dir)
    host: str = config.DEFAULT_HOST
    port: int = config.DEFAULT_PORT
    #: Default: ``sqlite:///<data_dir>/hearth.db``.
    store_url: str = ""
    max_payload: int = 1 * MiB
    max_request: int = 8 * MiB
    max_blob: int = 1024 * MiB
    retention: float = 7 * 24 * 3600.0
    retention_interval: float = 60.0
    blob_gc_grace: float = 3600.0
    #: Threads running (blocking) store calls.
    store_threads: int = 8
    log_level: str = "info"
    log_format: str = "text"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", config.data_dir(self.data_dir))
        if not self.store_url:
            object.__setattr__(self, "store_url", f"sqlite:///{self.data_dir}/hearth.db")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def check(self) -> Settings:
        """Raise ``ValidationError`` with a sentence for settings that cannot work."""
        if not is_loopback(self.host):
            raise ValidationError(
                f"refusing to listen on {self.host}: without mutual TLS the coordinator "
                "only listens on a loopback address (127.0.0.1, ::1 or localhost). LAN "
                "listeners arrive with worker enrollment and mutual TLS")
        if not 0 <= self.port <= 65535:
            raise ValidationError(f"port {self.port} is not valid: use 0-65535 (0 picks a "
                                  "free port)")
        for name in ("max_payload", "max_request", "max_blob", "store_threads"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name} must be at least 1")
        for name in ("retention", "retention_interval", "blob_gc_grace"):
            if getattr(self, name) <= 0:
                raise ValidationError(f"{name} must be more than 0 seconds")
        if self.log_format not in ("text", "json"):
            raise ValidationError("log_format must be 'text' or 'json'")
        return self


def build_app(settings: Settings | None = None, *,
              clock: Callable[[], float] = time.time,
              rand: Callable[[], float] = random.random,
              new_id: Callable[[], str] = new_job_id,
              new_lease_token: Callable[[], str] = new_token) -> FastAPI:
    """The coordinator as an ASGI app; its lifespan owns the store and controllers."""
    settings = (settings or Settings()).check()
    token = config.ensure_admin_token(settings.data_dir)
    metrics = Metrics()
    ctx = ApiContext(authenticator=BearerTokenAuthenticator(token), metrics=metrics,
                     max_request=settings.max_request, max_blob=settings.max_blob,
                     version=__version__)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from hearth.store import open_store

        store = await asyncio.to_thread(open_store, settings.store_url)
        blobs = FsBlobStore(settings.data_dir / "blobs")
        service = QueueService(store, blobs, max_payload=settings.max_payload, clock=clock,
                               rand=rand, new_id=new_id, new_lease_token=new_lease_token,
                               threads=settings.store_threads, metrics=metrics)
        reaper = LeaseReaper(service)
        retention = Retention(service, blobs, retention=settings.retention,
                              interval=settings.retention_interval,
                              blob_grace=settings.blob_gc_grace)
        try:
            await service.start()
            reaper.start()
            retention.start()
            ctx.attach(service, blobs)
            yield
        finally:
            ctx.detach()
            await reaper.stop()
            await retention.stop()
            await service.close()
            blobs.close()
            await asyncio.to_thread(store.close)

    return create_app(ctx, lifespan=lifespan)


def _bound_url(server: uvicorn.Server) -> str:
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets or ():
            host, port = sock.getsockname()[:2]
            return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    raise RuntimeError("the server has no listening socket")


class _Server(uvicorn.Server):
    """uvicorn, plus: announce the real URL once bound, and answer long polls and end
    watches at the start of shutdown (they would otherwise hold it up)."""

    def __init__(self, cfg: uvicorn.Config, app: FastAPI,
                 on_listening: Callable[[str], None] | None = None) -> None:
        super().__init__(cfg)
        self._app = app
        self._on_listening = on_listening
        self.url: str | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT ask for a graceful stop, after which the process exits 0.
        (uvicorn records the signal and raises it again after shutting down, so the
        process would die by it; a second SIGINT still forces the exit.)"""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        self.url = _bound_url(self)
        if self._on_listening is not None:
            self._on_listening(self.url)

    async def shutdown(self, sockets: Any = None) -> None:
        ctx = getattr(self._app.state, "hearth", None)
        if isinstance(ctx, ApiContext):
            ctx.drain()
        await super().shutdown(sockets)


def _uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:  # pragma: no cover - Windows
        loop = "asyncio"
    return uvicorn.Config(app, host=settings.host, port=settings.port, loop=loop,
                          http="httptools", ws="none", lifespan="on", access_log=False,
                          log_config=None, log_level=settings.log_level.lower(),
                          timeout_graceful_shutdown=10, server_header=False)


def run(settings: Settings | None = None) -> None:
    """Serve until SIGTERM/SIGINT. Raises ``ValidationError`` for unusable settings."""
    settings = (settings or Settings()).check()
    configure_logging(settings.log_level, settings.log_format)
    app = build_app(settings)

    def listening(url: str) -> None:
        config.write_endpoint(settings.data_dir, url)
        log.info("coordinator listening on %s (data in %s, store %s)", url,
                 settings.data_dir, settings.store_url.split("://", 1)[0])

    with config.exclusive_data_dir(settings.data_dir):
        _Server(_uvicorn_config(app, settings), app, listening).run()


@contextlib.contextmanager
def serve_in_thread(settings: Settings, app: FastAPI | None = None,
                    timeout: float = 30.0) -> Iterator[str]:
    """Run a coordinator on a background thread (tests, embedding); yields its URL.

    Shuts it down and waits for it on exit. ``settings.port`` 0 picks a free port.
    Holds the data dir like :func:`run` (``Conflict`` if another coordinator does).
    """
    with config.exclusive_data_dir(settings.data_dir):
        app = app or build_app(settings)
        server = _Server(_uvicorn_config(app, settings), app)
        failure: list[BaseException] = []

        def target() -> None:
            try:
                server.run()
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)

        thread = threading.Thread(target=target, name="hearth-coordinator", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while server.url is None and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if server.url is None:
            server.should_exit = True
            thread.join(timeout)
            raise RuntimeError(f"the coordinator did not start: {failure or 'timed out'}")
        try:
            yield server.url
        finally:
            server.should_exit = True
            thread.join(timeout)
