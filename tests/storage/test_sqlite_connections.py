"""SQLite only: how the adapter's connections behave when the file is locked or written at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from server.storage.sqlite import SqliteStorage
from tests.storage.test_rooms_contract import make_event, new_room


async def test_a_key_read_that_finds_the_file_busy_is_answered_by_the_reader(
    sqlite_storage: SqliteStorage, tmp_path: Path
) -> None:
    room = await new_room(sqlite_storage, "u1")
    # The inline connection never waits (busy_timeout=0): a lock it meets comes back as an error
    # at once. A second file held exclusively by another connection makes that error for real.
    locked = tmp_path / "locked.db"
    holder = sqlite3.connect(str(locked), isolation_level=None)
    holder.execute("CREATE TABLE rooms (id TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    inline = sqlite_storage._inline
    busy = sqlite3.connect(str(locked), isolation_level=None)
    busy.execute("PRAGMA busy_timeout=0")
    sqlite_storage._inline = busy
    try:
        found = await sqlite_storage.get_room(room.id)
    finally:
        sqlite_storage._inline = inline
        busy.close()
        holder.close()
    assert found == room  # answered by the reader's connection to the real file


async def test_key_reads_see_every_append_as_soon_as_it_is_answered(sqlite_storage: SqliteStorage) -> None:
    room = await new_room(sqlite_storage, "u1")

    async def send_then_read(i: int) -> None:
        stored, created = await sqlite_storage.append_event(make_event(room, client_id=f"c{i}"))
        assert created
        assert await sqlite_storage.get_event(room.id, stored.id) == stored
        current = await sqlite_storage.get_room(room.id)
        assert current is not None and current.last_seq >= stored.seq

    await asyncio.gather(*(send_then_read(i) for i in range(50)))
    final = await sqlite_storage.get_room(room.id)
    assert final is not None and final.last_seq == 50


async def test_an_append_while_another_process_holds_the_write_lock_waits_off_the_loop(
    sqlite_storage: SqliteStorage, tmp_path: Path
) -> None:
    other: sqlite3.Connection | None = None
    try:
        room = await new_room(sqlite_storage, "u1")
        # Another process (here: another connection) is in the middle of a write transaction.
        other = sqlite3.connect(str(tmp_path / "muster.db"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE rooms SET topic = 'elsewhere' WHERE id = ?", (room.id,))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        sending = asyncio.create_task(sqlite_storage.append_event(make_event(room, client_id="c1")))
        await asyncio.sleep(0.3)
        assert not sending.done()  # waiting for the lock...
        assert ticks >= 10  # ...on the writer's thread: the event loop went on
        other.execute("COMMIT")
        stored, created = await asyncio.wait_for(sending, 10)
        ticking.cancel()
        assert created and stored.seq == 1
        current = await sqlite_storage.get_room(room.id)
        assert current is not None and current.topic == "elsewhere" and current.last_seq == 1
    finally:
        if other is not None:
            other.close()


async def test_what_the_loop_wrote_is_checkpointed_within_seconds(
    sqlite_storage: SqliteStorage, tmp_path: Path
) -> None:
    room = await new_room(sqlite_storage, "u1")
    for i in range(300):  # one commit each: more than the 250 that call for a checkpoint
        await sqlite_storage.append_event(make_event(room, client_id=f"c{i}"))
    assert sqlite_storage._wal_dirty
    for _ in range(50):
        if not sqlite_storage._wal_dirty:
            break
        await asyncio.sleep(0.1)
    assert not sqlite_storage._wal_dirty
    # The database file itself (read without the WAL: immutable) now holds the events.
    probe = sqlite3.connect(f"file:{tmp_path / 'muster.db'}?immutable=1", uri=True)
    try:
        (count,) = probe.execute("SELECT COUNT(*) FROM room_events WHERE room_id = ?", (room.id,)).fetchone()
    finally:
        probe.close()
    assert count == 300


async def test_an_append_alone_commits_at_once_and_appends_made_together_share_one_commit(
    sqlite_storage: SqliteStorage
) -> None:
    room = await new_room(sqlite_storage, "u1")
    before = sqlite_storage._inline_commits
    stored, created = await sqlite_storage.append_event(make_event(room, client_id="alone"))
    assert created and stored.seq == 1
    assert sqlite_storage._inline_commits == before + 1
    assert sqlite_storage._appends is None and sqlite_storage._append_writer is None  # no batch was formed

    before = sqlite_storage._inline_commits
    results = await asyncio.gather(
        *(sqlite_storage.append_event(make_event(room, client_id=f"c{i}")) for i in range(40)))
    # The first is written at once; the 39 made in the same step of the loop go in one transaction.
    assert sqlite_storage._inline_commits == before + 2
    assert sorted(event.seq for event, _ in results) == list(range(2, 42))
