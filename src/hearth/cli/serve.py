"""Long-running commands: ``hearth up``, ``hearth coordinator`` and ``hearth worker``.

``up`` is the one-machine setup: a coordinator on a thread of this process and a pool
of local ``hearth worker`` processes running the built-in handlers. On Ctrl-C or
SIGTERM it stops the workers first (so they finish or hand back their jobs while the
coordinator can still hear them) and the coordinator last.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from hearth import config
from hearth.cli.common import CliError, CliUsageError, Conn, client_options
from hearth.cli.loader import load_worker
from hearth.cli.pool import WorkerPool
from hearth.cli.types import Duration

if TYPE_CHECKING:
    from hearth.coordinator import Settings

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)
PORT = click.IntRange(0, 65535)


def _check_port_free(host: str, port: int) -> None:
    """Fail with a sentence, before any logging starts, if the port is taken."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} on {host} is already in use: is a coordinator already "
                    "running there? (`hearth status` talks to it) or pick another "
                    "with --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise CliError(f"cannot listen on {host}: it is not an address of this "
                               "machine; use 127.0.0.1") from None
            raise


def _settings(data: str | None, host: str, port: int, store: str | None, log_level: str,
              log_format: str, **limits: Any) -> Settings:
    from hearth.coordinator import Settings
    from hearth.errors import ValidationError

    try:
        return Settings(data_dir=config.data_dir(data), host=host, port=port,
                        store_url=store or "", log_level=log_level.lower(),
                        log_format=log_format, **limits).check()
    except ValidationError as exc:
        raise CliUsageError(exc.message) from None


@click.command()
@click.option("--data", envvar="HEARTH_DATA", metavar="DIR",
              help="Where the database, blobs and admin token live [env HEARTH_DATA; "
                   "default ./.hearth].")
@click.option("--host", default=config.DEFAULT_HOST, show_default=True,
              help="Address to listen on. A loopback address speaks plain HTTP with tokens; "
                   "any other (0.0.0.0 for every interface) speaks mutual TLS: only "
                   "enrolled bundles get in.")
@click.option("--tls/--no-tls", "tls", default=None,
              help="Force mutual TLS on a loopback address too [default: TLS exactly when "
                   "the address is not loopback; it cannot be turned off there].")
@click.option("--mdns/--no-mdns", "mdns", default=None,
              help="Advertise _hearth._tcp.local. so workers find the coordinator "
                   "[default: on for a TLS listener on a LAN address].")
@click.option("--ca", "ca_dir", metavar="DIR", default=None,
              help="The CA directory (made by `hearth ca init --dir DIR`, or created here "
                   "on first start) [default <data>/ca].")
@click.option("--port", type=PORT, default=config.DEFAULT_PORT, show_default=True,
              help="Port to listen on; 0 picks a free one (see <data>/coordinator.json).")
@click.option("--store", metavar="URL", default=None,
              help="Database URL: sqlite:///path.db or postgresql://... "
                   "[default sqlite:///<data>/hearth.db].")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@click.option("--retention", type=Duration(), default="7d", show_default=True,
              help="Purge finished jobs (and their history) this long after they finish; "
                   "blobs no job references are collected too.")
@click.option("--max-payload", type=click.IntRange(min=1), default=1024 * 1024,
              show_default=True, metavar="BYTES",
              help="Largest job payload or result accepted; bigger data goes in blobs.")
def coordinator(data: str | None, host: str, tls: bool | None, mdns: bool | None,
                ca_dir: str | None, port: int, store: str | None, log_format: str,
                log_level: str, retention: float, max_payload: int) -> None:
    """Run the coordinator (queue, blobs, HTTP API) until Ctrl-C or SIGTERM.

    On first start it creates its CA (<data>/ca), the admin bundle
    <data>/admin.hearth and <data>/admin.token; it writes its URL to
    <data>/coordinator.json, so local clients and workers find it with no options.

    \b
    Examples:
      hearth coordinator --data ./.hearth
      hearth coordinator --host 0.0.0.0            # the LAN, with mutual TLS and mDNS
      hearth coordinator --port 0 --store postgresql://hearth@db/hearth --log-format json
      hearth coordinator --retention 30d --max-payload 4194304
    """
    from hearth.coordinator import run

    if retention <= 0:
        raise click.BadParameter("give a duration greater than 0, such as 7d",
                                 param_hint="--retention")
    settings = _settings(data, host, port, store, log_level, log_format,
                         retention=retention, max_payload=max_payload, tls=tls, mdns=mdns,
                         ca_dir=Path(ca_dir).absolute() if ca_dir else None)
    _check_port_free(settings.host, settings.port)
    try:
        run(settings)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot start; it logged why
        if exc.code:
            raise CliError("the coordinator could not start; see the log line above") from None


def _configure_worker_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


@click.command()
@click.argument("bundle_file", metavar="[BUNDLE]", required=False)
@click.option("--import", "imports", multiple=True, required=True, metavar="MODULE[:ATTR]",
              help="Module with handlers: its `worker` (or any Worker instance), or a "
                   "register(worker) function; repeat to combine register() modules.")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=None,
              help="Jobs run at once [default 8].")
@click.option("--name", default=None,
              help="Node name [default: the bundle's name, else <hostname>-<pid>].")
@click.option("--addr", default=None, metavar="HOST:PORT",
              help="Coordinator address, overriding the bundle's addresses and mDNS.")
@click.option("--mdns/--no-mdns", "mdns", default=True, show_default=True,
              help="Look for the coordinator over mDNS when the bundle's addresses fail.")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@client_options
def worker(conn: Conn, bundle_file: str | None, imports: tuple[str, ...],
           concurrency: int | None, name: str | None, addr: str | None, mdns: bool,
           log_level: str) -> None:
    """Run a worker: lease jobs of the imported handlers' kinds until Ctrl-C or SIGTERM.

    With BUNDLE (a file made by `hearth enroll NAME` on the coordinator), it runs as
    NAME over mutual TLS and finds the coordinator at the bundle's addresses, then over
    mDNS (--addr overrides both). Without one it joins the local coordinator.

    On SIGTERM it stops leasing, lets running jobs finish (30 s), and hands back the
    rest; a second signal hurries it.

    \b
    Examples:
      hearth worker my-laptop.hearth --import mymodule
      hearth worker my-laptop.hearth --import mymodule --addr 192.168.1.10:7843
      hearth worker --import hearth.builtins
      hearth worker --import examples.img2pdf.img2pdf --concurrency 2
    """
    from hearth.worker import Worker

    bundle_file = bundle_file or conn.bundle
    if bundle_file and conn.bundle and bundle_file != conn.bundle:
        raise CliUsageError("give the bundle once: as the BUNDLE argument or with --bundle")

    # A Worker created at import time with no arguments finds its coordinator through
    # these variables, so the connection options apply to it as well.
    for var, value in (("HEARTH_URL", conn.url), ("HEARTH_TOKEN", conn.token),
                       ("HEARTH_DATA", conn.data), ("HEARTH_BUNDLE", bundle_file)):
        if value is not None:
            os.environ[var] = value
    built: list[Worker] = []

    def build() -> Worker:
        if not built:
            built.append(Worker(conn.url, token=conn.token, data=conn.data,
                                name=None if bundle_file else name,
                                concurrency=concurrency or 8))
        return built[0]

    workers = {id(w): w for w in (load_worker(spec, Worker, build) for spec in imports)}
    if len(workers) > 1:
        raise CliUsageError("these modules define their own Worker instances, which cannot "
                            "be combined in one process: import one of them, or give the "
                            "others a register(worker) function")
    (chosen,) = workers.values()
    if bundle_file:
        chosen.use_bundle(bundle_file, addr=addr, mdns=mdns, name=name)
    elif addr:
        raise CliUsageError("--addr picks the coordinator of a bundle; without a bundle "
                            "use --url")
    if chosen not in built:  # the module's own Worker: apply the options given
        if name is not None and not bundle_file:
            chosen.name = name
        if concurrency is not None:
            chosen.resize(concurrency)
    _configure_worker_logging(log_level)
    chosen.run()


def _wait_for_signal(pool: WorkerPool) -> None:
    """Block until SIGINT/SIGTERM; later signals hurry the workers' shutdown."""
    stop = threading.Event()
    signals = {"count": 0}

    def handle(sig: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            click.echo("hearth up: hurrying the workers (signal again to kill them)", err=True)
            pool.hurry(kill=signals["count"] > 2)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
        click.echo("hearth up: stopping the workers, then the coordinator", err=True)
        pool.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(url: str, directory: Path, workers: int, concurrency: int) -> str:
    hint = ""
    if directory != config.data_dir(None):
        hint = f"  export HEARTH_DATA={directory}   # so other shells find this coordinator\n"
    return (
        f"Hearth is up at {url} (data in {directory}) with {workers} local worker"
        f"{'s' if workers != 1 else ''} x {concurrency} slots running echo and sleep.\n"
        f"{hint}"
        "Try:\n"
        "  hearth submit --kind echo --payload hi --wait\n"
        "  hearth submit --kind sleep --json '{\"seconds\": 5}' --wait\n"
        "  hearth status --watch\n"
        "Press Ctrl-C to stop."
    )


@click.command()
@click.option("--data", envvar="HEARTH_DATA", metavar="DIR",
              help="Data dir [env HEARTH_DATA; default ./.hearth].")
@click.option("--host", default=config.DEFAULT_HOST, show_default=True,
              help="Address to listen on; 0.0.0.0 opens it to the LAN with mutual TLS "
                   "(enroll other machines with `hearth enroll`).")
@click.option("--port", type=PORT, default=config.DEFAULT_PORT, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--workers", type=click.IntRange(0, 64), default=1, show_default=True,
              help="Local worker processes to start.")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=8, show_default=True,
              help="Jobs each local worker runs at once.")
@click.option("--store", metavar="URL", default=None,
              help="Database URL [default sqlite:///<data>/hearth.db].")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
def up(data: str | None, host: str, port: int, workers: int, concurrency: int,
       store: str | None,
       log_level: str) -> None:
    """Start Hearth on this machine: a coordinator plus local workers with the built-in
    handlers (echo, sleep). Ctrl-C stops everything cleanly.

    \b
    Examples:
      hearth up
      hearth up --data /srv/hearth --workers 2 --concurrency 4
      hearth up --host 0.0.0.0        # also serve enrolled workers on the LAN
    """
    from hearth.coordinator import configure_logging, serve_in_thread

    settings = _settings(data, host, port, store, log_level, "text")
    _check_port_free(settings.host, settings.port)
    configure_logging(settings.log_level, settings.log_format)
    pool = WorkerPool(settings.data_dir, workers, concurrency)
    try:
        with serve_in_thread(settings) as url:
            config.write_endpoint(settings.data_dir, url)
            pool.start(url)
            click.echo(_banner(url, settings.data_dir, workers, concurrency))
            _wait_for_signal(pool)
    except RuntimeError as exc:
        if "did not start" in str(exc):
            raise CliError(f"the coordinator could not start on port {port}; see the log "
                           "lines above") from None
        raise
    finally:
        pool.stop()


__all__ = ["coordinator", "up", "worker"]
