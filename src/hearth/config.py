"""Where Hearth keeps its files and how a client finds its coordinator.

The data dir (``--data``, ``$HEARTH_DATA``, default ``./.hearth``) holds the SQLite
database, the blob store, the admin token and ``coordinator.json`` (the URL the
running coordinator listens on). Clients resolve, in order: explicit arguments,
``$HEARTH_URL`` / ``$HEARTH_TOKEN``, then the files in the data dir.

Never log a token: this module returns it, callers put it in headers only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import Conflict

DEFAULT_PORT = 7843
DEFAULT_HOST = "127.0.0.1"
TOKEN_FILE = "admin.token"
ENDPOINT_FILE = "coordinator.json"
LOCK_FILE = "coordinator.lock"


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("HEARTH_DATA") or ".hearth").absolute()


def ensure_admin_token(directory: Path) -> str:
    """Read the admin token, creating it (mode 0600) on first start."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = "hth_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def write_endpoint(directory: Path, url: str) -> None:
    """Record where the coordinator listens, atomically, for local clients."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (ENDPOINT_FILE + ".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")
    tmp.replace(directory / ENDPOINT_FILE)


@contextlib.contextmanager
def exclusive_data_dir(directory: Path) -> Iterator[None]:
    """Hold the data dir for one coordinator while it runs.

    A second coordinator on the same data dir would take over ``coordinator.json``
    and, on SQLite, never wake the first one's workers. The lock is an ``flock``,
    so the kernel releases it when the holder exits, even after ``kill -9``.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): nothing to hold
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "a+")  # noqa: SIM115 - held until the end
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                running = json.loads((directory / ENDPOINT_FILE).read_text())
                who = f" at {running['url']} (pid {running['pid']})"
            except (OSError, ValueError, KeyError):
                who = ""
            raise Conflict(
                f"another coordinator{who} is already using the data dir {directory}: "
                "stop it first, or give this one a data dir of its own (--data)"
            ) from None
        yield
    finally:
        handle.close()


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    token: str | None


def resolve_endpoint(url: str | None = None, token: str | None = None,
                     data: str | os.PathLike[str] | None = None) -> Endpoint:
    """Find the coordinator URL and credentials for a client."""
    directory = data_dir(data)
    url = url or os.environ.get("HEARTH_URL")
    if not url:
        try:
            url = json.loads((directory / ENDPOINT_FILE).read_text())["url"]
        except (OSError, ValueError, KeyError):
            url = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    token = token or os.environ.get("HEARTH_TOKEN")
    if not token:
        try:
            token = (directory / TOKEN_FILE).read_text().strip() or None
        except OSError:
            token = None
    return Endpoint(url=str(url).rstrip("/"), token=token)
