"""Blobs on local disk, content-addressed: `root/<sha[:2]>/<sha[2:4]>/<sha>`.

A put streams into a fresh temporary file under `root/tmp/`, hashing on the way, syncs it
to disk and then renames it into place with `os.replace` (atomic within one file system),
so a blob path only ever shows a complete blob. When the blob is already there the new copy
is dropped. Two puts of the same content racing past that check both rename: the second
replaces identical bytes, and a reader holding the first file keeps reading it.

A put that fails midway (the chunk source raises, the task is cancelled) removes its
temporary file. A crash can leave one behind: never visible as a blob, and `open()` removes
temporary files older than an hour (a put still writing one is newer than that).

Choices where the port is silent: see `server.storage.blobs` (names, ranges).
`read_blob` opens the file on the first iteration: an unknown blob raises KeyError then.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiofiles.os

from server.storage.blobs import check_range, check_sha256, clip_range

READ_CHUNK = 256 * 1024
# Temporary files older than this at start are leftovers of a crash.
STALE_TEMP_SECONDS = 3600


def _sync_directory(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX: the directory entry is data of its own)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(tmp: Path, older_than: float) -> None:
    for entry in os.scandir(tmp):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < older_than:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue


class LocalBlobStore:
    """The "disk" blob store: one folder on a local file system."""

    name = "disk"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def path_of(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists); ValueError for a malformed name."""
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def open(self) -> None:
        await aiofiles.os.makedirs(self.tmp, exist_ok=True)
        await asyncio.to_thread(_remove_stale_temps, self.tmp, time.time() - STALE_TEMP_SECONDS)

    async def close(self) -> None:
        return None

    async def put_blob(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        await aiofiles.os.makedirs(self.tmp, exist_ok=True)
        temp = self.tmp / f"{secrets.token_hex(16)}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            async with aiofiles.open(temp, "xb") as out:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    digest.update(chunk)
                    size += len(chunk)
                    await out.write(chunk)
                await out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
            sha256 = digest.hexdigest()
            final = self.path_of(sha256)
            if await aiofiles.os.path.exists(final):
                await aiofiles.os.remove(temp)
                return sha256, size
            await aiofiles.os.makedirs(final.parent, exist_ok=True)
            await aiofiles.os.replace(temp, final)
            await asyncio.to_thread(_sync_directory, final.parent)
        except BaseException:
            try:
                await aiofiles.os.remove(temp)
            except FileNotFoundError:
                pass
            raise
        return sha256, size

    async def blob_size(self, sha256: str) -> int | None:
        try:
            stat = await aiofiles.os.stat(self.path_of(sha256))
        except FileNotFoundError:
            return None
        return stat.st_size

    async def read_blob(self, sha256: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        check_range(start, end)
        path = self.path_of(sha256)
        try:
            blob = await aiofiles.open(path, "rb")
        except FileNotFoundError:
            raise KeyError(sha256) from None
        try:
            size = os.fstat(blob.fileno()).st_size
            position, stop = clip_range(start, end, size)
            await blob.seek(position)
            while position < stop:
                data = await blob.read(min(READ_CHUNK, stop - position))
                if not data:
                    break  # cannot happen for a blob (never written in place); be safe anyway
                position += len(data)
                yield data
        finally:
            await blob.close()

    async def delete_blob(self, sha256: str) -> bool:
        try:
            await aiofiles.os.remove(self.path_of(sha256))
        except FileNotFoundError:
            return False
        return True
