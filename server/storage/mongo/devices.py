"""Devices and their refresh secrets on MongoDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.storage.mongo.db import DEVICES, Doc, MongoBase, conflicts_as_storage_conflict
from server.storage.records import Device


def _device(doc: Mapping[str, Any]) -> Device:
    return Device(
        id=doc["_id"],
        user_id=doc["user_id"],
        name=doc["name"],
        kind=doc["kind"],
        created_at=doc["created_at"],
        last_seen_at=doc["last_seen_at"],
        revoked_at=doc.get("revoked_at"),
        refresh_hash=doc.get("refresh_hash"),
        refresh_prev_hash=doc.get("refresh_prev_hash"),
        refresh_expires_at=doc.get("refresh_expires_at"),
        external_session=doc.get("external_session"),
    )


class MongoDevices(MongoBase):
    async def create_device(self, device: Device) -> None:
        doc: Doc = {
            "_id": device.id,
            "user_id": device.user_id,
            "name": device.name,
            "kind": device.kind,
            "created_at": device.created_at,
            "last_seen_at": device.last_seen_at,
            "revoked_at": device.revoked_at,
            "refresh_hash": device.refresh_hash,
            "refresh_prev_hash": device.refresh_prev_hash,
            "refresh_expires_at": device.refresh_expires_at,
            "external_session": device.external_session,
        }
        with conflicts_as_storage_conflict():
            await self.collection(DEVICES).insert_one(doc)

    async def get_device(self, device_id: str) -> Device | None:
        doc = await self.collection(DEVICES).find_one({"_id": device_id})
        return _device(doc) if doc else None

    async def find_external_device(self, user_id: str, external_session: str) -> Device | None:
        doc = await self.collection(DEVICES).find_one(
            {"user_id": user_id, "external_session": external_session},
            sort=[("created_at", -1), ("_id", -1)],
        )
        return _device(doc) if doc else None

    async def list_devices(self, user_id: str) -> list[Device]:
        cursor = self.collection(DEVICES).find({"user_id": user_id}, sort=[("created_at", 1), ("_id", 1)])
        return [_device(doc) async for doc in cursor]

    async def set_refresh(
        self,
        device_id: str,
        *,
        expected_hash: str | None,
        new_hash: str,
        expires_at: int,
        at: int,
    ) -> bool:
        query: Doc = {"_id": device_id, "revoked_at": None}
        if expected_hash is not None:
            query["refresh_hash"] = expected_hash
        # One update, so the check and the swap are atomic: a pipeline can copy the
        # current hash into refresh_prev_hash. $literal keeps values from being read
        # as field paths or operators.
        update = [
            {
                "$set": {
                    "refresh_prev_hash": {"$ifNull": ["$refresh_hash", None]},
                    "refresh_hash": {"$literal": new_hash},
                    "refresh_expires_at": {"$literal": expires_at},
                    "last_seen_at": {"$literal": at},
                }
            }
        ]
        result = await self.collection(DEVICES).update_one(query, update)
        return result.matched_count > 0

    async def revoke_device(self, device_id: str, *, at: int) -> bool:
        result = await self.collection(DEVICES).update_one(
            {"_id": device_id, "revoked_at": None},
            {"$set": {"revoked_at": at, "refresh_hash": None, "refresh_expires_at": None}},
        )
        return result.matched_count > 0

    async def touch_device(self, device_id: str, *, at: int) -> None:
        # The filter keeps last_seen_at from moving backwards when touches race.
        await self.collection(DEVICES).update_one(
            {"_id": device_id, "last_seen_at": {"$lt": at}}, {"$set": {"last_seen_at": at}}
        )
