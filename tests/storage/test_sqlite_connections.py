"""SQLite only: how the adapter's connections behave when the file is locked or written at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from server.storage.sqlite import SqliteStorage
from tests.storage.test_rooms_contract import make_event, new_room


async def test_a_key_read_that_finds_the_file_busy_is_answered_by_the_reader(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "muster.db")
    await storage.open()
    try:
        room = await new_room(storage, "u1")
        # The inline connection never waits (busy_timeout=0): a lock it meets comes back as an error
        # at once. A second file held exclusively by another connection makes that error for real.
        locked = tmp_path / "locked.db"
        holder = sqlite3.connect(str(locked), isolation_level=None)
        holder.execute("CREATE TABLE rooms (id TEXT)")
        holder.execute("BEGIN EXCLUSIVE")
        inline = storage._inline
        busy = sqlite3.connect(str(locked), isolation_level=None)
        busy.execute("PRAGMA busy_timeout=0")
        storage._inline = busy
        try:
            found = await storage.get_room(room.id)
        finally:
            storage._inline = inline
            busy.close()
            holder.close()
        assert found == room  # answered by the reader's connection to the real file
    finally:
        await storage.close()


async def test_key_reads_see_every_append_as_soon_as_it_is_answered(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "muster.db")
    await storage.open()
    try:
        room = await new_room(storage, "u1")

        async def send_then_read(i: int) -> None:
            stored, created = await storage.append_event(make_event(room, client_id=f"c{i}"))
            assert created
            assert await storage.get_event(room.id, stored.id) == stored
            current = await storage.get_room(room.id)
            assert current is not None and current.last_seq >= stored.seq

        await asyncio.gather(*(send_then_read(i) for i in range(50)))
        final = await storage.get_room(room.id)
        assert final is not None and final.last_seq == 50
    finally:
        await storage.close()
