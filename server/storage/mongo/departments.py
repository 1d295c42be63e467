"""Departments on MongoDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.storage.mongo.db import DEPARTMENTS, Doc, MongoBase, conflicts_as_storage_conflict
from server.storage.records import Department


def _department(doc: Mapping[str, Any]) -> Department:
    return Department(
        id=doc["_id"],
        name=doc["name"],
        kind=doc["kind"],
        parent_id=doc["parent_id"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def _fields(department: Department) -> Doc:
    """Everything an update may change (not the id or the creation time)."""
    return {
        "name": department.name,
        "kind": department.kind,
        "parent_id": department.parent_id,
        "updated_at": department.updated_at,
    }


class MongoDepartments(MongoBase):
    async def create_department(self, department: Department) -> None:
        doc = {"_id": department.id, **_fields(department), "created_at": department.created_at}
        with conflicts_as_storage_conflict():
            await self.collection(DEPARTMENTS).insert_one(doc)

    async def get_department(self, department_id: str) -> Department | None:
        doc = await self.collection(DEPARTMENTS).find_one({"_id": department_id})
        return _department(doc) if doc else None

    async def list_departments(self) -> list[Department]:
        cursor = self.collection(DEPARTMENTS).find({}, sort=[("created_at", 1), ("_id", 1)])
        return [_department(doc) async for doc in cursor]

    async def update_department(self, department: Department) -> bool:
        result = await self.collection(DEPARTMENTS).update_one({"_id": department.id}, {"$set": _fields(department)})
        return result.matched_count > 0

    async def delete_department(self, department_id: str) -> bool:
        result = await self.collection(DEPARTMENTS).delete_one({"_id": department_id})
        return result.deleted_count > 0
