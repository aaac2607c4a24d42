"""PostgreSQL in a chaos run: reaching a local server from a namespace, and restarting it.

Restarting needs ``pg_lsclusters``/``pg_ctlcluster`` (Debian's postgresql-common) and root.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

PG_SOCKET_DIR = "/var/run/postgresql"


def pg_socket_url(store_url: str) -> str | None:
    """``store_url`` through the Unix socket of a local PostgreSQL, or None if there is
    none. A network namespace has no route to the machine's loopback, but a Unix socket
    is a file: the coordinator on host ``coord`` reaches the database through it."""
    parts = urlsplit(store_url)
    port = parts.port or 5432
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not Path(
            PG_SOCKET_DIR, f".s.PGSQL.{port}").exists():
        return None
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{parts.path}?host={PG_SOCKET_DIR}&port={port}"


def coordinator_store_url(store_url: str, netns: bool) -> str:
    """The URL the coordinator uses (see :func:`pg_socket_url`)."""
    if not netns or not store_url.startswith("postgres"):
        return store_url
    url = pg_socket_url(store_url)
    if url is None:
        raise RuntimeError(f"PostgreSQL at {urlsplit(store_url).netloc} cannot be reached "
                           f"from a network namespace (no socket in {PG_SOCKET_DIR})")
    return url


def pg_cluster(store_url: str) -> list[str] | None:
    """``[version, name]`` of the local cluster serving ``store_url`` (pg_lsclusters)."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    port = str(urlsplit(store_url).port or 5432)
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                             check=False).stdout
    for line in listing.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[2] == port:
            return cols[:2]
    return None


def restart_postgres(cluster: list[str], store_url: str) -> tuple[float, float]:
    """Restart the cluster; return when it stopped answering and when it answered again,
    as seen by a connection that runs ``SELECT 1`` every 10 ms (``pg_ctlcluster`` itself
    spends a second or two before and after the outage)."""
    import psycopg

    seen: list[float] = []
    finished = threading.Event()

    def probe() -> None:
        with psycopg.connect(store_url, autocommit=True, connect_timeout=2) as conn:
            try:
                while not finished.is_set():
                    conn.execute("SELECT 1")
                    time.sleep(0.01)
                return
            except psycopg.Error:
                seen.append(time.time())
        while True:
            try:
                psycopg.connect(store_url, autocommit=True, connect_timeout=2).close()
            except psycopg.Error:
                time.sleep(0.01)
                continue
            seen.append(time.time())
            return

    watcher = threading.Thread(target=probe, daemon=True)
    watcher.start()
    time.sleep(0.05)
    try:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"],
                       check=True, capture_output=True, timeout=120)
        time.sleep(0.1)
    finally:
        finished.set()
        watcher.join(60)
    if len(seen) < 2:
        raise RuntimeError("PostgreSQL was restarted, but the probe saw no outage")
    return seen[0], seen[1]
