"""Finished files and their links on MongoDB.

Files are documents keyed by their id. Links are their own collection (one document per
file and target, kept unique by the `file_links_unique` index), so listing a room's files
reads one index range and removing a message's links is one `update_many`.

Choices where the port is silent (the same as on SQLite):
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

from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.storage.mongo.db import FILE_LINKS, FILES, Doc, MongoBase, conflicts_as_storage_conflict
from server.storage.records import FileLink, FileStatus, StoredFile

# Big `$in` lists are sent in pieces (a command must stay under 16 MiB).
_IN_BATCH = 1000
_LINK_FIELDS = (
    "file_id",
    "scope_type",
    "scope_id",
    "target_type",
    "target_id",
    "created_by",
    "created_at",
    "removed_at",
)
_SCOPE_SORT = [("created_at", -1), ("target_type", -1), ("target_id", -1), ("file_id", -1)]


def _file(doc: Mapping[str, Any]) -> StoredFile:
    return StoredFile(
        id=doc["_id"],
        sha256=doc["sha256"],
        size=int(doc["size"]),
        mime=doc["mime"],
        name=doc["name"],
        owner_id=doc["owner_id"],
        device_id=doc.get("device_id"),
        created_at=doc["created_at"],
        status=doc["status"],
        scan_result=doc.get("scan_result"),
        scanned_at=doc.get("scanned_at"),
        thumbnail_sha256=doc.get("thumbnail_sha256"),
        width=doc.get("width"),
        height=doc.get("height"),
    )


def _link(doc: Mapping[str, Any]) -> FileLink:
    return FileLink(
        file_id=doc["file_id"],
        scope_type=doc["scope_type"],
        scope_id=doc["scope_id"],
        target_type=doc["target_type"],
        target_id=doc["target_id"],
        created_by=doc.get("created_by"),
        created_at=doc["created_at"],
        removed_at=doc.get("removed_at"),
    )


def _link_key(link: FileLink) -> tuple[str, str, str]:
    return link.file_id, link.target_type, link.target_id


class MongoFiles(MongoBase):
    async def create_file(self, file: StoredFile) -> None:
        doc: Doc = {
            "_id": file.id,
            "sha256": file.sha256,
            "size": file.size,
            "mime": file.mime,
            "name": file.name,
            "owner_id": file.owner_id,
            "device_id": file.device_id,
            "created_at": file.created_at,
            "status": file.status,
            "scan_result": file.scan_result,
            "scanned_at": file.scanned_at,
            "thumbnail_sha256": file.thumbnail_sha256,
            "width": file.width,
            "height": file.height,
        }
        with conflicts_as_storage_conflict():
            await self.collection(FILES).insert_one(doc)

    async def get_file(self, file_id: str) -> StoredFile | None:
        doc = await self.collection(FILES).find_one({"_id": file_id})
        return _file(doc) if doc else None

    async def get_files(self, file_ids: list[str]) -> list[StoredFile]:
        wanted = list(dict.fromkeys(file_ids))
        found = await self._files_by_id(wanted)
        return [found[file_id] for file_id in wanted if file_id in found]

    async def _files_by_id(self, file_ids: list[str]) -> dict[str, StoredFile]:
        found: dict[str, StoredFile] = {}
        for i in range(0, len(file_ids), _IN_BATCH):
            cursor = self.collection(FILES).find({"_id": {"$in": file_ids[i : i + _IN_BATCH]}})
            async for doc in cursor:
                found[doc["_id"]] = _file(doc)
        return found

    async def set_file_status(
        self, file_id: str, *, status: FileStatus, scan_result: str | None = None, scanned_at: int | None = None
    ) -> bool:
        result = await self.collection(FILES).update_one(
            {"_id": file_id}, {"$set": {"status": status, "scan_result": scan_result, "scanned_at": scanned_at}}
        )
        return result.matched_count > 0

    async def set_file_preview(
        self, file_id: str, *, thumbnail_sha256: str | None, width: int | None, height: int | None
    ) -> bool:
        result = await self.collection(FILES).update_one(
            {"_id": file_id}, {"$set": {"thumbnail_sha256": thumbnail_sha256, "width": width, "height": height}}
        )
        return result.matched_count > 0

    async def list_files_by_status(self, status: FileStatus, *, limit: int = 100) -> list[StoredFile]:
        if limit <= 0:
            return []
        cursor = self.collection(FILES).find({"status": status}, sort=[("created_at", 1), ("_id", 1)], limit=limit)
        return [_file(doc) async for doc in cursor]

    async def owned_file_bytes(self, user_id: str) -> int:
        cursor = await self.collection(FILES).aggregate(
            [{"$match": {"owner_id": user_id}}, {"$group": {"_id": None, "total": {"$sum": "$size"}}}]
        )
        async with cursor:
            async for doc in cursor:
                return int(doc["total"])
        return 0

    async def add_file_link(self, link: FileLink) -> bool:
        doc: Doc = {field: getattr(link, field) for field in _LINK_FIELDS}
        try:
            await self.collection(FILE_LINKS).insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def list_file_links(self, file_id: str, *, include_removed: bool = False) -> list[FileLink]:
        query: Doc = {"file_id": file_id}
        if not include_removed:
            query["removed_at"] = None
        cursor = self.collection(FILE_LINKS).find(query, sort=[("created_at", 1), ("target_type", 1), ("target_id", 1)])
        return [_link(doc) async for doc in cursor]

    async def remove_file_links(self, target_type: str, target_id: str, *, at: int) -> int:
        result = await self.collection(FILE_LINKS).update_many(
            {"target_type": target_type, "target_id": target_id, "removed_at": None}, {"$set": {"removed_at": at}}
        )
        return result.modified_count

    async def list_scope_files(
        self, scope_type: str, scope_id: str, *, before: int | None = None, limit: int = 50
    ) -> list[tuple[FileLink, StoredFile]]:
        if limit <= 0:
            return []
        live: Doc = {"scope_type": scope_type, "scope_id": scope_id, "removed_at": None}
        query: Doc = dict(live)
        if before is not None:
            query["created_at"] = {"$lt": before}
        links = [_link(doc) async for doc in self.collection(FILE_LINKS).find(query, sort=_SCOPE_SORT, limit=limit)]
        if len(links) == limit:
            # Finish the millisecond the page ended in (see the module docstring).
            seen = {_link_key(link) for link in links}
            tail = self.collection(FILE_LINKS).find({**live, "created_at": links[-1].created_at}, sort=_SCOPE_SORT)
            async for doc in tail:
                link = _link(doc)
                if _link_key(link) not in seen:
                    links.append(link)
        files = await self._files_by_id(list(dict.fromkeys(link.file_id for link in links)))
        return [(link, files[link.file_id]) for link in links if link.file_id in files]
