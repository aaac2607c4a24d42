"""The filesystem BlobStore: content-addressed files under one root directory.

Layout: ``<root>/<first 2 hex>/<remaining 62 hex>``. An upload streams into a
``.incoming-*`` file in ``<root>`` (same filesystem) while its SHA-256 is computed,
is fsynced, and only then renamed atomically to its digest's path, so a blob that is
visible is complete and durable. Identical content is stored once.

It must never build a path from a digest that did not pass
:func:`hearth.domain.validation.check_digest` (a digest is never a path: no
``../``), never keep content whose hash does not match the digest asked for, and
never do blocking file I/O on the event loop (everything runs in its own small pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from hearth.blobs.port import BlobInfo
from hearth.domain.validation import check_digest
from hearth.errors import NotFound, PayloadTooLarge, ValidationError

_T = TypeVar("_T")
_INCOMING = ".incoming-"
_HEX = frozenset("0123456789abcdef")
#: Bytes gathered before one write (and hash update) is handed to the pool.
WRITE_CHUNK = 1024 * 1024
READ_CHUNK = 256 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FsBlobReader:
    """An open blob file read in chunks on the store's pool; closes itself when done."""

    def __init__(self, fd: int, size: int, run: Callable[..., Any]) -> None:
        self.size = size
        self._fd: int | None = fd
        self._run = run

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while self._fd is not None:
                data: bytes = await self._run(os.read, self._fd, READ_CHUNK)
                if not data:
                    break
                yield data
        finally:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    async def aclose(self) -> None:
        self._close()


class FsBlobStore:
    def __init__(self, root: str | os.PathLike[str], *, threads: int = 4) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hearth-blobs")

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def _path(self, digest: str) -> Path:
        digest = check_digest(digest)
        return self.root / digest[:2] / digest[2:]

    # -- writing ---------------------------------------------------------------------
    def _open_temp(self) -> tuple[IO[bytes], str]:
        fd, name = tempfile.mkstemp(prefix=_INCOMING, dir=self.root)
        return os.fdopen(fd, "wb"), name

    @staticmethod
    def _write(fh: IO[bytes], hasher: Any, data: bytes) -> None:
        hasher.update(data)
        fh.write(data)

    def _commit(self, fh: IO[bytes], temp: str, digest: str) -> bool:
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        final = self._path(digest)
        if final.exists():
            os.unlink(temp)
            os.utime(final)  # fresh again: GC must not take it from a new uploader
            return False
        final.parent.mkdir(exist_ok=True, mode=0o700)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        return True

    @staticmethod
    def _discard(fh: IO[bytes], temp: str) -> None:
        fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)

    async def put(self, chunks: AsyncIterable[bytes], *, expected: str | None = None,
                  max_size: int | None = None) -> BlobInfo:
        if expected is not None:
            check_digest(expected)
        fh, temp = await self._run(self._open_temp)
        hasher = hashlib.sha256()
        size = 0
        buf = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(
                        f"the blob is larger than the limit of {max_size} bytes; split it "
                        "or raise the coordinator's blob limit")
                buf += chunk
                if len(buf) >= WRITE_CHUNK:
                    data, buf = bytes(buf), bytearray()
                    await self._run(self._write, fh, hasher, data)
            if buf:
                await self._run(self._write, fh, hasher, bytes(buf))
            digest = hasher.hexdigest()
            if expected is not None and digest != expected:
                raise ValidationError(
                    f"the uploaded content hashes to {digest}, not to {expected}; nothing "
                    "was stored. Check that the digest is the SHA-256 of exactly these bytes")
            created = await self._run(self._commit, fh, temp, digest)
        except BaseException:
            # Synchronous on purpose: a cancelled upload must still leave nothing behind.
            self._discard(fh, temp)
            raise
        return BlobInfo(digest=digest, size=size, created=created)

    # -- reading ---------------------------------------------------------------------
    def _stat_size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not stored; upload it with "
                           f"PUT /v1/blobs/{digest} first") from None

    async def exists(self, digest: str) -> bool:
        try:
            await self.size(digest)
        except NotFound:
            return False
        return True

    async def size(self, digest: str) -> int:
        return await self._run(self._stat_size, check_digest(digest))

    def _open_fd(self, digest: str) -> tuple[int, int]:
        try:
            fd = os.open(self._path(digest), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not stored") from None
        return fd, os.fstat(fd).st_size

    async def open(self, digest: str) -> FsBlobReader:
        check_digest(digest)
        fd, size = await self._run(self._open_fd, digest)
        return FsBlobReader(fd, size, self._run)

    # -- removal and garbage collection ----------------------------------------------
    def _unlink(self, digest: str) -> bool:
        try:
            os.unlink(self._path(digest))
        except FileNotFoundError:
            return False
        return True

    async def delete(self, digest: str) -> bool:
        check_digest(digest)
        return await self._run(self._unlink, digest)

    def _scan_older(self, mtime: float) -> list[str]:
        found: list[str] = []
        with os.scandir(self.root) as top:
            for sub in top:
                if len(sub.name) != 2 or not _HEX.issuperset(sub.name) or not sub.is_dir():
                    continue
                with os.scandir(sub.path) as files:
                    for entry in files:
                        digest = sub.name + entry.name
                        if len(digest) != 64 or not _HEX.issuperset(entry.name):
                            continue
                        try:
                            if entry.stat().st_mtime < mtime:
                                found.append(digest)
                        except FileNotFoundError:
                            continue
        return found

    async def older_than(self, mtime: float) -> list[str]:
        return await self._run(self._scan_older, mtime)

    def _sweep(self, before: float) -> int:
        removed = 0
        with os.scandir(self.root) as top:
            for entry in top:
                if not entry.name.startswith(_INCOMING):
                    continue
                try:
                    if entry.stat().st_mtime < before:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    async def sweep_incomplete(self, *, before: float) -> int:
        return await self._run(self._sweep, before)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
