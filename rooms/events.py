"""Socket events of rooms, messages and presence (thin: validate, call the service, answer).

Server-to-client events:
- `room.event` {event}: something happened in one of my rooms (message, edit, recall, pin,
  member or room change), with its sequence number;
- `room.joined` / `room.left` {room_id}: my membership changed (sync to pick the room up);
- `room.read` {room_id, read_seq}: my read position moved (on another of my devices);
- `typing` {room_id, user_id, typing};
- `mention` and `ack.requested` {room_id, event_id, seq, sender_id}: a message needs me;
- `message.acked` {room_id, message_id, user_id, device_id, at};
- `presence` {user_id, state, devices, last_seen_at}.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rooms.models import (
    CreateRoom,
    EditMessage,
    GetPresence,
    History,
    Invite,
    MarkRead,
    MemberRef,
    MessageBody,
    MessageRef,
    OpenDirect,
    RoomRef,
    Search,
    SendMessage,
    SetPresence,
    SetRole,
    Sync,
    TypingPayload,
    UpdateRoom,
)
from rooms.presence import PresenceService, UserPresence, presence_out
from rooms.service import AckStatus, RoomService, event_out
from server.auth.service import Principal
from server.gateway.server import Gateway, SocketContext
from server.storage.records import Membership, Room, RoomEvent


def room_room(room_id: str) -> str:
    """The Socket.IO room whose sockets receive a chat room's events."""
    return f"room:{room_id}"


def room_out(room: Room) -> dict[str, Any]:
    d = asdict(room)
    d.pop("direct_key", None)
    return d


def member_out(member: Membership) -> dict[str, Any]:
    return asdict(member)


def ack_status_out(status: AckStatus) -> dict[str, Any]:
    return {"message_id": status.message_id, "required": status.required,
            "acknowledged": [{"user_id": a.user_id, "device_id": a.device_id, "at": a.at}
                             for a in status.acknowledged],
            "pending": status.pending, "stopped": status.stopped}


async def send_payload(rooms: RoomService, principal: Principal, room_id: str,
                       p: MessageBody) -> tuple[RoomEvent, bool]:
    """A message payload (socket or HTTP) handed to the service."""
    return await rooms.send_message(
        principal, room_id=room_id, client_id=p.client_id, text=p.text, mentions=list(p.mentions),
        mention_all=p.mention_all, reply_to=p.reply_to, attachments=[a.model_dump() for a in p.attachments],
        ack_requested=p.ack is not None, ack_all=bool(p.ack and p.ack.all),
        ack_user_ids=list(p.ack.user_ids) if p.ack else None,
    )


class GatewayNotifier:
    """Delivers room traffic through the socket gateway (on every node)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def room_event(self, room_id: str, event: RoomEvent) -> None:
        await self._gateway.emit("room.event", event_out(event), room=room_room(room_id))

    async def to_user(self, user_id: str, name: str, data: dict[str, Any]) -> None:
        await self._gateway.emit(name, data, room=f"user:{user_id}")

    async def join(self, user_id: str, room_id: str) -> None:
        await self._gateway.join_user(user_id, room_room(room_id))

    async def leave(self, user_id: str, room_id: str) -> None:
        await self._gateway.leave_user(user_id, room_room(room_id))

    async def typing(self, room_id: str, user_id: str, typing: bool, *, skip_sid: str | None) -> None:
        await self._gateway.emit("typing", {"room_id": room_id, "user_id": user_id, "typing": typing},
                                 room=room_room(room_id), skip_sid=skip_sid)

    async def presence_changed(self, presence: UserPresence, room_ids: list[str]) -> None:
        # One emit to all those rooms: python-socketio sends each socket one copy.
        await self._gateway.emit("presence", presence_out(presence),
                                 room=[f"user:{presence.user_id}", *(room_room(r) for r in room_ids)])


def register_room_events(gateway: Gateway, rooms: RoomService, presence: PresenceService) -> None:
    """Mount every room, message and presence event on the gateway."""
    on = gateway.on

    async def joined(ctx: SocketContext) -> None:
        # A new socket receives the events of every room its user belongs to.
        for room_id in await rooms.room_ids_of(ctx.user_id):
            await gateway.sio.enter_room(ctx.sid, room_room(room_id))

    gateway.on_connected(joined)
    gateway.on_connected(presence.connected, after_accept=True)
    gateway.on_disconnected(presence.disconnected)

    @on("room.list")
    async def list_rooms(ctx: SocketContext, _: None) -> dict[str, Any]:
        return {"rooms": [{"room": room_out(s.room), "membership": member_out(s.member), "unread": s.unread}
                          for s in await rooms.list_rooms(ctx.principal)]}

    @on("room.create", CreateRoom)
    async def create_room(ctx: SocketContext, p: CreateRoom) -> dict[str, Any]:
        room = await rooms.create_room(ctx.principal, kind=p.kind, name=p.name, topic=p.topic,
                                       member_ids=list(p.member_ids), department_id=p.department_id,
                                       case_type=p.case_type, case_id=p.case_id)
        return {"room": room_out(room)}

    @on("direct.open", OpenDirect)
    async def open_direct(ctx: SocketContext, p: OpenDirect) -> dict[str, Any]:
        return {"room": room_out(await rooms.open_direct(ctx.principal, p.user_id))}

    @on("room.update", UpdateRoom)
    async def update_room(ctx: SocketContext, p: UpdateRoom) -> dict[str, Any]:
        return {"room": room_out(await rooms.update_room(ctx.principal, p.room_id, name=p.name, topic=p.topic))}

    @on("room.archive", RoomRef)
    async def archive_room(ctx: SocketContext, p: RoomRef) -> dict[str, Any]:
        return {"room": room_out(await rooms.archive_room(ctx.principal, p.room_id))}

    @on("room.members", RoomRef)
    async def members(ctx: SocketContext, p: RoomRef) -> dict[str, Any]:
        return {"members": [member_out(m) for m in await rooms.list_members(ctx.principal, p.room_id)]}

    @on("room.invite", Invite)
    async def invite(ctx: SocketContext, p: Invite) -> dict[str, Any]:
        added = await rooms.invite(ctx.principal, p.room_id, list(p.user_ids))
        return {"added": [member_out(m) for m in added]}

    @on("room.remove", MemberRef)
    async def remove(ctx: SocketContext, p: MemberRef) -> dict[str, Any]:
        await rooms.remove_member(ctx.principal, p.room_id, p.user_id)
        return {}

    @on("room.leave", RoomRef)
    async def leave(ctx: SocketContext, p: RoomRef) -> dict[str, Any]:
        await rooms.leave(ctx.principal, p.room_id)
        return {}

    @on("room.set_role", SetRole)
    async def set_role(ctx: SocketContext, p: SetRole) -> dict[str, Any]:
        return {"member": member_out(await rooms.set_role(ctx.principal, p.room_id, p.user_id, p.role))}

    @on("room.history", History)
    async def history(ctx: SocketContext, p: History) -> dict[str, Any]:
        events, has_more = await rooms.history(ctx.principal, p.room_id, after_seq=p.after_seq,
                                               before_seq=p.before_seq, limit=p.limit)
        return {"events": [event_out(e) for e in events], "has_more": has_more}

    @on("sync", Sync)
    async def sync(ctx: SocketContext, p: Sync) -> dict[str, Any]:
        result = await rooms.sync(ctx.principal, dict(p.rooms), limit=p.limit)
        return {
            "rooms": [{"room": room_out(r.room), "membership": member_out(r.member),
                       "events": [event_out(e) for e in r.events], "has_more": r.has_more, "unread": r.unread}
                      for r in result.rooms],
            "left": result.left,
        }

    @on("message.send", SendMessage)
    async def send(ctx: SocketContext, p: SendMessage) -> dict[str, Any]:
        event, created = await send_payload(rooms, ctx.principal, p.room_id, p)
        return {"event": event_out(event), "duplicate": not created}

    @on("message.edit", EditMessage)
    async def edit(ctx: SocketContext, p: EditMessage) -> dict[str, Any]:
        event = await rooms.edit_message(ctx.principal, p.room_id, p.message_id, text=p.text,
                                         mentions=list(p.mentions), mention_all=p.mention_all)
        return {"event": event_out(event)}

    @on("message.recall", MessageRef)
    async def recall(ctx: SocketContext, p: MessageRef) -> dict[str, Any]:
        return {"event": event_out(await rooms.recall_message(ctx.principal, p.room_id, p.message_id))}

    @on("message.pin", MessageRef)
    async def pin(ctx: SocketContext, p: MessageRef) -> dict[str, Any]:
        return {"event": event_out(await rooms.pin_message(ctx.principal, p.room_id, p.message_id, pinned=True))}

    @on("message.unpin", MessageRef)
    async def unpin(ctx: SocketContext, p: MessageRef) -> dict[str, Any]:
        return {"event": event_out(await rooms.pin_message(ctx.principal, p.room_id, p.message_id, pinned=False))}

    @on("message.ack", MessageRef)
    async def ack(ctx: SocketContext, p: MessageRef) -> dict[str, Any]:
        a = await rooms.acknowledge(ctx.principal, p.room_id, p.message_id)
        return {"ack": {"user_id": a.user_id, "device_id": a.device_id, "at": a.at}}

    @on("message.ack_status", MessageRef)
    async def ack_status(ctx: SocketContext, p: MessageRef) -> dict[str, Any]:
        return ack_status_out(await rooms.ack_status(ctx.principal, p.room_id, p.message_id))

    @on("message.ack_stop", MessageRef)
    async def ack_stop(ctx: SocketContext, p: MessageRef) -> dict[str, Any]:
        return ack_status_out(await rooms.stop_ack_requests(ctx.principal, p.room_id, p.message_id))

    @on("room.read", MarkRead)
    async def read(ctx: SocketContext, p: MarkRead) -> dict[str, Any]:
        return {"room_id": p.room_id, "read_seq": await rooms.mark_read(ctx.principal, p.room_id, p.seq)}

    @on("typing", TypingPayload)
    async def typing(ctx: SocketContext, p: TypingPayload) -> dict[str, Any]:
        await rooms.typing(ctx.principal, p.room_id, p.typing, sid=ctx.sid)
        return {}

    @on("search", Search)
    async def search(ctx: SocketContext, p: Search) -> dict[str, Any]:
        events = await rooms.search(ctx.principal, p.query, room_id=p.room_id, limit=p.limit, before_id=p.before_id)
        return {"events": [event_out(e) for e in events],
                "next_before": events[-1].id if len(events) == p.limit else None}

    @on("presence.set", SetPresence)
    async def presence_set(ctx: SocketContext, p: SetPresence) -> dict[str, Any]:
        return await presence.set_state(ctx, p.state)

    @on("presence.get", GetPresence)
    async def presence_get(ctx: SocketContext, p: GetPresence) -> dict[str, Any]:
        users = await presence.get(ctx.principal, user_ids=list(p.user_ids), room_id=p.room_id)
        return {"users": users}
