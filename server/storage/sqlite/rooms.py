"""Rooms and memberships on SQLite.

Choices where the port is silent:
- `create_room` checks that every member belongs to the room and appears once (ValueError);
  the room and its members are written in one transaction.
- `find_rooms` ANDs the filters it is given (none: every room), ordered by creation then id.
- `list_user_rooms` is ordered by room id (creation order for Muster's sortable ids).
- `add_member` on an unknown room raises LookupError, like `append_event`.
- `set_member_role` is True when the user is a member, even if the role was already that one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from server.storage.ports import StorageConflict
from server.storage.records import MemberRole, Membership, Room
from server.storage.sqlite.db import SqliteBase


@contextmanager
def integrity_errors_as_conflict() -> Iterator[None]:
    """Inside `transaction()`: a unique or foreign key violation becomes StorageConflict."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise StorageConflict(str(exc)) from None


def _room(row: sqlite3.Row) -> Room:
    return Room(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        topic=row["topic"],
        archived=bool(row["archived"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        department_id=row["department_id"],
        case_type=row["case_type"],
        case_id=row["case_id"],
        direct_key=row["direct_key"],
        last_seq=row["last_seq"],
    )


def _membership(row: sqlite3.Row, prefix: str = "") -> Membership:
    return Membership(
        room_id=row[f"{prefix}room_id"],
        user_id=row[f"{prefix}user_id"],
        role=row[f"{prefix}role"],
        joined_at=row[f"{prefix}joined_at"],
        read_seq=row[f"{prefix}read_seq"],
    )


def check_members(room: Room, members: Sequence[Membership]) -> None:
    """The first members of `room` must belong to it and be distinct people."""
    if any(member.room_id != room.id for member in members):
        raise ValueError("every membership must name the room being created")
    if len({member.user_id for member in members}) != len(members):
        raise ValueError("a user appears twice among the room's members")


class SqliteRooms(SqliteBase):
    async def create_room(self, room: Room, members: list[Membership]) -> None:
        check_members(room, members)
        async with self.transaction() as db:
            with integrity_errors_as_conflict():
                await db.execute(
                    "INSERT INTO rooms (id, kind, name, topic, archived, created_by, created_at, updated_at,"
                    " department_id, case_type, case_id, direct_key, last_seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        room.id,
                        room.kind,
                        room.name,
                        room.topic,
                        int(room.archived),
                        room.created_by,
                        room.created_at,
                        room.updated_at,
                        room.department_id,
                        room.case_type,
                        room.case_id,
                        room.direct_key,
                        room.last_seq,
                    ),
                )
                await db.executemany(
                    "INSERT INTO memberships (room_id, user_id, role, joined_at, read_seq) VALUES (?, ?, ?, ?, ?)",
                    [(m.room_id, m.user_id, m.role, m.joined_at, m.read_seq) for m in members],
                )

    async def get_room(self, room_id: str) -> Room | None:
        row = await self.fetch_by_key("SELECT * FROM rooms WHERE id = ?", (room_id,))
        return _room(row) if row else None

    async def find_direct_room(self, direct_key: str) -> Room | None:
        row = await self.fetch_one("SELECT * FROM rooms WHERE direct_key = ?", (direct_key,))
        return _room(row) if row else None

    async def find_rooms(
        self, *, department_id: str | None = None, case_type: str | None = None, case_id: str | None = None
    ) -> list[Room]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("department_id", department_id), ("case_type", case_type), ("case_id", case_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM rooms"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id"
        return [_room(row) for row in await self.fetch_all(sql, params)]

    async def update_room(self, room: Room) -> bool:
        changed = await self.write(
            "UPDATE rooms SET name = ?, topic = ?, archived = ?, updated_at = ? WHERE id = ?",
            (room.name, room.topic, int(room.archived), room.updated_at, room.id),
        )
        return changed > 0

    async def list_user_rooms(self, user_id: str) -> list[tuple[Room, Membership]]:
        rows = await self.fetch_all(
            "SELECT r.*, m.room_id AS m_room_id, m.user_id AS m_user_id, m.role AS m_role,"
            " m.joined_at AS m_joined_at, m.read_seq AS m_read_seq"
            " FROM memberships m JOIN rooms r ON r.id = m.room_id WHERE m.user_id = ? ORDER BY m.room_id",
            (user_id,),
        )
        return [(_room(row), _membership(row, "m_")) for row in rows]

    async def get_room_member(self, room_id: str, user_id: str) -> tuple[Room | None, Membership | None]:
        row = await self.fetch_by_key(
            "SELECT r.*, m.room_id AS m_room_id, m.user_id AS m_user_id, m.role AS m_role,"
            " m.joined_at AS m_joined_at, m.read_seq AS m_read_seq"
            " FROM rooms r LEFT JOIN memberships m ON m.room_id = r.id AND m.user_id = ? WHERE r.id = ?",
            (user_id, room_id),
        )
        if row is None:
            return None, None
        return _room(row), (_membership(row, "m_") if row["m_user_id"] is not None else None)

    async def get_member(self, room_id: str, user_id: str) -> Membership | None:
        row = await self.fetch_by_key("SELECT * FROM memberships WHERE room_id = ? AND user_id = ?", (room_id, user_id))
        return _membership(row) if row else None

    async def list_members(self, room_id: str) -> list[Membership]:
        rows = await self.fetch_all(
            "SELECT * FROM memberships WHERE room_id = ? ORDER BY joined_at, user_id", (room_id,)
        )
        return [_membership(row) for row in rows]

    async def add_member(self, member: Membership) -> bool:
        async with self.transaction() as db:
            async with db.execute("SELECT 1 FROM rooms WHERE id = ?", (member.room_id,)) as cursor:
                if await cursor.fetchone() is None:
                    raise LookupError(f"no room {member.room_id!r}")
            cursor = await db.execute(
                "INSERT INTO memberships (room_id, user_id, role, joined_at, read_seq) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id, user_id) DO NOTHING",
                (member.room_id, member.user_id, member.role, member.joined_at, member.read_seq),
            )
            return cursor.rowcount > 0

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        changed = await self.write("DELETE FROM memberships WHERE room_id = ? AND user_id = ?", (room_id, user_id))
        return changed > 0

    async def set_member_role(self, room_id: str, user_id: str, role: MemberRole) -> bool:
        changed = await self.write(
            "UPDATE memberships SET role = ? WHERE room_id = ? AND user_id = ?", (role, room_id, user_id)
        )
        return changed > 0

    async def mark_read(self, room_id: str, user_id: str, seq: int) -> int:
        # One statement: the cap is read from the room in the same write.
        async with self.transaction() as db:
            async with db.execute(
                "UPDATE memberships SET read_seq = MAX(read_seq,"
                " MIN(?, (SELECT last_seq FROM rooms WHERE id = memberships.room_id)))"
                " WHERE room_id = ? AND user_id = ? RETURNING read_seq",
                (seq, room_id, user_id),
            ) as cursor:
                row = await cursor.fetchone()
        return int(row["read_seq"]) if row else 0
