"""Users on SQLite."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from server.storage.records import User
from server.storage.sqlite.db import SqliteBase


def _user(row: sqlite3.Row) -> User:
    return User(
        id=row["id"], username=row["username"], display_name=row["display_name"],
        department_id=row["department_id"], title=row["title"], roles=tuple(json.loads(row["roles"])),
        disabled=bool(row["disabled"]), password_hash=row["password_hash"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


class SqliteUsers(SqliteBase):
    async def create_user(self, user: User) -> None:
        await self.write(
            "INSERT INTO users (id, username, display_name, department_id, title, roles, disabled,"
            " password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (user.id, user.username, user.display_name, user.department_id, user.title,
             json.dumps(list(user.roles)), int(user.disabled), user.password_hash,
             user.created_at, user.updated_at),
        )

    async def get_user(self, user_id: str) -> User | None:
        row = await self.fetch_by_key("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def get_user_by_username(self, username: str) -> User | None:
        row = await self.fetch_one("SELECT * FROM users WHERE username = ?", (username,))
        return _user(row) if row else None

    async def list_users(
        self,
        *,
        department_id: str | None = None,
        role: str | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[User]:
        where: list[str] = []
        params: list[Any] = []
        if department_id is not None:
            where.append("department_id = ?")
            params.append(department_id)
        if role is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(users.roles) WHERE value = ?)")
            params.append(role)
        if after_id is not None:
            where.append("id > ?")
            params.append(after_id)
        sql = "SELECT * FROM users"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [_user(row) for row in await self.fetch_all(sql, params)]

    async def update_user(self, user: User) -> bool:
        changed = await self.write(
            "UPDATE users SET username = ?, display_name = ?, department_id = ?, title = ?, roles = ?,"
            " disabled = ?, password_hash = ?, updated_at = ? WHERE id = ?",
            (user.username, user.display_name, user.department_id, user.title,
             json.dumps(list(user.roles)), int(user.disabled), user.password_hash, user.updated_at, user.id),
        )
        return changed > 0

    async def count_users(self) -> int:
        row = await self.fetch_one("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row else 0
