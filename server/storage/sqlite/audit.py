"""The audit log on SQLite: insert and read only (triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from server.storage.ports import StorageConflict
from server.storage.records import AuditRecord
from server.storage.sqlite.db import SqliteBase


def _record(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        id=row["id"], chain=row["chain"], seq=row["seq"], at=row["at"], actor_id=row["actor_id"],
        device_id=row["device_id"], action=row["action"], subject_type=row["subject_type"],
        subject_id=row["subject_id"], details=json.loads(row["details"]), prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


class SqliteAudit(SqliteBase):
    async def last_audit_record(self, chain: str) -> AuditRecord | None:
        row = await self.fetch_one(
            "SELECT * FROM audit_log WHERE chain = ? ORDER BY seq DESC LIMIT 1", (chain,)
        )
        return _record(row) if row else None

    async def insert_audit_record(self, record: AuditRecord) -> bool:
        try:
            await self.write(
                "INSERT INTO audit_log (id, chain, seq, at, actor_id, device_id, action, subject_type,"
                " subject_id, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.chain, record.seq, record.at, record.actor_id, record.device_id,
                 record.action, record.subject_type, record.subject_id,
                 json.dumps(record.details, ensure_ascii=False, sort_keys=True),
                 record.prev_hash, record.hash),
            )
        except StorageConflict:
            return False
        return True

    async def list_audit_records(
        self,
        *,
        chain: str | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        subject_type: str | None = None,
        subject_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("chain", chain), ("actor_id", actor_id), ("action", action),
            ("subject_type", subject_type), ("subject_id", subject_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if until is not None:
            where.append("at < ?")
            params.append(until)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        sql = "SELECT * FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_record(row) for row in await self.fetch_all(sql, params)]

    async def iter_audit_chain(self, chain: str) -> AsyncIterator[AuditRecord]:
        last = -1
        while True:
            rows = list(await self.fetch_all(
                "SELECT * FROM audit_log WHERE chain = ? AND seq > ? ORDER BY seq LIMIT 500", (chain, last)
            ))
            if not rows:
                return
            for row in rows:
                record = _record(row)
                last = record.seq
                yield record

    async def list_audit_chains(self) -> list[str]:
        rows = await self.fetch_all("SELECT DISTINCT chain FROM audit_log ORDER BY chain")
        return [row["chain"] for row in rows]
