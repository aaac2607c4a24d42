"""The BlobStore port: content-addressed storage for large job inputs and outputs.

A blob is named by the SHA-256 of its bytes (64 lowercase hex characters). The port is
asynchronous because blobs are streamed through the event loop; adapters keep their
blocking I/O off the loop. Adapters must validate every digest with
:func:`hearth.domain.validation.check_digest` before it names anything (a digest is
never a path), must never keep content that does not hash to the digest asked for,
and must make a blob visible only once it is completely and durably written.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    #: False when identical content was already stored (deduplicated).
    created: bool = True


class BlobReader(Protocol):
    """An open blob: its size, and its bytes as an async iterator of chunks."""

    size: int

    def chunks(self) -> AsyncIterator[bytes]:
        """Yield the content; closes the underlying file when exhausted or closed."""
        ...

    async def aclose(self) -> None:
        ...


class BlobStore(Protocol):
    async def put(self, chunks: AsyncIterable[bytes], *, expected: str | None = None,
                  max_size: int | None = None) -> BlobInfo:
        """Store the streamed content and return its digest and size.

        With ``expected``, content that hashes differently raises ``ValidationError``
        and nothing is kept. More than ``max_size`` bytes raises ``PayloadTooLarge``
        and nothing is kept. Storing content that already exists keeps one copy and
        refreshes its age (so garbage collection does not remove it from under a
        caller that just uploaded it).
        """
        ...

    async def exists(self, digest: str) -> bool:
        ...

    async def size(self, digest: str) -> int:
        """The blob's size in bytes; ``NotFound`` if it is not stored."""
        ...

    async def open(self, digest: str) -> BlobReader:
        """Open the blob for streaming; ``NotFound`` if it is not stored."""
        ...

    async def delete(self, digest: str) -> bool:
        """Remove the blob; False if it was not there."""
        ...

    async def older_than(self, mtime: float) -> list[str]:
        """Digests of blobs last written before ``mtime`` (epoch seconds): GC candidates."""
        ...

    async def sweep_incomplete(self, *, before: float) -> int:
        """Remove abandoned partial uploads started before ``before``; return how many."""
        ...

    def close(self) -> None:
        ...
