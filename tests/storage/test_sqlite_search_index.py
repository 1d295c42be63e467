"""SQLite only: a new message's search tokens wait in `search_pending` and move into the FTS5 index in
batches, without a search ever missing a stored message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.storage.sqlite import SqliteStorage
from server.storage.sqlite import events as sqlite_events
from tests.factories import until
from tests.storage.test_rooms_contract import append, new_room


def _rows(path: Path, table: str) -> list[tuple[int, str]]:
    """Read `table` (pk/rowid and tokens) through a connection of its own, as another process would."""
    conn = sqlite3.connect(str(path))
    try:
        key = "pk" if table == "search_pending" else "rowid"
        return [(int(k), str(t)) for k, t in conn.execute(f"SELECT {key}, tokens FROM {table} ORDER BY 1")]
    finally:
        conn.close()


async def test_a_new_message_waits_unindexed_and_a_search_still_finds_it(sqlite_storage: SqliteStorage) -> None:
    room = await new_room(sqlite_storage, "u1")
    message = await append(sqlite_storage, room, tokens=["水位", "上涨", "水位"])
    assert [tokens for _, tokens in _rows(sqlite_storage.path, "search_pending")] == ["水位 上涨"]
    assert _rows(sqlite_storage.path, "message_search") == []
    assert [e.id for e in await sqlite_storage.search_messages([room.id], ["上涨"])] == [message.id]
    assert _rows(sqlite_storage.path, "search_pending") == []
    assert [tokens for _, tokens in _rows(sqlite_storage.path, "message_search")] == ["水位 上涨"]


async def test_pending_tokens_are_indexed_a_moment_later_without_a_search(
    sqlite_storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_events, "SEARCH_DELAY", 0.05)
    room = await new_room(sqlite_storage, "u1")
    await append(sqlite_storage, room, tokens=["堤坝"])
    await append(sqlite_storage, room, tokens=["险情"])
    await until(lambda: not _rows(sqlite_storage.path, "search_pending"))
    assert sorted(tokens for _, tokens in _rows(sqlite_storage.path, "message_search")) == ["堤坝", "险情"]


async def test_a_full_batch_is_indexed_at_once(sqlite_storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_events, "SEARCH_DELAY", 3600.0)
    monkeypatch.setattr(sqlite_events, "SEARCH_BATCH", 3)
    room = await new_room(sqlite_storage, "u1")
    await append(sqlite_storage, room, tokens=["一"], client_id="c1")
    await append(sqlite_storage, room, tokens=["二"], client_id="c2")
    assert len(_rows(sqlite_storage.path, "search_pending")) == 2
    await append(sqlite_storage, room, tokens=["三"], client_id="c3")
    await until(lambda: not _rows(sqlite_storage.path, "search_pending"))
    assert len(_rows(sqlite_storage.path, "message_search")) == 3


async def test_events_that_are_not_messages_and_resends_leave_nothing_pending(sqlite_storage: SqliteStorage) -> None:
    room = await new_room(sqlite_storage, "u1")
    await append(sqlite_storage, room, kind="member.joined", body={"user_id": "u2"}, tokens=["加入"])
    first = await append(sqlite_storage, room, tokens=["水位"], client_id="c1")
    again, created = await sqlite_storage.append_event(first, search_tokens=["水位"])
    assert not created and again.id == first.id
    assert [tokens for _, tokens in _rows(sqlite_storage.path, "search_pending")] == ["水位"]
    assert sqlite_storage._search_pending == 1


async def test_an_edit_before_indexing_replaces_the_pending_tokens(sqlite_storage: SqliteStorage) -> None:
    room = await new_room(sqlite_storage, "u1")
    message = await append(sqlite_storage, room, tokens=["水位"])
    assert await sqlite_storage.update_message(room.id, message.id, body={"text": "堤坝"}, search_tokens=["堤坝"])
    assert _rows(sqlite_storage.path, "search_pending") == []
    assert await sqlite_storage.search_messages([room.id], ["水位"]) == []
    assert [e.id for e in await sqlite_storage.search_messages([room.id], ["堤坝"])] == [message.id]


async def test_closing_indexes_what_waits(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "muster.db")
    await storage.open()
    room = await new_room(storage, "u1")
    await append(storage, room, tokens=["转移"])
    await storage.close()
    assert _rows(tmp_path / "muster.db", "search_pending") == []
    assert [tokens for _, tokens in _rows(tmp_path / "muster.db", "message_search")] == ["转移"]


async def test_tokens_left_pending_by_a_stopped_process_are_indexed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "muster.db"
    storage = SqliteStorage(path)
    await storage.open()
    room = await new_room(storage, "u1")
    message = await append(storage, room, tokens=["疏散"])
    # A process that died before its batch: its connections close, the row stays pending.
    if storage._search_timer is not None:
        storage._search_timer.cancel()
        storage._search_timer = None
    await sqlite_events.SqliteBase.close(storage)  # skips SqliteEvents.close, which would index it
    assert len(_rows(path, "search_pending")) == 1
    reopened = SqliteStorage(path)
    await reopened.open()
    try:
        assert _rows(path, "search_pending") == []
        assert [e.id for e in await reopened.search_messages([room.id], ["疏散"])] == [message.id]
    finally:
        await reopened.close()


async def test_a_search_finds_what_another_process_left_pending(tmp_path: Path) -> None:
    path = tmp_path / "muster.db"
    writer, searcher = SqliteStorage(path), SqliteStorage(path)
    await writer.open()
    await searcher.open()
    try:
        room = await new_room(writer, "u1")
        message = await append(writer, room, tokens=["封路"])
        assert searcher._search_pending == 0  # it knows nothing of the other's pending row
        assert [e.id for e in await searcher.search_messages([room.id], ["封路"])] == [message.id]
        assert _rows(path, "search_pending") == []
    finally:
        await searcher.close()
        await writer.close()
