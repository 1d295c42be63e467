"""The blob store contract, for every blob store.

- ``disk``: `LocalBlobStore` on a temporary folder (always).
- ``gridfs-standin-mockupdb``: `GridFsBlobStore` through the real ``AsyncMongoClient`` and
  pymongo's GridFS code, talking to the wire-protocol stand-in, NOT a MongoDB server (see
  ``tests/storage/mongo_standin.py``); a fresh database per test. Always runs.
- ``gridfs-real``: `GridFsBlobStore` on a real MongoDB at ``MUSTER_TEST_MONGO_URL``; only
  present when that variable is set. Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from server.storage.blobs.gridfs import CHUNK_SIZE, GridFsBlobStore
from server.storage.blobs.local import READ_CHUNK, LocalBlobStore
from server.storage.ports import BlobStore
from tests.storage.conftest import REAL_MONGO_URL

BLOB_STORES = ["disk", "gridfs-standin-mockupdb"]
if REAL_MONGO_URL:
    BLOB_STORES.append("gridfs-real")

MIB = 1024 * 1024


@pytest.fixture(params=BLOB_STORES)
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "disk":
        store = LocalBlobStore(tmp_path / "blobs")
        await store.open()
        try:
            yield store
        finally:
            await store.close()
        return
    url = request.getfixturevalue("mongo_standin_url") if request.param == "gridfs-standin-mockupdb" else REAL_MONGO_URL
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
    db = client[f"muster_blobs_{uuid.uuid4().hex[:16]}"]
    grid = GridFsBlobStore(db)
    await grid.open()
    try:
        yield grid
    finally:
        try:
            await grid.close()
            await client.drop_database(db.name)
        finally:
            await client.close()


async def feed(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)  # let concurrent puts interleave
        yield part


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def pattern(size: int) -> bytes:
    """Bytes where every position differs from its neighbours in many ways (a range error shows)."""
    block = hashlib.sha256(b"muster").digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(block + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


async def read_all(blobs: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in blobs.read_blob(sha256, start=start, end=end)])


async def stored_copies(blobs: BlobStore, sha256: str) -> int:
    """How many copies of a blob the store holds (a look inside each store)."""
    if isinstance(blobs, LocalBlobStore):
        return int(blobs.path_of(sha256).exists())
    assert isinstance(blobs, GridFsBlobStore)
    return await blobs.files.count_documents({"filename": sha256})


async def test_put_returns_sha256_and_size(blobs: BlobStore) -> None:
    data = "现场照片 — evidence\n".encode() * 1000
    sha256, size = await blobs.put_blob(feed(pieces(data, 777)))
    assert (sha256, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert await blobs.blob_size(sha256) == len(data)
    assert await read_all(blobs, sha256) == data


async def test_identical_content_is_stored_once(blobs: BlobStore) -> None:
    data = pattern(300_000)
    first = await blobs.put_blob(feed(pieces(data, 1000)))
    second = await blobs.put_blob(feed(pieces(data, 65_536)))  # other chunking, same bytes
    assert first == second
    assert await stored_copies(blobs, first[0]) == 1
    assert await read_all(blobs, first[0]) == data
    if isinstance(blobs, GridFsBlobStore):
        # the dropped copy left no chunks behind
        assert await blobs.chunks.count_documents({}) == -(-len(data) // CHUNK_SIZE)


async def test_concurrent_puts_of_the_same_content(blobs: BlobStore) -> None:
    data = pattern(600_000)
    results = await asyncio.gather(*(blobs.put_blob(feed(pieces(data, 50_000 + i))) for i in range(5)))
    expected = (hashlib.sha256(data).hexdigest(), len(data))
    assert results == [expected] * 5
    assert await stored_copies(blobs, expected[0]) == 1
    assert await read_all(blobs, expected[0]) == data
    if isinstance(blobs, GridFsBlobStore):
        assert await blobs.chunks.count_documents({}) == -(-len(data) // CHUNK_SIZE)


async def test_empty_blob(blobs: BlobStore) -> None:
    sha256, size = await blobs.put_blob(feed([]))
    assert (sha256, size) == (hashlib.sha256(b"").hexdigest(), 0)
    assert await blobs.blob_size(sha256) == 0
    assert await read_all(blobs, sha256) == b""
    assert await read_all(blobs, sha256, start=0, end=10) == b""
    assert await blobs.put_blob(feed([b"", b""])) == (sha256, 0)
    assert await blobs.delete_blob(sha256) is True


async def test_multi_mib_blob_in_many_chunks(blobs: BlobStore) -> None:
    data = pattern(5 * MIB + 12_345)
    sha256, size = await blobs.put_blob(feed(pieces(data, 100_003)))
    assert size == len(data) and sha256 == hashlib.sha256(data).hexdigest()
    chunks = [chunk async for chunk in blobs.read_blob(sha256)]
    assert b"".join(chunks) == data
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= max(READ_CHUNK, CHUNK_SIZE)


async def test_exact_byte_ranges(blobs: BlobStore) -> None:
    data = pattern(3 * CHUNK_SIZE + 1000)
    sha256, size = await blobs.put_blob(feed(pieces(data, 64_000)))
    ranges: list[tuple[int, int | None]] = [
        (0, None),
        (1, None),  # start only
        (size - 1, None),
        (100, 200),  # inside one chunk
        (0, 1),
        (CHUNK_SIZE - 10, CHUNK_SIZE + 10),  # across one GridFS chunk boundary
        (CHUNK_SIZE, CHUNK_SIZE + 1),  # exactly at a boundary
        (CHUNK_SIZE - 1, CHUNK_SIZE),
        (10, 3 * CHUNK_SIZE + 5),  # across several boundaries
        (READ_CHUNK - 3, READ_CHUNK + 3),
        (2 * CHUNK_SIZE, 3 * CHUNK_SIZE),  # one whole chunk
        (5000, size),  # end at the size
        (size - 1000, size),  # the short last chunk
        (0, size),
    ]
    for start, end in ranges:
        assert await read_all(blobs, sha256, start, end) == data[start:end], (start, end)
    # clipped: an end past the size reads to the end; empty or inverted ranges yield nothing
    assert await read_all(blobs, sha256, size - 5, size + 100) == data[-5:]
    assert await read_all(blobs, sha256, size, None) == b""
    assert await read_all(blobs, sha256, size + 10, None) == b""
    assert await read_all(blobs, sha256, 50, 50) == b""
    assert await read_all(blobs, sha256, 60, 50) == b""
    with pytest.raises(ValueError):
        await read_all(blobs, sha256, -1, None)


async def test_unknown_blob(blobs: BlobStore) -> None:
    unknown = hashlib.sha256(b"never stored").hexdigest()
    assert await blobs.blob_size(unknown) is None
    with pytest.raises(KeyError):
        await read_all(blobs, unknown)
    with pytest.raises(KeyError):
        await read_all(blobs, unknown, 5, 10)
    assert await blobs.delete_blob(unknown) is False


@pytest.mark.parametrize("bad", ["", "A" * 64, "a" * 63, "a" * 65, "../" + "a" * 61, "g" * 64, "a" * 63 + "/"])
async def test_malformed_names_are_refused_before_any_lookup(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        await blobs.blob_size(bad)
    with pytest.raises(ValueError):
        await read_all(blobs, bad)
    with pytest.raises(ValueError):
        await blobs.delete_blob(bad)


async def test_delete(blobs: BlobStore) -> None:
    keep = await blobs.put_blob(feed([b"keep me"]))
    gone = await blobs.put_blob(feed([pattern(CHUNK_SIZE + 1)]))
    assert await blobs.delete_blob(gone[0]) is True
    assert await blobs.blob_size(gone[0]) is None
    with pytest.raises(KeyError):
        await read_all(blobs, gone[0])
    assert await blobs.delete_blob(gone[0]) is False
    assert await read_all(blobs, keep[0]) == b"keep me"
    if isinstance(blobs, GridFsBlobStore):
        assert await blobs.chunks.count_documents({}) == 1  # only the kept blob's chunk
    # stored again after a delete: there again
    assert await blobs.put_blob(feed([pattern(CHUNK_SIZE + 1)])) == gone
    assert await read_all(blobs, gone[0]) == pattern(CHUNK_SIZE + 1)


class SourceBroke(Exception):
    pass


async def broken_source(data: bytes, fail_after: int) -> AsyncIterator[bytes]:
    for i, part in enumerate(pieces(data, 100_000)):
        if i == fail_after:
            raise SourceBroke
        yield part


async def test_a_failed_put_leaves_nothing_behind(blobs: BlobStore) -> None:
    data = pattern(2 * MIB)
    with pytest.raises(SourceBroke):
        await blobs.put_blob(broken_source(data, fail_after=7))
    sha256 = hashlib.sha256(data).hexdigest()
    assert await blobs.blob_size(sha256) is None
    if isinstance(blobs, LocalBlobStore):
        assert [p for p in blobs.root.rglob("*") if p.is_file()] == []
    else:
        assert isinstance(blobs, GridFsBlobStore)
        assert await blobs.files.count_documents({}) == 0
        assert await blobs.chunks.count_documents({}) == 0
    # the store still works, and the content can be put in full afterwards
    assert await blobs.put_blob(feed(pieces(data, 100_000))) == (sha256, len(data))
    assert await read_all(blobs, sha256) == data


async def test_a_cancelled_put_leaves_nothing_behind(blobs: BlobStore) -> None:
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield pattern(CHUNK_SIZE + 5)
        started.set()
        await asyncio.Event().wait()  # the client goes quiet
        yield b"never"

    task = asyncio.create_task(blobs.put_blob(stalls()))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if isinstance(blobs, LocalBlobStore):
        assert [p for p in blobs.root.rglob("*") if p.is_file()] == []
    else:
        assert isinstance(blobs, GridFsBlobStore)
        assert await blobs.files.count_documents({}) == 0
        assert await blobs.chunks.count_documents({}) == 0


# -- disk only ------------------------------------------------------------------------


async def test_disk_layout_is_content_addressed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.open()
    sha256, _ = await store.put_blob(feed([b"hello"]))
    path = tmp_path / sha256[:2] / sha256[2:4] / sha256
    assert path.read_bytes() == b"hello"
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_disk_open_clears_stale_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.open()
    stale, fresh = tmp_path / "tmp" / "old.part", tmp_path / "tmp" / "new.part"
    stale.write_bytes(b"left by a crash")
    fresh.write_bytes(b"a put still writing")
    os.utime(stale, (1, 1))
    await LocalBlobStore(tmp_path).open()
    assert not stale.exists() and fresh.exists()


async def test_disk_put_is_never_half_visible(tmp_path: Path) -> None:
    """While a put is streaming, its blob's path does not exist: only the temporary file grows."""
    store = LocalBlobStore(tmp_path)
    await store.open()
    data = pattern(1_000_000)
    sha256 = hashlib.sha256(data).hexdigest()
    seen: list[bool] = []

    async def watched() -> AsyncIterator[bytes]:
        for part in pieces(data, 100_000):
            seen.append(store.path_of(sha256).exists())
            yield part

    assert await store.put_blob(watched()) == (sha256, len(data))
    assert seen == [False] * 10
    assert store.path_of(sha256).read_bytes() == data


# -- GridFS only ----------------------------------------------------------------------


async def test_gridfs_on_standin_put_without_open_still_stores_once(mongo_standin_url: str) -> None:
    """Stand-in, not a real MongoDB: a put on a store nobody opened creates the unique index first."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_standin_url)
    db = client[f"muster_blobs_{uuid.uuid4().hex[:16]}"]
    try:
        store = GridFsBlobStore(db, bucket="unopened")
        first = await store.put_blob(feed([b"once"]))
        assert await store.put_blob(feed([b"once"])) == first
        assert await store.files.count_documents({"filename": first[0]}) == 1
        assert await store.chunks.count_documents({}) == 1
        names = {index["name"] async for index in await store.files.list_indexes()}
        assert "blobs_sha256_unique" in names
    finally:
        await client.drop_database(db.name)
        await client.close()
