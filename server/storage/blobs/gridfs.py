"""Blobs in a GridFS bucket of the MongoDB database (pymongo's `AsyncGridFSBucket`).

A blob is a GridFS file whose filename is its sha256. A put streams the chunks under a fresh
ObjectId, hashing on the way, and names the file only at the end: GridFS inserts the file
document (the only thing a reader looks up) after every chunk, so a put cut off midway
leaves chunks nobody can reach, never a partial blob. A failed put deletes its chunks.

Identical content is kept once: the bucket's files collection has a unique index on
`filename`, so when the content is already stored (or a concurrent put of the same content
got there first) the server refuses the new file document and the new chunks are deleted;
the oldest copy stays. Reads still open revision 0 (the oldest) by name. `open()` creates
that index; a put on a store nobody opened creates it first (once), so a forgotten `open()`
cannot let duplicates in.

Choices where the port is silent: see `server.storage.blobs` (names, ranges).
`read_blob` looks the blob up on the first iteration: an unknown blob raises KeyError then.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import FileExists, NoFile
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from server.storage.blobs import check_range, check_sha256, clip_range

# GridFS's own default (255 KiB): a chunk document stays well under the 16 MiB limit.
CHUNK_SIZE = 255 * 1024


class GridFsBlobStore:
    """The "gridfs" blob store: one GridFS bucket (`<bucket>.files`, `<bucket>.chunks`)."""

    name = "gridfs"

    def __init__(self, db: AsyncDatabase[Any], bucket: str = "blobs") -> None:
        self.db = db
        self.bucket_name = bucket
        self._bucket = AsyncGridFSBucket(db, bucket_name=bucket, chunk_size_bytes=CHUNK_SIZE)
        self._indexed = False

    @property
    def files(self) -> AsyncCollection[Any]:
        return self.db[f"{self.bucket_name}.files"]

    @property
    def chunks(self) -> AsyncCollection[Any]:
        return self.db[f"{self.bucket_name}.chunks"]

    async def open(self) -> None:
        # The two indexes GridFS itself wants, under the names the driver would give them (it
        # creates them on a first write into an empty bucket), plus the one that keeps each
        # content once.
        await self.files.create_indexes(
            [
                IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)], name="filename_1_uploadDate_1"),
                IndexModel([("filename", ASCENDING)], name="blobs_sha256_unique", unique=True),
            ]
        )
        await self.chunks.create_indexes(
            [IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], name="files_id_1_n_1", unique=True)]
        )
        self._indexed = True

    async def close(self) -> None:
        return None  # the database's client belongs to whoever made it

    async def put_blob(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        if not self._indexed:
            await self.open()
        file_id = ObjectId()
        digest = hashlib.sha256()
        size = 0
        # Named for now by its id; the real name is known (and set) only once all bytes are in.
        stream = self._bucket.open_upload_stream_with_id(file_id, f"partial-{file_id}")
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                digest.update(chunk)
                size += len(chunk)
                await stream.write(chunk)
            sha256 = digest.hexdigest()
            await stream.set("filename", sha256)
            try:
                await stream.close()
            except FileExists:
                # The content is stored already: drop this copy, keep the oldest.
                await self._delete_chunks(file_id)
        except BaseException:
            await self._delete_chunks(file_id)
            raise
        return sha256, size

    async def _delete_chunks(self, file_id: ObjectId) -> None:
        await self.chunks.delete_many({"files_id": file_id})

    async def _oldest(self, sha256: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.files.find_one(
            {"filename": check_sha256(sha256)}, sort=[("uploadDate", ASCENDING), ("_id", ASCENDING)]
        )
        return doc

    async def blob_size(self, sha256: str) -> int | None:
        doc = await self._oldest(sha256)
        return None if doc is None else int(doc["length"])

    async def read_blob(self, sha256: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        check_range(start, end)
        check_sha256(sha256)
        try:
            grid_out = await self._bucket.open_download_stream_by_name(sha256, revision=0)
        except NoFile:
            raise KeyError(sha256) from None
        async with grid_out:
            position, stop = clip_range(start, end, int(grid_out.length))
            if position >= stop:
                return
            await grid_out.seek(position)
            while position < stop:
                # The rest of the current GridFS chunk, cut at the end of the range.
                data = await grid_out.readchunk()
                if not data:
                    break  # a chunk gone missing; GridFS raises CorruptGridFile before this
                data = data[: stop - position]
                position += len(data)
                yield data

    async def delete_blob(self, sha256: str) -> bool:
        check_sha256(sha256)
        deleted = False
        async for doc in self.files.find({"filename": sha256}, projection={"_id": 1}):
            # The file document first: from then on nobody finds the blob; the chunks follow.
            result = await self.files.delete_one({"_id": doc["_id"]})
            await self._delete_chunks(doc["_id"])
            deleted = deleted or result.deleted_count > 0
        return deleted
