"""The coordinator's composition root: settings, the app with its lifecycle, the server.

:func:`build_app` opens the store (``hearth.store.open_store``) and the blob store
when the app starts, builds the queue service with the injected clock, randomness and
id generators, starts the lease reaper and retention controllers, and closes all of it
on shutdown. :func:`run` serves it with uvicorn and records the real listening URL in
``<data>/coordinator.json`` once the socket is bound (also for port 0).

Secure by default: a listener on a loopback address speaks plain HTTP with tokens
(the traffic never leaves the machine); any other listener speaks TLS 1.3 and requires
a client certificate from this coordinator's CA (mutual TLS), with no override. On
first start the data dir gets its CA, a server certificate and ``admin.hearth``
(:mod:`hearth.security.local`). A TLS coordinator advertises itself over mDNS unless
told not to. Never log tokens, keys or payloads.
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
from hearth.api.auth import RequestAuthenticator
from hearth.api.context import ApiContext
from hearth.api.tls import TlsHttpToolsProtocol
from hearth.blobs.fs import FsBlobStore
from hearth.engine.controllers import LeaseReaper, Retention
from hearth.engine.metrics import Metrics
from hearth.engine.service import QueueService
from hearth.errors import ValidationError
from hearth.ids import new_job_id, new_token
from hearth.security import local

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
    #: TLS with required client certificates. None = on exactly when ``host`` is not a
    #: loopback address (it cannot be turned off there); True also on loopback.
    tls: bool | None = None
    #: Advertise ``_hearth._tcp.local.`` over mDNS. None = when TLS is on and the host is
    #: not a loopback address.
    mdns: bool | None = None
    #: The CA (ca.crt, ca.key) and server certificate directory [default <data>/ca].
    ca_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", config.data_dir(self.data_dir))
        if not self.store_url:
            object.__setattr__(self, "store_url", f"sqlite:///{self.data_dir}/hearth.db")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def use_tls(self) -> bool:
        return True if self.tls is None and not is_loopback(self.host) else bool(self.tls)

    @property
    def use_mdns(self) -> bool:
        if self.mdns is None:
            return self.use_tls and not is_loopback(self.host)
        return self.mdns

    def check(self) -> Settings:
        """Raise ``ValidationError`` with a sentence for settings that cannot work."""
        if self.tls is False and not is_loopback(self.host):
            raise ValidationError(
                f"refusing to listen on {self.host} without TLS: every listener that is "
                "not a loopback address uses mutual TLS. Drop --no-tls, or listen on "
                "127.0.0.1")
        if self.mdns and not self.use_tls:
            raise ValidationError("mDNS advertises a LAN listener: it needs TLS (listen on "
                                  "a non-loopback address, or pass --tls)")
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
    pki = local.LocalPki.prepare(settings.data_dir, host=settings.host, tls=settings.use_tls,
                                 mdns=settings.use_mdns, ca_dir=settings.ca_dir)
    metrics = Metrics()
    credentials = local.LateCredentials()
    ctx = ApiContext(authenticator=RequestAuthenticator(token, credentials, clock=clock),
                     metrics=metrics, max_request=settings.max_request,
                     max_blob=settings.max_blob, version=__version__)

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
        security = pki.service(store, clock=clock)
        try:
            await service.start()
            await security.start()
            await pki.ensure_admin_bundle(security)
            pki.start_renewal()
            reaper.start()
            retention.start()
            ctx.security = credentials.service = security
            ctx.attach(service, blobs)
            yield
        finally:
            ctx.detach()
            ctx.security = credentials.service = None
            await pki.stop_renewal()
            await security.stop()
            await reaper.stop()
            await retention.stop()
            await service.close()
            blobs.close()
            await asyncio.to_thread(store.close)

    app = create_app(ctx, lifespan=lifespan)
    app.state.hearth_pki = pki
    return app


def _bound_url(server: uvicorn.Server, tls: bool) -> str:
    scheme = "https" if tls else "http"
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets or ():
            host, port = sock.getsockname()[:2]
            # A wildcard listener is reached locally through loopback (the server
            # certificate covers 127.0.0.1 and ::1).
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    raise RuntimeError("the server has no listening socket")


class _Server(uvicorn.Server):
    """uvicorn, plus: announce the real URL once bound, and answer long polls and end
    watches at the start of shutdown (they would otherwise hold it up)."""

    def __init__(self, cfg: uvicorn.Config, app: FastAPI,
                 on_listening: Callable[[str], None] | None = None, *,
                 tls: bool = False) -> None:
        super().__init__(cfg)
        self._app = app
        self._tls = tls
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
        self.url = _bound_url(self, self._tls)
        pki = getattr(self._app.state, "hearth_pki", None)
        if isinstance(pki, local.LocalPki):
            pki.port = int(self.url.rsplit(":", 1)[1])
            await pki.listening()
        if self._on_listening is not None:
            self._on_listening(self.url)

    async def shutdown(self, sockets: Any = None) -> None:
        pki = getattr(self._app.state, "hearth_pki", None)
        if isinstance(pki, local.LocalPki):
            await pki.closing()
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
    pki = getattr(app.state, "hearth_pki", None)
    tls: dict[str, Any] = {}
    if settings.use_tls:
        if not isinstance(pki, local.LocalPki) or pki.ssl is None:
            raise ValidationError("this app was built without TLS; build it with the "
                                  "same settings it is served with")
        context = pki.ssl
        tls = {"http": TlsHttpToolsProtocol,
               "ssl_context_factory": lambda _cfg, _default: context}
    return uvicorn.Config(app, host=settings.host, port=settings.port, loop=loop,
                          **{"http": "httptools", **tls}, ws="none", lifespan="on",
                          access_log=False, log_config=None,
                          log_level=settings.log_level.lower(),
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
        _Server(_uvicorn_config(app, settings), app, listening, tls=settings.use_tls).run()


@contextlib.contextmanager
def serve_in_thread(settings: Settings, app: FastAPI | None = None,
                    timeout: float = 30.0) -> Iterator[str]:
    """Run a coordinator on a background thread (tests, embedding); yields its URL.

    Shuts it down and waits for it on exit. ``settings.port`` 0 picks a free port.
    Holds the data dir like :func:`run` (``Conflict`` if another coordinator does).
    """
    with config.exclusive_data_dir(settings.data_dir):
        app = app or build_app(settings)
        server = _Server(_uvicorn_config(app, settings), app, tls=settings.use_tls)
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
