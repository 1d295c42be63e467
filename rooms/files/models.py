"""Responses and queries of uploads and files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from server.schemas import Out, Query

Hex = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[0-9a-f]+$")]


class FileOut(Out):
    id: str
    name: str
    size: int
    mime: str
    kind: Literal["image", "video", "audio", "document", "archive", "text", "other"]
    sha256: str
    status: Literal["ready", "scanning", "quarantined"]
    owner_id: str
    created_at: int
    has_thumbnail: bool
    width: int | None = None
    height: int | None = None
    # A signed link for <img>/<video> tags (no Authorization header), valid for files.link_ttl seconds.
    download_url: str
    thumbnail_url: str | None = None


class UploadOut(Out):
    id: str
    offset: int
    length: int
    created_at: int
    expires_at: int
    metadata: dict[str, str]
    file: FileOut | None = None


class FileListOut(Out):
    files: list[FileOut]
    has_more: bool


class RoomFilesQuery(Query):
    before: Annotated[int, Field(ge=0, le=2**53)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class DownloadQuery(Query):
    """A signed link (u, d, exp, sig) stands in for the Authorization header; `download=1` forces a download."""

    u: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    d: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    exp: Annotated[int, Field(ge=0, le=2**53)] | None = None
    sig: Hex | None = None
    download: bool = False
