"""Blob stores (the `BlobStore` port): file contents named by their sha256.

- `local.LocalBlobStore` ("disk"): a content-addressed folder, the default.
- `gridfs.GridFsBlobStore` ("gridfs"): a GridFS bucket in the MongoDB database.

Shared rules: a sha256 is 64 lowercase hex characters (anything else raises ValueError
before any path or query is built from it); `read_blob(start, end)` reads [start, end)
clipped to the blob (an `end` past the size reads to the end, an empty or inverted range
yields nothing); a negative `start` or `end` raises ValueError.
"""

from __future__ import annotations

import re

_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: str) -> str:
    """The name itself when it is a sha256 in lowercase hex; ValueError otherwise."""
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise ValueError("a blob name must be a sha256 in 64 lowercase hex characters")
    return sha256


def check_range(start: int, end: int | None) -> None:
    """A byte range's bounds must not be negative."""
    if start < 0 or (end is not None and end < 0):
        raise ValueError(f"bad byte range [{start}, {end})")


def clip_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """[start, end) clipped to a blob of `size` bytes; an empty range has start >= end."""
    stop = size if end is None else min(end, size)
    return min(start, size), stop
