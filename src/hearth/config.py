"""Where Hearth keeps its files and how a client finds its coordinator.

The data dir (``--data``, ``$HEARTH_DATA``, default ``./.hearth``) holds the SQLite
database, the blob store, the CA (``ca/``), the admin bundle (``admin.hearth``), the
admin token and ``coordinator.json`` (the URL the running coordinator listens on).

:func:`resolve_endpoint` finds, for a client:

- the **bundle** (client certificate for mutual TLS): ``--bundle``, ``$HEARTH_BUNDLE``,
  ``<data>/admin.hearth``, ``./.hearth/admin.hearth``, ``~/.hearth/admin.hearth``;
- the **URL**: ``--url``, ``$HEARTH_URL``, then (for a bundle named explicitly) the
  bundle's addresses before ``<data>/coordinator.json``, or (otherwise) the other way
  round, then ``http://127.0.0.1:7843``;
- the **token**: ``--token``, ``$HEARTH_TOKEN``, then (for a plain-HTTP loopback
  coordinator only) ``<data>/admin.token``.

An ``https`` URL is dialled with the bundle's certificate; a token given explicitly is
sent as well (it then decides the role). An ``http`` URL (a loopback coordinator)
uses the token only.

Never log a token or a bundle's content: this module returns them, callers put them in
headers and TLS contexts only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.errors import Conflict, ValidationError

if TYPE_CHECKING:
    import ssl

    from hearth.security.bundle import Bundle

DEFAULT_PORT = 7843
DEFAULT_HOST = "127.0.0.1"
TOKEN_FILE = "admin.token"
BUNDLE_FILE = "admin.hearth"
ENDPOINT_FILE = "coordinator.json"
LOCK_FILE = "coordinator.lock"


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("HEARTH_DATA") or ".hearth").absolute()


def ensure_admin_token(directory: Path) -> str:
    """Read the admin token, creating it (mode 0600) on first start."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    bundle: Bundle | None = None
    #: Where the bundle came from (shown in messages; never its content).
    bundle_source: str | None = None

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for an https URL (None for http)."""
        if not self.tls:
            return None
        if self.bundle is None:
            raise ValidationError(
                f"the coordinator at {self.url} uses mutual TLS and no bundle was found: "
                "pass --bundle FILE (made by `hearth enroll` on the coordinator) or set "
                "$HEARTH_BUNDLE; on the coordinator host its admin bundle is "
                "<data>/admin.hearth")
        return self.bundle.ssl_context()


def _bundle_candidates(bundle: str | os.PathLike[str] | None, directory: Path
                       ) -> tuple[list[Path], bool]:
    """Paths to try in order, and whether the first was named explicitly."""
    explicit = bundle or os.environ.get("HEARTH_BUNDLE")
    if explicit:
        return [Path(explicit).expanduser()], True
    found: list[Path] = []
    for path in (directory / BUNDLE_FILE, Path(".hearth").absolute() / BUNDLE_FILE,
                 Path.home() / ".hearth" / BUNDLE_FILE):
        if path not in found:
            found.append(path)
    return found, False


def find_bundle(bundle: str | os.PathLike[str] | None = None,
                data: str | os.PathLike[str] | None = None
                ) -> tuple[Bundle | None, str | None, bool]:
    """The first bundle of the search order: (bundle, its path, named explicitly).

    A bundle named explicitly must exist; one found by searching must be readable
    (a damaged admin bundle is an error, never silently skipped)."""
    from hearth.security.bundle import read_bundle

    paths, explicit = _bundle_candidates(bundle, data_dir(data))
    for path in paths:
        if explicit or path.is_file():
            return read_bundle(path), str(path), explicit
    return None, None, False


def bundle_url(found: Bundle | None) -> str | None:
    if found is None or not found.addresses:
        return None
    return f"https://{found.addresses[0]}"


def _local_url(directory: Path) -> str | None:
    try:
        url = json.loads((directory / ENDPOINT_FILE).read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) and url else None


def resolve_endpoint(url: str | None = None, token: str | None = None,
                     data: str | os.PathLike[str] | None = None,
                     bundle: str | os.PathLike[str] | None = None) -> Endpoint:
    """Find the coordinator URL and credentials for a client (see the module doc)."""
    directory = data_dir(data)
    url = url or os.environ.get("HEARTH_URL")
    found, source, explicit = None, None, False
    if bundle or os.environ.get("HEARTH_BUNDLE") or not url or url.startswith("https://"):
        found, source, explicit = find_bundle(bundle, data)
    if not url:
        sources = ((bundle_url(found), _local_url(directory)) if explicit
                   else (_local_url(directory), bundle_url(found)))
        url = next((u for u in sources if u), f"http://{DEFAULT_HOST}:{DEFAULT_PORT}")
    url = str(url).rstrip("/")
    token = token or os.environ.get("HEARTH_TOKEN")
    if not token and not url.startswith("https://"):
        try:
            token = (directory / TOKEN_FILE).read_text().strip() or None
        except OSError:
            token = None
    return Endpoint(url=url, token=token, bundle=found, bundle_source=source)
