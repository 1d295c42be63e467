"""The SQLite connection: one file, WAL, versioned migrations run at start, one writer at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from server.storage.ports import StorageConflict
from server.storage.sqlite.migrations import MIGRATIONS


class SqliteBase:
    """Connection handling shared by the topic mixins."""

    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        # Reads go through a second connection: in WAL mode it sees only committed data, so
        # a reader never observes half of a transaction the writer has open (and reads do not
        # queue behind writes on the writer's thread).
        self._reader: aiosqlite.Connection | None = None
        # aiosqlite runs every statement on one thread, but an open transaction
        # would swallow another coroutine's writes: writers take turns.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("SQLite storage is not open")
        return self._conn

    async def open(self) -> None:
        if self.path.parent and str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        self._conn = conn
        await self._migrate()
        reader = await aiosqlite.connect(str(self.path), isolation_level=None)
        reader.row_factory = sqlite3.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=5000")
        self._reader = reader

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("SQLite storage is not open")
        return self._reader

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    async def schema_version(self) -> int:
        async with self.db.execute("SELECT MAX(version) AS v FROM schema_version") as cursor:
            row = await cursor.fetchone()
        return int(row["v"]) if row and row["v"] is not None else 0

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        current = await self.schema_version()
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            async with self.transaction() as db:
                for statement in _split(script):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, strftime('%s','now') * 1000)",
                    (version,),
                )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            else:
                await self.db.execute("COMMIT")

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement; returns the number of rows changed."""
        async with self._write_lock:
            try:
                cursor = await self.db.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise StorageConflict(str(exc)) from None
            return cursor.rowcount

    # Each read runs to completion in one trip to the reader's thread. Stepping a statement in one trip
    # and finishing it in another left it active in between, holding the reader's snapshot open: a
    # concurrent read on that connection then missed rows committed meanwhile (a room just created
    # was not found by the next read).
    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = list(await self.reader.execute_fetchall(sql, params))
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> Iterable[sqlite3.Row]:
        return await self.reader.execute_fetchall(sql, params)


def _split(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]
