"""Room events, message search and acknowledgements on SQLite.

Sequence numbers: `append_event` bumps `rooms.last_seq` and inserts the event in one
transaction, so a room's events are numbered 1, 2, 3... without gaps (a failed insert
rolls the bump back). An append alone is written at once; the appends made after it in the same
step of the event loop, or while the writer is busy, wait and go together in one transaction, each
in a savepoint of its own (group commit): one that fails is undone alone, and none is answered
before the transaction is committed. The transaction runs on the event loop's thread
(`_write_on_loop`), or on the writer's thread when another process holds the file's lock. An unknown room
raises LookupError. Resends are found by a lookup inside that transaction; `sender_id IS ?`
treats events without a sender as one sender (as MongoDB's index does), which the unique index
alone would not: it sees NULLs as distinct.

Search: each message's tokens live in the FTS5 table `message_search` (rowid =
`room_events.pk`), joined by spaces and read by FTS5's unicode61 tokenizer. A new message's
tokens are first appended to the plain table `search_pending` in the message's own transaction
(an FTS5 write costs several times a row's) and moved into `message_search` in batches: a
second after the first of them, at once when many wait, before every search (by any process
sharing the file), and when the storage opens or closes. So a search always sees every stored
message, and a message's tokens are never lost between the two tables. A query
quotes every token as an FTS5 phrase, so no user input is read as query syntax. FTS5
alone would be looser than "holds every token" (it ignores case and splits a token at
punctuation), so each candidate is also checked for every token as a whole word of the
stored text: a token matches only exactly, as on MongoDB. Tokens are expected to be what
`rooms.search` makes (letters, digits, CJK, never whitespace); a query with a token
holding whitespace, or with no token holding a letter, digit or mark (nothing FTS5 could
look up), finds nothing.

Choices where the port is silent:
- `search_tokens` are indexed only for message kinds (`MESSAGE_KINDS`); `update_message`
  changes only message-kind events (False for any other event).
- `list_events` with both bounds gives the first `limit` events between them.
- `search_messages` with no tokens or no rooms finds nothing.
- Acks are listed by time, then user id; an ack is stored whether or not the message exists.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import unicodedata
from dataclasses import replace
from functools import partial
from typing import Any

import aiosqlite

from server.logging import get_logger
from server.storage.ports import StorageConflict
from server.storage.records import MESSAGE_KINDS, MessageAck, RoomEvent
from server.storage.sqlite.db import SqliteBase
from server.tasks import cancel_and_wait

log = get_logger("muster.storage")

# Bound as a parameter: `kind IN (SELECT value FROM json_each(?))`.
_MESSAGE_KINDS_JSON = json.dumps(list(MESSAGE_KINDS))


def _event(row: sqlite3.Row) -> RoomEvent:
    return RoomEvent(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        kind=row["kind"],
        sender_id=row["sender_id"],
        device_id=row["device_id"],
        client_id=row["client_id"],
        created_at=row["created_at"],
        body=json.loads(row["body"]),
        target_id=row["target_id"],
        edited_at=row["edited_at"],
        recalled_at=row["recalled_at"],
        pinned=bool(row["pinned"]),
    )


def _ack(row: sqlite3.Row) -> MessageAck:
    return MessageAck(
        room_id=row["room_id"],
        message_id=row["message_id"],
        user_id=row["user_id"],
        device_id=row["device_id"],
        at=row["at"],
    )


def _searchable(token: str) -> bool:
    """Whether FTS5's unicode61 tokenizer keeps anything of `token` (letters, digits, marks)."""
    return any(unicodedata.category(ch)[0] in "LNM" for ch in token)


def _match_query(tokens: list[str]) -> str:
    """Every token as a quoted FTS5 phrase; FTS5 ANDs phrases separated by spaces."""
    return " ".join('"' + token.replace('"', '""') + '"' for token in dict.fromkeys(tokens))


# Pending search tokens are moved into the index this long after the first of them, or at once
# when this many wait (a batch stays a few milliseconds of work on the event loop).
SEARCH_DELAY = 1.0
SEARCH_BATCH = 256


async def _index_tokens(db: aiosqlite.Connection, pk: int, tokens: list[str]) -> None:
    await db.execute("DELETE FROM search_pending WHERE pk = ?", (pk,))
    await db.execute("DELETE FROM message_search WHERE rowid = ?", (pk,))
    if tokens:
        await db.execute(
            "INSERT INTO message_search (rowid, tokens) VALUES (?, ?)", (pk, " ".join(dict.fromkeys(tokens)))
        )


def _append_one(db: sqlite3.Connection, event: RoomEvent, tokens: list[str] | None) -> tuple[RoomEvent, bool]:
    if event.client_id is not None:
        # Inside the write transaction, so no other append can slip in between.
        existing = db.execute(
            "SELECT * FROM room_events WHERE room_id = ? AND sender_id IS ? AND client_id = ?",
            (event.room_id, event.sender_id, event.client_id),
        ).fetchone()
        if existing is not None:
            return _event(existing), False
    row = db.execute("UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                     (event.room_id,)).fetchone()
    if row is None:
        raise LookupError(f"no room {event.room_id!r}")
    seq = int(row[0])
    try:
        cursor = db.execute(
            "INSERT INTO room_events (id, room_id, seq, kind, sender_id, device_id, client_id, created_at,"
            " body, target_id, edited_at, recalled_at, pinned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.id, event.room_id, seq, event.kind, event.sender_id, event.device_id, event.client_id,
             event.created_at, json.dumps(event.body, ensure_ascii=False), event.target_id, event.edited_at,
             event.recalled_at, int(event.pinned)),
        )
    except sqlite3.IntegrityError as exc:
        raise StorageConflict(str(exc)) from None
    pk = cursor.lastrowid
    if tokens and event.kind in MESSAGE_KINDS and pk is not None:
        # Indexed later, in a batch (`_index_pending`). A new row's pk has no index entry yet
        # (events are never deleted, so no pk is reused).
        db.execute("INSERT INTO search_pending (pk, tokens) VALUES (?, ?)", (pk, " ".join(dict.fromkeys(tokens))))
    return replace(event, seq=seq), True


def _append_batch(batch: list[tuple[RoomEvent, list[str] | None]],
                  db: sqlite3.Connection) -> list[tuple[RoomEvent, bool] | Exception]:
    """Every append of `batch` in one transaction, each in a savepoint of its own, so one that fails
    (unknown room, conflict) is undone alone and reported to its sender (an append alone needs none)."""
    outcomes: list[tuple[RoomEvent, bool] | Exception] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        if len(batch) == 1:  # alone (no load): the transaction is its savepoint
            try:
                outcomes.append(_append_one(db, *batch[0]))
            except (LookupError, StorageConflict, ValueError, TypeError) as exc:
                db.execute("ROLLBACK")
                return [exc]
            db.execute("COMMIT")
            return outcomes
        for event, tokens in batch:
            db.execute("SAVEPOINT append_event")
            try:
                outcomes.append(_append_one(db, event, tokens))
            except (LookupError, StorageConflict, ValueError, TypeError) as exc:
                db.execute("ROLLBACK TO append_event")
                outcomes.append(exc)
            db.execute("RELEASE append_event")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


def _index_pending(db: sqlite3.Connection) -> int:
    """Move every pending message's tokens into the full-text index, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("INSERT INTO message_search (rowid, tokens) SELECT pk, tokens FROM search_pending")
        moved = db.execute("DELETE FROM search_pending").rowcount
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return moved


class SqliteEvents(SqliteBase):
    # Appends waiting for the writer: taken together, one transaction for all of them (group
    # commit). Under load a room message costs a share of one commit instead of a commit of its
    # own; alone, it is written at once.
    _appends: list[tuple[RoomEvent, list[str] | None, asyncio.Future[tuple[RoomEvent, bool]]]] | None = None
    _append_writer: asyncio.Task[None] | None = None
    _append_step = False  # an append was written alone in this step of the event loop
    _search_pending = 0  # messages this process left in search_pending
    _search_indexer: asyncio.Task[None] | None = None
    _search_timer: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        await super().open()
        await self._index_search()  # what a process stopped before indexing

    async def close(self) -> None:
        if self._conn is not None:
            if self._search_timer is not None:
                self._search_timer.cancel()
                self._search_timer = None
            await cancel_and_wait(self._search_indexer)
            self._search_indexer = None
            await self._index_search()
        await super().close()

    async def _index_search(self) -> None:
        """Move the pending search tokens (of every process) into the full-text index."""
        self._search_pending = 0
        async with self._write_lock:
            if self._write_on_loop(_index_pending) is None:  # locked by another process
                await self._on_writer_thread(_index_pending)

    def _pending_search(self, count: int) -> None:
        """`count` more messages wait in search_pending: index them soon, at once when many wait."""
        if not count:
            return
        self._search_pending += count
        if self._search_indexer is not None:  # a batch is being written; it looks again when done
            return
        if self._search_pending >= SEARCH_BATCH:
            if self._search_timer is not None:
                self._search_timer.cancel()
            self._start_indexer()
        elif self._search_timer is None:
            self._search_timer = asyncio.get_running_loop().call_later(SEARCH_DELAY, self._start_indexer)

    def _start_indexer(self) -> None:
        self._search_timer = None
        if self._search_indexer is None:
            self._search_indexer = asyncio.get_running_loop().create_task(self._run_indexer())

    async def _run_indexer(self) -> None:
        try:
            await self._index_search()
        except Exception:  # left pending: the next batch or search moves it
            log.exception("search indexing failed")
        finally:
            self._search_indexer = None
        waiting, self._search_pending = self._search_pending, 0
        self._pending_search(waiting)  # what arrived meanwhile

    async def append_event(self, event: RoomEvent, *, search_tokens: list[str] | None = None) -> tuple[RoomEvent, bool]:
        loop = asyncio.get_running_loop()
        if self._appends is None and not self._append_step and not self._write_lock.locked():
            # Alone: written at once, with no batch to wait for (no task, no trip round the loop).
            # Appends made later in this same step of the loop wait and go together (group commit).
            self._append_step = True
            loop.call_soon(self._end_append_step)
            outcomes = self._write_on_loop(partial(_append_batch, [(event, search_tokens)]))
            if outcomes is not None:
                self._count_pending_search([event], [search_tokens], outcomes)
                outcome = outcomes[0]
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
            # The file is locked by another process: the batch below waits for it off the loop.
        done: asyncio.Future[tuple[RoomEvent, bool]] = loop.create_future()
        if self._appends is None:
            self._appends = [(event, search_tokens, done)]
            self._append_writer = loop.create_task(self._write_appends())
        else:
            self._appends.append((event, search_tokens, done))
        return await done

    def _end_append_step(self) -> None:
        self._append_step = False

    def _count_pending_search(self, events: list[RoomEvent], tokens: list[list[str] | None],
                              outcomes: list[tuple[RoomEvent, bool] | Exception]) -> None:
        self._pending_search(sum(1 for event, words, outcome in zip(events, tokens, outcomes, strict=True)
                                 if words and isinstance(outcome, tuple) and outcome[1]
                                 and event.kind in MESSAGE_KINDS))

    async def _write_appends(self) -> None:
        batch: list[tuple[RoomEvent, list[str] | None, asyncio.Future[tuple[RoomEvent, bool]]]] = []
        try:
            async with self._write_lock:
                # Everything queued until the writer is ours goes into this one transaction.
                batch, self._appends = self._appends or [], None
                work = partial(_append_batch, [(event, tokens) for event, tokens, _ in batch])
                outcomes = self._write_on_loop(work)
                if outcomes is None:  # the file is locked by another process: wait for it off the loop
                    outcomes = await self._on_writer_thread(work)
        except BaseException as exc:
            if not batch:  # stopped before it took its batch
                batch, self._appends = self._appends or [], None
            failure = exc if isinstance(exc, Exception) else ConnectionError("the write was interrupted")
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        self._count_pending_search([event for event, _, _ in batch], [tokens for _, tokens, _ in batch], outcomes)
        for (_, _, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():  # its sender gave up waiting; the message is stored all the same
                continue
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

    async def get_event(self, room_id: str, event_id: str) -> RoomEvent | None:
        row = await self.fetch_by_key("SELECT * FROM room_events WHERE id = ? AND room_id = ?", (event_id, room_id))
        return _event(row) if row else None

    async def update_message(
        self,
        room_id: str,
        message_id: str,
        *,
        body: dict[str, Any] | None = None,
        edited_at: int | None = None,
        recalled_at: int | None = None,
        pinned: bool | None = None,
        search_tokens: list[str] | None = None,
    ) -> bool:
        async with self.transaction() as db:
            async with db.execute(
                "SELECT pk FROM room_events WHERE id = ? AND room_id = ? AND kind IN (SELECT value FROM json_each(?))",
                (message_id, room_id, _MESSAGE_KINDS_JSON),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return False
            pk = int(row["pk"])
            # A None argument leaves its column as it is.
            await db.execute(
                "UPDATE room_events SET body = COALESCE(?, body), edited_at = COALESCE(?, edited_at),"
                " recalled_at = COALESCE(?, recalled_at), pinned = COALESCE(?, pinned) WHERE pk = ?",
                (
                    None if body is None else json.dumps(body, ensure_ascii=False),
                    edited_at,
                    recalled_at,
                    None if pinned is None else int(pinned),
                    pk,
                ),
            )
            if search_tokens is not None:
                await _index_tokens(db, pk, search_tokens)
        return True

    async def list_events(
        self, room_id: str, *, after_seq: int | None = None, before_seq: int | None = None, limit: int = 100
    ) -> list[RoomEvent]:
        if limit <= 0:
            return []
        where = ["room_id = ?"]
        params: list[Any] = [room_id]
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        # The first page after a position reads forwards; otherwise read the newest backwards.
        order = "ASC" if after_seq is not None else "DESC"
        sql = "SELECT * FROM room_events WHERE "
        sql += " AND ".join(where) + f" ORDER BY seq {order} LIMIT ?"
        events = [_event(row) for row in await self.fetch_all(sql, (*params, limit))]
        return events if order == "ASC" else events[::-1]

    async def count_unread(self, room_id: str, user_id: str, after_seq: int, *, cap: int = 1000) -> int:
        if cap <= 0:
            return 0
        row = await self.fetch_one(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM room_events WHERE room_id = ? AND seq > ?"
            " AND kind IN (SELECT value FROM json_each(?)) AND sender_id IS NOT ? LIMIT ?)",
            (room_id, after_seq, _MESSAGE_KINDS_JSON, user_id, cap),
        )
        return int(row["n"]) if row else 0

    async def search_messages(
        self, room_ids: list[str], tokens: list[str], *, limit: int = 50, before_id: str | None = None
    ) -> list[RoomEvent]:
        wanted = list(dict.fromkeys(tokens))
        if any(ch.isspace() for token in wanted for ch in token):
            return []
        indexed = [token for token in wanted if _searchable(token)]
        if not room_ids or not indexed or limit <= 0:
            return []
        if self._search_pending or await self.fetch_by_key("SELECT pk FROM search_pending LIMIT 1"):
            await self._index_search()  # (also what another process sharing the file left pending)
        # MATCH narrows through the index; the NOT EXISTS keeps rows holding every token exactly.
        sql = (
            "SELECT e.* FROM message_search s JOIN room_events e ON e.pk = s.rowid"
            " WHERE message_search MATCH ? AND e.room_id IN (SELECT value FROM json_each(?))"
            " AND NOT EXISTS (SELECT 1 FROM json_each(?) AS q"
            " WHERE instr(' ' || s.tokens || ' ', ' ' || q.value || ' ') = 0)"
        )
        params: list[Any] = [_match_query(indexed), json.dumps(list(room_ids)), json.dumps(wanted)]
        if before_id is not None:
            sql += " AND e.id < ?"
            params.append(before_id)
        sql += " ORDER BY e.id DESC LIMIT ?"
        params.append(limit)
        return [_event(row) for row in await self.fetch_all(sql, params)]

    async def add_message_ack(self, ack: MessageAck) -> bool:
        changed = await self.write(
            "INSERT INTO message_acks (room_id, message_id, user_id, device_id, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (room_id, message_id, user_id) DO NOTHING",
            (ack.room_id, ack.message_id, ack.user_id, ack.device_id, ack.at),
        )
        return changed > 0

    async def list_message_acks(self, room_id: str, message_id: str) -> list[MessageAck]:
        rows = await self.fetch_all(
            "SELECT * FROM message_acks WHERE room_id = ? AND message_id = ? ORDER BY at, user_id",
            (room_id, message_id),
        )
        return [_ack(row) for row in rows]
