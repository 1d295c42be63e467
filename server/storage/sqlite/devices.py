"""Devices and their refresh secrets on SQLite."""

from __future__ import annotations

import sqlite3

from server.storage.records import Device
from server.storage.sqlite.db import SqliteBase


def _device(row: sqlite3.Row) -> Device:
    return Device(
        id=row["id"], user_id=row["user_id"], name=row["name"], kind=row["kind"],
        created_at=row["created_at"], last_seen_at=row["last_seen_at"], revoked_at=row["revoked_at"],
        refresh_hash=row["refresh_hash"], refresh_prev_hash=row["refresh_prev_hash"],
        refresh_expires_at=row["refresh_expires_at"], external_session=row["external_session"],
    )


class SqliteDevices(SqliteBase):
    async def create_device(self, device: Device) -> None:
        await self.write(
            "INSERT INTO devices (id, user_id, name, kind, created_at, last_seen_at, revoked_at,"
            " refresh_hash, refresh_prev_hash, refresh_expires_at, external_session)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device.id, device.user_id, device.name, device.kind, device.created_at, device.last_seen_at,
             device.revoked_at, device.refresh_hash, device.refresh_prev_hash, device.refresh_expires_at,
             device.external_session),
        )

    async def get_device(self, device_id: str) -> Device | None:
        row = await self.fetch_by_key("SELECT * FROM devices WHERE id = ?", (device_id,))
        return _device(row) if row else None

    async def find_external_device(self, user_id: str, external_session: str) -> Device | None:
        row = await self.fetch_one(
            "SELECT * FROM devices WHERE user_id = ? AND external_session = ? ORDER BY created_at DESC LIMIT 1",
            (user_id, external_session),
        )
        return _device(row) if row else None

    async def list_devices(self, user_id: str) -> list[Device]:
        rows = await self.fetch_all(
            "SELECT * FROM devices WHERE user_id = ? ORDER BY created_at, id", (user_id,)
        )
        return [_device(row) for row in rows]

    async def set_refresh(
        self,
        device_id: str,
        *,
        expected_hash: str | None,
        new_hash: str,
        expires_at: int,
        at: int,
    ) -> bool:
        sql = (
            "UPDATE devices SET refresh_prev_hash = refresh_hash, refresh_hash = ?, refresh_expires_at = ?,"
            " last_seen_at = ? WHERE id = ? AND revoked_at IS NULL"
        )
        params: list[object] = [new_hash, expires_at, at, device_id]
        if expected_hash is not None:
            sql += " AND refresh_hash = ?"
            params.append(expected_hash)
        return await self.write(sql, params) > 0

    async def revoke_device(self, device_id: str, *, at: int) -> bool:
        changed = await self.write(
            "UPDATE devices SET revoked_at = ?, refresh_hash = NULL, refresh_expires_at = NULL"
            " WHERE id = ? AND revoked_at IS NULL",
            (at, device_id),
        )
        return changed > 0

    async def touch_device(self, device_id: str, *, at: int) -> None:
        await self.write("UPDATE devices SET last_seen_at = ? WHERE id = ? AND last_seen_at < ?", (at, device_id, at))
