"""Streaming blob bodies in and out of local files without holding them in memory.

Uploads read a file in 1 MiB chunks on a worker thread (the event loop never blocks on
disk); downloads write chunks to ``<path>.part`` and rename it into place only once
the whole blob has arrived, so a broken download never leaves a truncated file under
the final name. This module must never read a whole file into memory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024

BlobSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO


async def _chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    while True:
        block = await asyncio.to_thread(fh.read, CHUNK)
        if not block:
            return
        yield block


@asynccontextmanager
async def upload_body(source: BlobSource) -> AsyncIterator[tuple[object, dict[str, str]]]:
    """``(content, headers)`` for an upload of bytes, a path (str or PathLike) or a
    binary file object opened by the caller (read from its current position)."""
    headers = {"content-type": "application/octet-stream"}
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source), headers
        return
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            headers["content-length"] = str(os.fstat(fh.fileno()).st_size)
            yield _chunks(fh), headers
        finally:
            fh.close()
        return
    if not hasattr(source, "read"):
        from hearth.errors import ValidationError

        raise ValidationError(
            f"cannot upload a {type(source).__name__}: give bytes, a file path or a "
            "file opened in binary mode"
        )
    yield _chunks(source), headers


class PartFile:
    """A download target: chunks go to ``<path>.part``, renamed on :meth:`commit`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self._fh: BinaryIO | None = None

    async def __aenter__(self) -> PartFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = await asyncio.to_thread(self.part.open, "wb")
        return self

    async def write(self, block: bytes) -> None:
        if self._fh is None:
            raise RuntimeError("PartFile.write was called outside its async with block")
        await asyncio.to_thread(self._fh.write, block)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()
        if exc_type is None:
            self.part.replace(self.path)
        else:
            self.part.unlink(missing_ok=True)
