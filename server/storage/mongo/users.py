"""Users on MongoDB. Roles are an array, so `roles: <role>` matches by membership."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.storage.mongo.db import USERS, Doc, MongoBase, conflicts_as_storage_conflict
from server.storage.records import User


def _user(doc: Mapping[str, Any]) -> User:
    return User(
        id=doc["_id"],
        username=doc["username"],
        display_name=doc["display_name"],
        department_id=doc["department_id"],
        title=doc["title"],
        roles=tuple(doc["roles"]),
        disabled=bool(doc["disabled"]),
        password_hash=doc["password_hash"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def _fields(user: User) -> Doc:
    """Everything an update may change (not the id or the creation time)."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "department_id": user.department_id,
        "title": user.title,
        "roles": list(user.roles),
        "disabled": user.disabled,
        "password_hash": user.password_hash,
        "updated_at": user.updated_at,
    }


class MongoUsers(MongoBase):
    async def create_user(self, user: User) -> None:
        doc = {"_id": user.id, **_fields(user), "created_at": user.created_at}
        with conflicts_as_storage_conflict():
            await self.collection(USERS).insert_one(doc)

    async def get_user(self, user_id: str) -> User | None:
        doc = await self.collection(USERS).find_one({"_id": user_id})
        return _user(doc) if doc else None

    async def get_user_by_username(self, username: str) -> User | None:
        doc = await self.collection(USERS).find_one({"username": username})
        return _user(doc) if doc else None

    async def list_users(
        self,
        *,
        department_id: str | None = None,
        role: str | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[User]:
        if limit <= 0:  # MongoDB reads a limit of 0 as "no limit"
            return []
        query: Doc = {}
        if department_id is not None:
            query["department_id"] = department_id
        if role is not None:
            query["roles"] = role
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        cursor = self.collection(USERS).find(query, sort=[("_id", 1)], limit=limit, batch_size=limit)
        return [_user(doc) async for doc in cursor]

    async def update_user(self, user: User) -> bool:
        with conflicts_as_storage_conflict():
            result = await self.collection(USERS).update_one({"_id": user.id}, {"$set": _fields(user)})
        return result.matched_count > 0

    async def count_users(self) -> int:
        return await self.collection(USERS).count_documents({})
