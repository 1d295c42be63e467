"""The SQLite connection: one file, WAL, versioned migrations run at start, one writer at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from server.storage.ports import StorageConflict
from server.storage.sqlite.migrations import MIGRATIONS
from server.tasks import cancel_and_wait

T = TypeVar("T")


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
        # A third connection used on the event loop's own thread: reads of one row by key
        # (`fetch_by_key`) and the hot writes (`_write_on_loop`).
        self._inline: sqlite3.Connection | None = None
        self._wal_dirty = False  # the inline connection committed since the last checkpoint
        self._inline_commits = 0  # ... this many times
        self._checkpointer: asyncio.Task[None] | None = None
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
        inline = sqlite3.connect(str(self.path), isolation_level=None)
        inline.row_factory = sqlite3.Row
        inline.execute("PRAGMA synchronous=NORMAL")
        inline.execute("PRAGMA foreign_keys=ON")
        inline.execute("PRAGMA busy_timeout=0")  # never wait on the loop's thread: busy goes to the threads
        inline.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints (and their fsyncs) run on the writer's thread
        self._inline = inline
        self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    async def close(self) -> None:
        await cancel_and_wait(self._checkpointer)
        self._checkpointer = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
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

    async def _on_writer_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the writer's thread in one trip; the caller holds the write turn.

        For a write made of several statements: each `await db.execute(...)` is a trip to the
        thread and back (a queue hand-off and a wake-up of the event loop), `work` runs them all in
        one. It opens and ends its own transaction (the connection is in autocommit mode) and must
        not touch the event loop. Relies on aiosqlite's `_execute` (queue a function for its
        thread), stable across the versions pyproject allows.
        """
        conn = self.db
        return await conn._execute(work, conn._conn)  # type: ignore[no-any-return,no-untyped-call]

    def _write_on_loop(self, work: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run the write `work(connection)` at once on the event loop's thread; None when it could
        not (the file is locked by another process: the caller then uses `_on_writer_thread`,
        which waits for the lock). The caller holds the write turn, so this process has no other
        transaction open.

        For the hot path (room messages): a write of a few rows commits in tens of microseconds
        (WAL, synchronous=NORMAL: no fsync at commit), less than a trip to the writer's thread
        and back costs, and the connection's page cache stays warm for the key reads that share
        it. What could take long stays off the loop: this connection never waits for a lock
        (busy_timeout=0) and never checkpoints (wal_autocheckpoint=0); `_checkpoint_loop` does,
        on the writer's thread. `work` must end its own transaction, also on failure.
        """
        conn = self._inline
        if conn is None:
            return None
        try:
            result = work(conn)
        except sqlite3.OperationalError:  # locked (busy), or anything the writer's thread will report again
            return None
        self._wal_dirty = True
        self._inline_commits += 1
        return result

    async def _checkpoint_loop(self, interval: float = 1.0, commits: int = 250, longest: float = 10.0) -> None:
        """Copy what the inline connection committed from the WAL into the database file: after
        `commits` commits (about SQLite's own 1,000 WAL pages) or `longest` seconds after the first
        one, checked every `interval` seconds. PASSIVE: it never waits for readers or blocks the
        inline writer; the WAL is reused from its start once everything in it is copied. Less often
        is cheaper: a page rewritten by many commits (the room's row) is copied once."""
        since = 0.0
        while True:
            await asyncio.sleep(interval)
            if not self._wal_dirty:
                since = 0.0
                continue
            since += interval
            if self._inline_commits < commits and since < longest:
                continue
            self._wal_dirty, self._inline_commits, since = False, 0, 0.0
            try:
                async with self._write_lock:
                    await self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the next round tries again
                self._wal_dirty = True

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

    async def fetch_by_key(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """`fetch_one` for a lookup of one row through a unique index, answered at once.

        A trip to the reader's thread (queue hand-off, thread wake-up, the event loop woken by its
        self-pipe) costs tens of microseconds; a read of one row by key from SQLite's page cache costs
        a few. The room checks made for every message sent are such reads, so they run on the
        event loop's thread, on the connection that also writes the messages (its cache stays warm;
        it never has a transaction open between two steps of the loop, so it sees committed data
        only). With `busy_timeout=0` a read that would have to wait (the database briefly locked,
        e.g. while a new WAL is set up) is handed to the reader's thread instead. Only for queries
        bounded by a key: anything that scans belongs on the reader.
        """
        if self._inline is not None:
            try:
                rows = self._inline.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                pass
            else:
                return rows[0] if rows else None
        return await self.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> Iterable[sqlite3.Row]:
        return await self.reader.execute_fetchall(sql, params)


def _split(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]
