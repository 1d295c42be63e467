"""Room events, message search and acknowledgements on MongoDB.

Sequence numbers: `append_event` takes the next number with an atomic `$inc` on the
room's `last_seq`, then inserts the event. Without a transaction the two writes are
separate, so a number can be used up without an event (a gap): when two resends of one
client id race past the first lookup, the loser's insert hits the client-id index; or
when an insert fails for another reason (an event id used twice, a lost connection).
The number is not given back: a reader may already have seen it as the room's last_seq
(a read position capped there would then cover the next message). So on MongoDB seq is
strictly increasing and unique per room, and gapless only while every append succeeds
(distinct client ids, or none). An unknown room raises LookupError.

Search: a message's tokens are stored in its `search_tokens` array (multikey index with
room_id); a query asks for `$all` of them, so a token matches only exactly.

Choices where the port is silent (the same as on SQLite):
- `search_tokens` are indexed only for message kinds (`MESSAGE_KINDS`); `update_message`
  changes only message-kind events (False for any other event).
- `list_events` with both bounds gives the first `limit` events between them.
- `search_messages` with no tokens or no rooms finds nothing.
- Acks are listed by time, then user id; an ack is stored whether or not the message exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.storage.mongo.db import MESSAGE_ACKS, ROOM_EVENTS, ROOMS, Doc, MongoBase
from server.storage.ports import StorageConflict
from server.storage.records import MESSAGE_KINDS, MessageAck, RoomEvent

# Events are read without their tokens: nobody outside this module needs them.
_NO_TOKENS = {"search_tokens": 0}


def _event(doc: Mapping[str, Any]) -> RoomEvent:
    return RoomEvent(
        id=doc["_id"],
        room_id=doc["room_id"],
        seq=doc["seq"],
        kind=doc["kind"],
        sender_id=doc.get("sender_id"),
        device_id=doc.get("device_id"),
        client_id=doc.get("client_id"),
        created_at=doc["created_at"],
        body=doc.get("body") or {},
        target_id=doc.get("target_id"),
        edited_at=doc.get("edited_at"),
        recalled_at=doc.get("recalled_at"),
        pinned=bool(doc.get("pinned")),
    )


def _ack(doc: Mapping[str, Any]) -> MessageAck:
    return MessageAck(
        room_id=doc["room_id"],
        message_id=doc["message_id"],
        user_id=doc["user_id"],
        device_id=doc.get("device_id"),
        at=doc["at"],
    )


class MongoEvents(MongoBase):
    async def _find_resent(self, event: RoomEvent) -> RoomEvent | None:
        doc = await self.collection(ROOM_EVENTS).find_one(
            {"room_id": event.room_id, "sender_id": event.sender_id, "client_id": event.client_id},
            projection=_NO_TOKENS,
        )
        return _event(doc) if doc else None

    async def append_event(self, event: RoomEvent, *, search_tokens: list[str] | None = None) -> tuple[RoomEvent, bool]:
        if event.client_id is not None:
            resent = await self._find_resent(event)
            if resent is not None:
                return resent, False
        room = await self.collection(ROOMS).find_one_and_update(
            {"_id": event.room_id},
            {"$inc": {"last_seq": 1}},
            projection={"last_seq": 1},
            return_document=ReturnDocument.AFTER,
        )
        if room is None:
            raise LookupError(f"no room {event.room_id!r}")
        stored = replace(event, seq=int(room["last_seq"]))
        doc: Doc = {
            "_id": stored.id,
            "room_id": stored.room_id,
            "seq": stored.seq,
            "kind": stored.kind,
            "sender_id": stored.sender_id,
            "device_id": stored.device_id,
            "client_id": stored.client_id,
            "created_at": stored.created_at,
            "body": stored.body,
            "target_id": stored.target_id,
            "edited_at": stored.edited_at,
            "recalled_at": stored.recalled_at,
            "pinned": stored.pinned,
        }
        if search_tokens and stored.kind in MESSAGE_KINDS:
            doc["search_tokens"] = list(dict.fromkeys(search_tokens))
        try:
            await self.collection(ROOM_EVENTS).insert_one(doc)
        except DuplicateKeyError as exc:
            # A resend raced this one past the lookup and won: answer with its event.
            # The seq taken above stays unused (see the module docstring).
            if event.client_id is not None:
                resent = await self._find_resent(event)
                if resent is not None:
                    return resent, False
            raise StorageConflict(str(exc)) from None
        return stored, True

    async def get_event(self, room_id: str, event_id: str) -> RoomEvent | None:
        doc = await self.collection(ROOM_EVENTS).find_one({"_id": event_id, "room_id": room_id}, projection=_NO_TOKENS)
        return _event(doc) if doc else None

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
        query: Doc = {"_id": message_id, "room_id": room_id, "kind": {"$in": list(MESSAGE_KINDS)}}
        sets: Doc = {
            field: value
            for field, value in (
                ("body", body),
                ("edited_at", edited_at),
                ("recalled_at", recalled_at),
                ("pinned", pinned),
            )
            if value is not None
        }
        update: Doc = {}
        if search_tokens:
            sets["search_tokens"] = list(dict.fromkeys(search_tokens))
        elif search_tokens is not None:
            update["$unset"] = {"search_tokens": ""}
        if sets:
            update["$set"] = sets
        if not update:
            return await self.collection(ROOM_EVENTS).find_one(query, projection={"_id": 1}) is not None
        result = await self.collection(ROOM_EVENTS).update_one(query, update)
        return result.matched_count > 0

    async def list_events(
        self, room_id: str, *, after_seq: int | None = None, before_seq: int | None = None, limit: int = 100
    ) -> list[RoomEvent]:
        if limit <= 0:  # MongoDB reads a limit of 0 as "no limit"
            return []
        seq: Doc = {}
        if after_seq is not None:
            seq["$gt"] = after_seq
        if before_seq is not None:
            seq["$lt"] = before_seq
        query: Doc = {"room_id": room_id}
        if seq:
            query["seq"] = seq
        # The first page after a position reads forwards; otherwise read the newest backwards.
        forwards = after_seq is not None
        cursor = self.collection(ROOM_EVENTS).find(
            query, projection=_NO_TOKENS, sort=[("seq", 1 if forwards else -1)], limit=limit, batch_size=limit
        )
        events = [_event(doc) async for doc in cursor]
        return events if forwards else events[::-1]

    async def count_unread(self, room_id: str, user_id: str, after_seq: int, *, cap: int = 1000) -> int:
        if cap <= 0:
            return 0
        return await self.collection(ROOM_EVENTS).count_documents(
            {
                "room_id": room_id,
                "seq": {"$gt": after_seq},
                "kind": {"$in": list(MESSAGE_KINDS)},
                # $ne also matches events without a sender (system messages).
                "sender_id": {"$ne": user_id},
            },
            limit=cap,
        )

    async def search_messages(
        self, room_ids: list[str], tokens: list[str], *, limit: int = 50, before_id: str | None = None
    ) -> list[RoomEvent]:
        if not room_ids or not tokens or limit <= 0:
            return []
        query: Doc = {"room_id": {"$in": list(room_ids)}, "search_tokens": {"$all": list(dict.fromkeys(tokens))}}
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        cursor = self.collection(ROOM_EVENTS).find(
            query, projection=_NO_TOKENS, sort=[("_id", -1)], limit=limit, batch_size=limit
        )
        return [_event(doc) async for doc in cursor]

    async def add_message_ack(self, ack: MessageAck) -> bool:
        doc: Doc = {
            "room_id": ack.room_id,
            "message_id": ack.message_id,
            "user_id": ack.user_id,
            "device_id": ack.device_id,
            "at": ack.at,
        }
        try:
            await self.collection(MESSAGE_ACKS).insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def list_message_acks(self, room_id: str, message_id: str) -> list[MessageAck]:
        cursor = self.collection(MESSAGE_ACKS).find(
            {"room_id": room_id, "message_id": message_id}, sort=[("at", 1), ("user_id", 1)]
        )
        return [_ack(doc) async for doc in cursor]
