"""Finished files and their links on SQLite.

Choices where the port is silent:
- `get_files` returns each existing file once, at the place it was first asked for.
- `set_file_status` and `set_file_preview` store every field they are given, None included
  (a rescan that finds the file clean clears the old signature); True when the file exists.
- `list_files_by_status` is ordered by creation, then id.
- A removed link still counts as a link: `add_file_link` for the same file and target answers
  False and leaves it removed (a recalled message does not come back).
- Links are ordered by `created_at`, then target type, target id (and file id for a scope).
- `list_scope_files` pages by link `created_at`: a page holds the links strictly before
  `before`, newest first, and when it ends inside a millisecond it runs past `limit` to
  finish it, so passing the last link's `created_at` as the next `before` skips nothing (a
  message's attachments share one `created_at`). Links whose file is missing are left out.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from server.storage.records import FileLink, FileStatus, StoredFile
from server.storage.sqlite.db import SqliteBase


def _file(row: sqlite3.Row, prefix: str = "") -> StoredFile:
    return StoredFile(
        id=row[f"{prefix}id"],
        sha256=row[f"{prefix}sha256"],
        size=row[f"{prefix}size"],
        mime=row[f"{prefix}mime"],
        name=row[f"{prefix}name"],
        owner_id=row[f"{prefix}owner_id"],
        device_id=row[f"{prefix}device_id"],
        created_at=row[f"{prefix}created_at"],
        status=row[f"{prefix}status"],
        scan_result=row[f"{prefix}scan_result"],
        scanned_at=row[f"{prefix}scanned_at"],
        thumbnail_sha256=row[f"{prefix}thumbnail_sha256"],
        width=row[f"{prefix}width"],
        height=row[f"{prefix}height"],
    )


def _link(row: sqlite3.Row) -> FileLink:
    return FileLink(
        file_id=row["file_id"],
        scope_type=row["scope_type"],
        scope_id=row["scope_id"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        removed_at=row["removed_at"],
    )


# A scope's live links joined with their files; the file's columns come prefixed with `f_`.
_SCOPE_SELECT = (
    "SELECT l.*, f.id AS f_id, f.sha256 AS f_sha256, f.size AS f_size, f.mime AS f_mime, f.name AS f_name,"
    " f.owner_id AS f_owner_id, f.device_id AS f_device_id, f.created_at AS f_created_at, f.status AS f_status,"
    " f.scan_result AS f_scan_result, f.scanned_at AS f_scanned_at, f.thumbnail_sha256 AS f_thumbnail_sha256,"
    " f.width AS f_width, f.height AS f_height"
    " FROM file_links AS l JOIN files AS f ON f.id = l.file_id"
    " WHERE l.scope_type = ? AND l.scope_id = ? AND l.removed_at IS NULL"
)
_SCOPE_ORDER = " ORDER BY l.created_at DESC, l.target_type DESC, l.target_id DESC, l.file_id DESC"


class SqliteFiles(SqliteBase):
    async def create_file(self, file: StoredFile) -> None:
        await self.write(
            "INSERT INTO files (id, sha256, size, mime, name, owner_id, device_id, created_at, status, scan_result,"
            " scanned_at, thumbnail_sha256, width, height) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                file.id,
                file.sha256,
                file.size,
                file.mime,
                file.name,
                file.owner_id,
                file.device_id,
                file.created_at,
                file.status,
                file.scan_result,
                file.scanned_at,
                file.thumbnail_sha256,
                file.width,
                file.height,
            ),
        )

    async def get_file(self, file_id: str) -> StoredFile | None:
        row = await self.fetch_one("SELECT * FROM files WHERE id = ?", (file_id,))
        return _file(row) if row else None

    async def get_files(self, file_ids: list[str]) -> list[StoredFile]:
        wanted = list(dict.fromkeys(file_ids))
        if not wanted:
            return []
        # The ids are bound as one JSON list: no statement grows with the number asked.
        rows = await self.fetch_all(
            "SELECT * FROM files WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(wanted),)
        )
        found = {row["id"]: _file(row) for row in rows}
        return [found[file_id] for file_id in wanted if file_id in found]

    async def set_file_status(
        self, file_id: str, *, status: FileStatus, scan_result: str | None = None, scanned_at: int | None = None
    ) -> bool:
        changed = await self.write(
            "UPDATE files SET status = ?, scan_result = ?, scanned_at = ? WHERE id = ?",
            (status, scan_result, scanned_at, file_id),
        )
        return changed > 0

    async def set_file_preview(
        self, file_id: str, *, thumbnail_sha256: str | None, width: int | None, height: int | None
    ) -> bool:
        changed = await self.write(
            "UPDATE files SET thumbnail_sha256 = ?, width = ?, height = ? WHERE id = ?",
            (thumbnail_sha256, width, height, file_id),
        )
        return changed > 0

    async def list_files_by_status(self, status: FileStatus, *, limit: int = 100) -> list[StoredFile]:
        if limit <= 0:
            return []
        rows = await self.fetch_all(
            "SELECT * FROM files WHERE status = ? ORDER BY created_at, id LIMIT ?", (status, limit)
        )
        return [_file(row) for row in rows]

    async def owned_file_bytes(self, user_id: str) -> int:
        row = await self.fetch_one("SELECT COALESCE(SUM(size), 0) AS total FROM files WHERE owner_id = ?", (user_id,))
        return int(row["total"]) if row else 0

    async def add_file_link(self, link: FileLink) -> bool:
        changed = await self.write(
            "INSERT INTO file_links (file_id, scope_type, scope_id, target_type, target_id, created_by, created_at,"
            " removed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (file_id, target_type, target_id) DO NOTHING",
            (
                link.file_id,
                link.scope_type,
                link.scope_id,
                link.target_type,
                link.target_id,
                link.created_by,
                link.created_at,
                link.removed_at,
            ),
        )
        return changed == 1

    async def list_file_links(self, file_id: str, *, include_removed: bool = False) -> list[FileLink]:
        sql = "SELECT * FROM file_links WHERE file_id = ?"
        if not include_removed:
            sql += " AND removed_at IS NULL"
        rows = await self.fetch_all(sql + " ORDER BY created_at, target_type, target_id", (file_id,))
        return [_link(row) for row in rows]

    async def remove_file_links(self, target_type: str, target_id: str, *, at: int) -> int:
        return await self.write(
            "UPDATE file_links SET removed_at = ? WHERE target_type = ? AND target_id = ? AND removed_at IS NULL",
            (at, target_type, target_id),
        )

    async def list_scope_files(
        self, scope_type: str, scope_id: str, *, before: int | None = None, limit: int = 50
    ) -> list[tuple[FileLink, StoredFile]]:
        if limit <= 0:
            return []
        params: list[Any] = [scope_type, scope_id]
        sql = _SCOPE_SELECT
        if before is not None:
            sql += " AND l.created_at < ?"
            params.append(before)
        rows = list(await self.fetch_all(sql + _SCOPE_ORDER + " LIMIT ?", [*params, limit]))
        if len(rows) == limit:
            # Finish the millisecond the page ended in (see the module docstring).
            last = rows[-1]
            tail = await self.fetch_all(
                _SCOPE_SELECT + " AND l.created_at = ?" + _SCOPE_ORDER, (scope_type, scope_id, last["created_at"])
            )
            seen = {(row["file_id"], row["target_type"], row["target_id"]) for row in rows}
            rows += [row for row in tail if (row["file_id"], row["target_type"], row["target_id"]) not in seen]
        return [(_link(row), _file(row, "f_")) for row in rows]
