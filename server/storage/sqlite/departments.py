"""Departments on SQLite."""

from __future__ import annotations

import sqlite3

from server.storage.records import Department
from server.storage.sqlite.db import SqliteBase


def _department(row: sqlite3.Row) -> Department:
    return Department(
        id=row["id"], name=row["name"], kind=row["kind"], parent_id=row["parent_id"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


class SqliteDepartments(SqliteBase):
    async def create_department(self, department: Department) -> None:
        await self.write(
            "INSERT INTO departments (id, name, kind, parent_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (department.id, department.name, department.kind, department.parent_id,
             department.created_at, department.updated_at),
        )

    async def get_department(self, department_id: str) -> Department | None:
        row = await self.fetch_one("SELECT * FROM departments WHERE id = ?", (department_id,))
        return _department(row) if row else None

    async def list_departments(self) -> list[Department]:
        rows = await self.fetch_all("SELECT * FROM departments ORDER BY created_at, id")
        return [_department(row) for row in rows]

    async def update_department(self, department: Department) -> bool:
        changed = await self.write(
            "UPDATE departments SET name = ?, kind = ?, parent_id = ?, updated_at = ? WHERE id = ?",
            (department.name, department.kind, department.parent_id, department.updated_at, department.id),
        )
        return changed > 0

    async def delete_department(self, department_id: str) -> bool:
        return await self.write("DELETE FROM departments WHERE id = ?", (department_id,)) > 0
