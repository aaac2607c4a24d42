"""The filesystem BlobStore on real files in a temporary directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from hearth.blobs.fs import FsBlobStore
from hearth.errors import NotFound, PayloadTooLarge, ValidationError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    blobs = FsBlobStore(tmp_path / "blobs")
    yield blobs
    blobs.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_put_streams_hashes_and_reads_back(store: FsBlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    parts = [data[i:i + 65536] for i in range(0, len(data), 65536)]

    async def scenario() -> bytes:
        info = await store.put(chunks(parts))
        assert (info.digest, info.size, info.created) == (sha(data), len(data), True)
        assert await store.exists(info.digest)
        assert await store.size(info.digest) == len(data)
        reader = await store.open(info.digest)
        assert reader.size == len(data)
        return b"".join([c async for c in reader.chunks()])

    assert run(scenario()) == data
    digest = sha(data)
    assert (store.root / digest[:2] / digest[2:]).read_bytes() == data


def test_expected_digest_mismatch_keeps_nothing(store: FsBlobStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(ValidationError, match="hashes to"):
        run(store.put(chunks([b"hello"]), expected=wrong))
    assert all_files(store.root) == []
    assert not run(store.exists(wrong))


def test_expected_digest_match_is_stored(store: FsBlobStore) -> None:
    info = run(store.put(chunks([b"hel", b"lo"]), expected=sha(b"hello")))
    assert info.digest == sha(b"hello")
    assert run(store.size(info.digest)) == 5


def test_identical_content_is_stored_once(store: FsBlobStore) -> None:
    first = run(store.put(chunks([b"same bytes"])))
    second = run(store.put(chunks([b"same ", b"bytes"])))
    assert first.digest == second.digest
    assert (first.created, second.created) == (True, False)
    assert len(all_files(store.root)) == 1


def test_dedupe_refreshes_the_age_so_gc_spares_it(store: FsBlobStore) -> None:
    info = run(store.put(chunks([b"old"])))
    path = store.root / info.digest[:2] / info.digest[2:]
    os.utime(path, (1_000_000, 1_000_000))
    assert run(store.older_than(2_000_000)) == [info.digest]
    run(store.put(chunks([b"old"])))
    assert run(store.older_than(2_000_000)) == []


@pytest.mark.parametrize("digest", [
    "../../etc/passwd",
    "../" + "a" * 61,
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "/" + "a" * 63,
    "",
])
def test_bad_digests_are_refused_before_touching_files(store: FsBlobStore, tmp_path: Path,
                                                      digest: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    for call in (store.size(digest), store.open(digest), store.delete(digest),
                 store.exists(digest)):
        with pytest.raises(ValidationError, match="not valid"):
            run(call)
    with pytest.raises(ValidationError):
        run(store.put(chunks([b"x"]), expected=digest))
    assert sorted(tmp_path.rglob("*")) == before


def test_missing_blob_is_not_found(store: FsBlobStore) -> None:
    digest = sha(b"never stored")
    assert not run(store.exists(digest))
    with pytest.raises(NotFound):
        run(store.size(digest))
    with pytest.raises(NotFound):
        run(store.open(digest))
    assert run(store.delete(digest)) is False


def test_over_the_size_limit_keeps_nothing(store: FsBlobStore) -> None:
    with pytest.raises(PayloadTooLarge, match="limit of 10 bytes"):
        run(store.put(chunks([b"123456", b"7890", b"x"]), max_size=10))
    assert all_files(store.root) == []
    info = run(store.put(chunks([b"1234567890"]), max_size=10))
    assert info.size == 10


def test_a_cancelled_upload_leaves_nothing(store: FsBlobStore) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def endless() -> AsyncIterator[bytes]:
            yield b"first part"
            started.set()
            await asyncio.Event().wait()  # the client stalls, then goes away
            yield b"never"

        task = asyncio.create_task(store.put(endless()))
        await started.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert all_files(store.root) == []


def test_delete_and_gc_listing(store: FsBlobStore) -> None:
    old = run(store.put(chunks([b"old blob"])))
    new = run(store.put(chunks([b"new blob"])))
    past = time.time() - 7200
    os.utime(store.root / old.digest[:2] / old.digest[2:], (past, past))
    assert run(store.older_than(time.time() - 3600)) == [old.digest]
    assert run(store.delete(old.digest)) is True
    assert not run(store.exists(old.digest))
    assert run(store.exists(new.digest))
    assert run(store.older_than(time.time() - 3600)) == []


def test_sweep_removes_only_stale_partial_uploads(store: FsBlobStore) -> None:
    stale = store.root / ".incoming-stale"
    fresh = store.root / ".incoming-fresh"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    past = time.time() - 7200
    os.utime(stale, (past, past))
    kept = run(store.put(chunks([b"complete"])))
    assert run(store.sweep_incomplete(before=time.time() - 3600)) == 1
    assert not stale.exists()
    assert fresh.exists()
    assert run(store.exists(kept.digest))


def test_reader_closed_early_releases_the_file(store: FsBlobStore) -> None:
    info = run(store.put(chunks([os.urandom(600_000)])))

    async def scenario() -> None:
        reader = await store.open(info.digest)
        stream = reader.chunks()
        first = await stream.__anext__()
        assert first
        await stream.aclose()  # type: ignore[attr-defined]
        await reader.aclose()

    run(scenario())
