"""Resumable (tus) uploads on MongoDB.

An upload is one document; its segments are an array inside it. Every change is one
single-document update whose filter is the compare-and-set: a commit matches only while
`offset` is the expected one and `file_id` is null, and then `$push`es the segment and
`$inc`s the offset in the same update. Of two commits at the same offset the server applies
one; the other's filter no longer matches. Finishing matches only `offset = length` (the
length never changes, so it is read first and put in the filter) and a null `file_id`.

The tus metadata is stored as a list of [key, value] pairs, not as a sub-document: its keys
come from the client, and a key with a dot or a leading `$` would otherwise be a field path.

Choices where the port is silent (the same as on SQLite):
- `commit_upload_segment` raises ValueError when `segment.start` is not `expected_offset` or
  the segment is empty (a caller's mistake, not a lost race); a segment that would run past
  the declared length is refused like a lost race (False, nothing written).
- `finish_upload` also answers False for an unknown upload; once finished, an upload takes no
  more segments and is neither expired nor counted as open.
- Expired uploads are listed by expiry, then id; `expires_at <= now` is expired, so
  `open_upload_bytes` counts uploads with `expires_at > now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.storage.mongo.db import UPLOADS, Doc, MongoBase, conflicts_as_storage_conflict
from server.storage.records import Upload, UploadSegment


def _check_segment(expected_offset: int, segment: UploadSegment) -> None:
    if segment.start != expected_offset:
        raise ValueError(f"segment starts at {segment.start}, not at the expected offset {expected_offset}")
    if segment.size <= 0:
        raise ValueError("an upload segment must hold at least one byte")


def _segment_doc(segment: UploadSegment) -> Doc:
    return {"start": segment.start, "size": segment.size, "key": segment.key}


def _upload(doc: Mapping[str, Any]) -> Upload:
    return Upload(
        id=doc["_id"],
        user_id=doc["user_id"],
        device_id=doc["device_id"],
        length=int(doc["length"]),
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        metadata={str(key): str(value) for key, value in doc.get("metadata") or []},
        offset=int(doc["offset"]),
        segments=tuple(
            UploadSegment(start=int(s["start"]), size=int(s["size"]), key=s["key"]) for s in doc.get("segments") or []
        ),
        file_id=doc.get("file_id"),
    )


class MongoUploads(MongoBase):
    async def create_upload(self, upload: Upload) -> None:
        doc: Doc = {
            "_id": upload.id,
            "user_id": upload.user_id,
            "device_id": upload.device_id,
            "length": upload.length,
            "created_at": upload.created_at,
            "expires_at": upload.expires_at,
            "metadata": [[key, value] for key, value in upload.metadata.items()],
            "offset": upload.offset,
            "segments": [_segment_doc(s) for s in upload.segments],
            "file_id": upload.file_id,
        }
        with conflicts_as_storage_conflict():
            await self.collection(UPLOADS).insert_one(doc)

    async def get_upload(self, upload_id: str) -> Upload | None:
        doc = await self.collection(UPLOADS).find_one({"_id": upload_id})
        return _upload(doc) if doc else None

    async def commit_upload_segment(self, upload_id: str, *, expected_offset: int, segment: UploadSegment) -> bool:
        _check_segment(expected_offset, segment)
        result = await self.collection(UPLOADS).update_one(
            {
                "_id": upload_id,
                "offset": expected_offset,
                "file_id": None,
                "length": {"$gte": expected_offset + segment.size},
            },
            {"$push": {"segments": _segment_doc(segment)}, "$inc": {"offset": segment.size}},
        )
        return result.modified_count == 1

    async def finish_upload(self, upload_id: str, *, file_id: str) -> bool:
        doc = await self.collection(UPLOADS).find_one({"_id": upload_id}, projection={"length": 1})
        if doc is None:
            return False
        result = await self.collection(UPLOADS).update_one(
            {"_id": upload_id, "file_id": None, "offset": doc["length"]}, {"$set": {"file_id": file_id}}
        )
        return result.modified_count == 1

    async def delete_upload(self, upload_id: str) -> bool:
        result = await self.collection(UPLOADS).delete_one({"_id": upload_id})
        return result.deleted_count > 0

    async def list_expired_uploads(self, *, now: int, limit: int = 100) -> list[Upload]:
        if limit <= 0:
            return []
        cursor = self.collection(UPLOADS).find(
            {"file_id": None, "expires_at": {"$lte": now}}, sort=[("expires_at", 1), ("_id", 1)], limit=limit
        )
        return [_upload(doc) async for doc in cursor]

    async def open_upload_bytes(self, user_id: str, *, now: int) -> int:
        cursor = await self.collection(UPLOADS).aggregate(
            [
                {"$match": {"user_id": user_id, "file_id": None, "expires_at": {"$gt": now}}},
                {"$group": {"_id": None, "total": {"$sum": "$length"}}},
            ]
        )
        async with cursor:
            async for doc in cursor:
                return int(doc["total"])
        return 0
