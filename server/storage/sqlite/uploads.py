"""Resumable (tus) uploads on SQLite.

`commit_upload_segment` is one UPDATE whose WHERE clause is the compare-and-set (the row's
offset is the expected one and no file was made from it yet) and whose SET appends the
segment to the JSON list and moves the offset. Writers take turns on one connection, so of
two commits at the same offset the second finds the offset moved and changes nothing.

Choices where the port is silent:
- `commit_upload_segment` raises ValueError when `segment.start` is not `expected_offset` or
  the segment is empty (a caller's mistake, not a lost race); a segment that would run past
  the declared length is refused like a lost race (False, nothing written).
- `finish_upload` also answers False for an unknown upload; once finished, an upload takes no
  more segments and is neither expired nor counted as open.
- Expired uploads are listed by expiry, then id; `expires_at <= now` is expired, so
  `open_upload_bytes` counts uploads with `expires_at > now`.
"""

from __future__ import annotations

import json
import sqlite3

from server.storage.records import Upload, UploadSegment
from server.storage.sqlite.db import SqliteBase


def _upload(row: sqlite3.Row) -> Upload:
    return Upload(
        id=row["id"],
        user_id=row["user_id"],
        device_id=row["device_id"],
        length=row["length"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        metadata=json.loads(row["metadata"]),
        offset=row["upload_offset"],
        segments=tuple(
            UploadSegment(start=s["start"], size=s["size"], key=s["key"]) for s in json.loads(row["segments"])
        ),
        file_id=row["file_id"],
    )


def _segment_json(segment: UploadSegment) -> str:
    return json.dumps({"start": segment.start, "size": segment.size, "key": segment.key}, ensure_ascii=False)


def check_segment(expected_offset: int, segment: UploadSegment) -> None:
    """A segment must start where the caller expects the upload to be, and hold bytes."""
    if segment.start != expected_offset:
        raise ValueError(f"segment starts at {segment.start}, not at the expected offset {expected_offset}")
    if segment.size <= 0:
        raise ValueError("an upload segment must hold at least one byte")


class SqliteUploads(SqliteBase):
    async def create_upload(self, upload: Upload) -> None:
        await self.write(
            "INSERT INTO uploads (id, user_id, device_id, length, created_at, expires_at, metadata,"
            " upload_offset, segments, file_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                upload.id,
                upload.user_id,
                upload.device_id,
                upload.length,
                upload.created_at,
                upload.expires_at,
                json.dumps(upload.metadata, ensure_ascii=False),
                upload.offset,
                "[" + ",".join(_segment_json(s) for s in upload.segments) + "]",
                upload.file_id,
            ),
        )

    async def get_upload(self, upload_id: str) -> Upload | None:
        row = await self.fetch_one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return _upload(row) if row else None

    async def commit_upload_segment(self, upload_id: str, *, expected_offset: int, segment: UploadSegment) -> bool:
        check_segment(expected_offset, segment)
        changed = await self.write(
            "UPDATE uploads SET upload_offset = upload_offset + ?,"
            " segments = json_insert(segments, '$[#]', json(?))"
            " WHERE id = ? AND upload_offset = ? AND file_id IS NULL AND upload_offset + ? <= length",
            (segment.size, _segment_json(segment), upload_id, expected_offset, segment.size),
        )
        return changed == 1

    async def finish_upload(self, upload_id: str, *, file_id: str) -> bool:
        changed = await self.write(
            "UPDATE uploads SET file_id = ? WHERE id = ? AND file_id IS NULL AND upload_offset = length",
            (file_id, upload_id),
        )
        return changed == 1

    async def delete_upload(self, upload_id: str) -> bool:
        return await self.write("DELETE FROM uploads WHERE id = ?", (upload_id,)) > 0

    async def list_expired_uploads(self, *, now: int, limit: int = 100) -> list[Upload]:
        if limit <= 0:
            return []
        rows = await self.fetch_all(
            "SELECT * FROM uploads WHERE file_id IS NULL AND expires_at <= ? ORDER BY expires_at, id LIMIT ?",
            (now, limit),
        )
        return [_upload(row) for row in rows]

    async def open_upload_bytes(self, user_id: str, *, now: int) -> int:
        row = await self.fetch_one(
            "SELECT COALESCE(SUM(length), 0) AS total FROM uploads"
            " WHERE user_id = ? AND file_id IS NULL AND expires_at > ?",
            (user_id, now),
        )
        return int(row["total"]) if row else 0
