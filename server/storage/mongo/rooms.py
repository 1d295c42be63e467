"""Rooms and memberships on MongoDB.

Memberships are their own collection (one document per member), not an array in the
room: big rooms would otherwise rewrite a large document on every message and read.

Choices where the port is silent (the same as on SQLite):
- `create_room` checks that every member belongs to the room and appears once (ValueError).
  Without a transaction the room is inserted first, then its members: a crash in between
  leaves a room without its first members, never members of a room that does not exist.
- `find_rooms` ANDs the filters it is given (none: every room), ordered by creation then id.
- `list_user_rooms` is ordered by room id (creation order for Muster's sortable ids).
- `add_member` on an unknown room raises LookupError, like `append_event`.
- `set_member_role` is True when the user is a member, even if the role was already that one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.storage.mongo.db import MEMBERSHIPS, ROOMS, Doc, MongoBase, conflicts_as_storage_conflict
from server.storage.records import MemberRole, Membership, Room


def _room(doc: Mapping[str, Any]) -> Room:
    return Room(
        id=doc["_id"],
        kind=doc["kind"],
        name=doc["name"],
        topic=doc["topic"],
        archived=bool(doc["archived"]),
        created_by=doc.get("created_by"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        department_id=doc.get("department_id"),
        case_type=doc.get("case_type"),
        case_id=doc.get("case_id"),
        direct_key=doc.get("direct_key"),
        last_seq=doc["last_seq"],
    )


def _membership(doc: Mapping[str, Any]) -> Membership:
    return Membership(
        room_id=doc["room_id"],
        user_id=doc["user_id"],
        role=doc["role"],
        joined_at=doc["joined_at"],
        read_seq=doc["read_seq"],
    )


def _membership_doc(member: Membership) -> Doc:
    return {
        "room_id": member.room_id,
        "user_id": member.user_id,
        "role": member.role,
        "joined_at": member.joined_at,
        "read_seq": member.read_seq,
    }


def _check_members(room: Room, members: Sequence[Membership]) -> None:
    if any(member.room_id != room.id for member in members):
        raise ValueError("every membership must name the room being created")
    if len({member.user_id for member in members}) != len(members):
        raise ValueError("a user appears twice among the room's members")


class MongoRooms(MongoBase):
    async def create_room(self, room: Room, members: list[Membership]) -> None:
        _check_members(room, members)
        doc: Doc = {
            "_id": room.id,
            "kind": room.kind,
            "name": room.name,
            "topic": room.topic,
            "archived": room.archived,
            "created_by": room.created_by,
            "created_at": room.created_at,
            "updated_at": room.updated_at,
            "department_id": room.department_id,
            "case_type": room.case_type,
            "case_id": room.case_id,
            "direct_key": room.direct_key,
            "last_seq": room.last_seq,
        }
        with conflicts_as_storage_conflict():
            await self.collection(ROOMS).insert_one(doc)
            if members:
                await self.collection(MEMBERSHIPS).insert_many([_membership_doc(m) for m in members])

    async def get_room(self, room_id: str) -> Room | None:
        doc = await self.collection(ROOMS).find_one({"_id": room_id})
        return _room(doc) if doc else None

    async def find_direct_room(self, direct_key: str) -> Room | None:
        doc = await self.collection(ROOMS).find_one({"direct_key": direct_key})
        return _room(doc) if doc else None

    async def find_rooms(
        self, *, department_id: str | None = None, case_type: str | None = None, case_id: str | None = None
    ) -> list[Room]:
        query: Doc = {}
        for field, value in (("department_id", department_id), ("case_type", case_type), ("case_id", case_id)):
            if value is not None:
                query[field] = value
        cursor = self.collection(ROOMS).find(query, sort=[("created_at", 1), ("_id", 1)])
        return [_room(doc) async for doc in cursor]

    async def update_room(self, room: Room) -> bool:
        result = await self.collection(ROOMS).update_one(
            {"_id": room.id},
            {
                "$set": {
                    "name": room.name,
                    "topic": room.topic,
                    "archived": room.archived,
                    "updated_at": room.updated_at,
                }
            },
        )
        return result.matched_count > 0

    async def list_user_rooms(self, user_id: str) -> list[tuple[Room, Membership]]:
        members = {
            doc["room_id"]: _membership(doc) async for doc in self.collection(MEMBERSHIPS).find({"user_id": user_id})
        }
        if not members:
            return []
        cursor = self.collection(ROOMS).find({"_id": {"$in": list(members)}}, sort=[("_id", 1)])
        return [(_room(doc), members[doc["_id"]]) async for doc in cursor]

    async def get_room_member(self, room_id: str, user_id: str) -> tuple[Room | None, Membership | None]:
        # Two reads at once: one round trip's wait instead of two.
        room, member = await asyncio.gather(self.get_room(room_id), self.get_member(room_id, user_id))
        return room, (member if room is not None else None)

    async def get_member(self, room_id: str, user_id: str) -> Membership | None:
        doc = await self.collection(MEMBERSHIPS).find_one({"room_id": room_id, "user_id": user_id})
        return _membership(doc) if doc else None

    async def list_members(self, room_id: str) -> list[Membership]:
        cursor = self.collection(MEMBERSHIPS).find({"room_id": room_id}, sort=[("joined_at", 1), ("user_id", 1)])
        return [_membership(doc) async for doc in cursor]

    async def add_member(self, member: Membership) -> bool:
        # Rooms are never deleted, so the room cannot vanish between this check and the insert.
        if await self.collection(ROOMS).find_one({"_id": member.room_id}, projection={"_id": 1}) is None:
            raise LookupError(f"no room {member.room_id!r}")
        try:
            await self.collection(MEMBERSHIPS).insert_one(_membership_doc(member))
        except DuplicateKeyError:
            return False
        return True

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        result = await self.collection(MEMBERSHIPS).delete_one({"room_id": room_id, "user_id": user_id})
        return result.deleted_count > 0

    async def set_member_role(self, room_id: str, user_id: str, role: MemberRole) -> bool:
        result = await self.collection(MEMBERSHIPS).update_one(
            {"room_id": room_id, "user_id": user_id}, {"$set": {"role": role}}
        )
        return result.matched_count > 0

    async def mark_read(self, room_id: str, user_id: str, seq: int) -> int:
        room = await self.collection(ROOMS).find_one({"_id": room_id}, projection={"last_seq": 1})
        if room is None:
            return 0
        # last_seq only grows, so the value just read is a safe cap; $max never moves back.
        doc = await self.collection(MEMBERSHIPS).find_one_and_update(
            {"room_id": room_id, "user_id": user_id},
            {"$max": {"read_seq": min(seq, int(room["last_seq"]))}},
            projection={"read_seq": 1, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["read_seq"]) if doc else 0
