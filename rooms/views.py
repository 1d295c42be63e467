"""HTTP routes of rooms, messages and presence (thin: the same service as the socket events)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rooms.events import ack_status_out, member_out, room_out, send_payload
from rooms.models import (
    AckOut,
    AckStatusOut,
    CreateRoom,
    EditBody,
    EventOut,
    EventPageOut,
    HistoryQuery,
    InviteBody,
    MarkReadBody,
    MemberListOut,
    MemberOut,
    MessageBody,
    OpenDirect,
    PresenceListOut,
    PresenceOut,
    ReadOut,
    RoomListOut,
    RoomOut,
    RoomSummaryOut,
    SearchOut,
    SearchQuery,
    SentOut,
    SetRoleBody,
    UpdateRoomBody,
)
from rooms.presence import PresenceService
from rooms.service import RoomService, event_out
from server.http.api import Api, ApiRequest

api = Api()
ROOMS = web.AppKey("muster.rooms", RoomService)
PRESENCE = web.AppKey("muster.presence", PresenceService)
TAGS = ["rooms"]


def _event(e: Any) -> EventOut:
    return EventOut.model_validate(event_out(e))


@api.route("GET", "/api/rooms", summary="My rooms, most recently active first, with unread counts", tags=TAGS,
           response=RoomListOut)
async def list_rooms(req: ApiRequest[None, None]) -> RoomListOut:
    summaries = await req.app[ROOMS].list_rooms(req.principal)
    return RoomListOut(rooms=[RoomSummaryOut(room=RoomOut.model_validate(room_out(s.room)),
                                             membership=MemberOut.model_validate(member_out(s.member)),
                                             unread=s.unread) for s in summaries])


@api.route("POST", "/api/rooms", summary="Create a room (incident, project, department or group)", tags=TAGS,
           body=CreateRoom, response=RoomOut, status=201)
async def create_room(req: ApiRequest[CreateRoom, None]) -> RoomOut:
    b = req.body
    room = await req.app[ROOMS].create_room(req.principal, kind=b.kind, name=b.name, topic=b.topic,
                                            member_ids=list(b.member_ids), department_id=b.department_id,
                                            case_type=b.case_type, case_id=b.case_id)
    return RoomOut.model_validate(room_out(room))


@api.route("POST", "/api/direct", summary="Open the direct chat with a user (created on first use)", tags=TAGS,
           body=OpenDirect, response=RoomOut)
async def open_direct(req: ApiRequest[OpenDirect, None]) -> RoomOut:
    return RoomOut.model_validate(room_out(await req.app[ROOMS].open_direct(req.principal, req.body.user_id)))


@api.route("GET", "/api/rooms/{room_id}", summary="A room with my membership and unread count", tags=TAGS,
           response=RoomSummaryOut)
async def get_room(req: ApiRequest[None, None]) -> RoomSummaryOut:
    rooms = req.app[ROOMS]
    access = await rooms.access(req.principal, req.path["room_id"])
    assert access.member is not None
    unread = (await rooms.unread(req.principal, access.room.id, access.member.read_seq))
    return RoomSummaryOut(room=RoomOut.model_validate(room_out(access.room)),
                          membership=MemberOut.model_validate(member_out(access.member)), unread=unread)


@api.route("PATCH", "/api/rooms/{room_id}", summary="Rename a room or set its topic (room admins)", tags=TAGS,
           body=UpdateRoomBody, response=RoomOut, errors=[409])
async def update_room(req: ApiRequest[UpdateRoomBody, None]) -> RoomOut:
    room = await req.app[ROOMS].update_room(req.principal, req.path["room_id"], name=req.body.name,
                                            topic=req.body.topic)
    return RoomOut.model_validate(room_out(room))


@api.route("POST", "/api/rooms/{room_id}/archive", summary="Archive a room: it becomes read-only (room admins)",
           tags=TAGS, response=RoomOut)
async def archive_room(req: ApiRequest[None, None]) -> RoomOut:
    return RoomOut.model_validate(room_out(await req.app[ROOMS].archive_room(req.principal, req.path["room_id"])))


@api.route("GET", "/api/rooms/{room_id}/members", summary="Members of a room", tags=TAGS, response=MemberListOut)
async def list_members(req: ApiRequest[None, None]) -> MemberListOut:
    members = await req.app[ROOMS].list_members(req.principal, req.path["room_id"])
    return MemberListOut(members=[MemberOut.model_validate(member_out(m)) for m in members])


@api.route("POST", "/api/rooms/{room_id}/members", summary="Invite users (room admins)", tags=TAGS,
           body=InviteBody, response=MemberListOut, errors=[409])
async def invite(req: ApiRequest[InviteBody, None]) -> MemberListOut:
    added = await req.app[ROOMS].invite(req.principal, req.path["room_id"], list(req.body.user_ids))
    return MemberListOut(members=[MemberOut.model_validate(member_out(m)) for m in added])


@api.route("DELETE", "/api/rooms/{room_id}/members/{user_id}",
           summary="Remove a member (room admins), or leave when it is me", tags=TAGS, errors=[409])
async def remove_member(req: ApiRequest[None, None]) -> None:
    await req.app[ROOMS].remove_member(req.principal, req.path["room_id"], req.path["user_id"])


@api.route("PATCH", "/api/rooms/{room_id}/members/{user_id}", summary="Set a member's role (room admins)",
           tags=TAGS, body=SetRoleBody, response=MemberOut, errors=[409])
async def set_role(req: ApiRequest[SetRoleBody, None]) -> MemberOut:
    member = await req.app[ROOMS].set_role(req.principal, req.path["room_id"], req.path["user_id"], req.body.role)
    return MemberOut.model_validate(member_out(member))


@api.route("GET", "/api/rooms/{room_id}/events", summary="History: a page of events after or before a sequence",
           tags=TAGS, query=HistoryQuery, response=EventPageOut)
async def history(req: ApiRequest[None, HistoryQuery]) -> EventPageOut:
    q = req.query
    events, has_more = await req.app[ROOMS].history(req.principal, req.path["room_id"], after_seq=q.after_seq,
                                                    before_seq=q.before_seq, limit=q.limit)
    return EventPageOut(events=[_event(e) for e in events], has_more=has_more)


@api.route("POST", "/api/rooms/{room_id}/messages", summary="Send a message (idempotent on client_id)", tags=TAGS,
           body=MessageBody, response=SentOut, errors=[409])
async def send_message(req: ApiRequest[MessageBody, None]) -> SentOut:
    """A resend with the same client_id answers with the stored message and `duplicate: true`."""
    event, created = await send_payload(req.app[ROOMS], req.principal, req.path["room_id"], req.body)
    return SentOut(event=_event(event), duplicate=not created)


@api.route("PATCH", "/api/rooms/{room_id}/messages/{message_id}", summary="Edit my message (within the window)",
           tags=TAGS, body=EditBody, response=EventOut, errors=[409])
async def edit_message(req: ApiRequest[EditBody, None]) -> EventOut:
    b = req.body
    return _event(await req.app[ROOMS].edit_message(req.principal, req.path["room_id"], req.path["message_id"],
                                                    text=b.text, mentions=list(b.mentions),
                                                    mention_all=b.mention_all))


@api.route("DELETE", "/api/rooms/{room_id}/messages/{message_id}", summary="Recall my message (within the window)",
           tags=TAGS, response=EventOut, errors=[409])
async def recall_message(req: ApiRequest[None, None]) -> EventOut:
    return _event(await req.app[ROOMS].recall_message(req.principal, req.path["room_id"], req.path["message_id"]))


@api.route("PUT", "/api/rooms/{room_id}/messages/{message_id}/pin", summary="Pin a message (room admins)",
           tags=TAGS, response=EventOut, errors=[409])
async def pin_message(req: ApiRequest[None, None]) -> EventOut:
    return _event(await req.app[ROOMS].pin_message(req.principal, req.path["room_id"], req.path["message_id"],
                                                   pinned=True))


@api.route("DELETE", "/api/rooms/{room_id}/messages/{message_id}/pin", summary="Unpin a message (room admins)",
           tags=TAGS, response=EventOut, errors=[409])
async def unpin_message(req: ApiRequest[None, None]) -> EventOut:
    return _event(await req.app[ROOMS].pin_message(req.principal, req.path["room_id"], req.path["message_id"],
                                                   pinned=False))


@api.route("POST", "/api/rooms/{room_id}/messages/{message_id}/ack", summary="Acknowledge a message (回执)",
           tags=TAGS, response=AckOut)
async def acknowledge(req: ApiRequest[None, None]) -> AckOut:
    a = await req.app[ROOMS].acknowledge(req.principal, req.path["room_id"], req.path["message_id"])
    return AckOut(user_id=a.user_id, device_id=a.device_id, at=a.at)


@api.route("GET", "/api/rooms/{room_id}/messages/{message_id}/acks",
           summary="Who has and who has not acknowledged a message", tags=TAGS, response=AckStatusOut)
async def ack_status(req: ApiRequest[None, None]) -> AckStatusOut:
    status = await req.app[ROOMS].ack_status(req.principal, req.path["room_id"], req.path["message_id"])
    return AckStatusOut.model_validate(ack_status_out(status))


@api.route("DELETE", "/api/rooms/{room_id}/messages/{message_id}/ack-request",
           summary="Stop reminding members to acknowledge (the sender or room admins)", tags=TAGS,
           response=AckStatusOut)
async def stop_ack_requests(req: ApiRequest[None, None]) -> AckStatusOut:
    status = await req.app[ROOMS].stop_ack_requests(req.principal, req.path["room_id"], req.path["message_id"])
    return AckStatusOut.model_validate(ack_status_out(status))


@api.route("POST", "/api/rooms/{room_id}/read", summary="Move my read position (shared by my devices)", tags=TAGS,
           body=MarkReadBody, response=ReadOut)
async def mark_read(req: ApiRequest[MarkReadBody, None]) -> ReadOut:
    position = await req.app[ROOMS].mark_read(req.principal, req.path["room_id"], req.body.seq)
    return ReadOut(room_id=req.path["room_id"], read_seq=position)


@api.route("GET", "/api/search", summary="Search messages in my rooms (Chinese included)", tags=TAGS,
           query=SearchQuery, response=SearchOut, errors=[404])
async def search(req: ApiRequest[None, SearchQuery]) -> SearchOut:
    q = req.query
    events = await req.app[ROOMS].search(req.principal, q.q, room_id=q.room_id, limit=q.limit,
                                         before_id=q.before_id)
    return SearchOut(events=[_event(e) for e in events], next_before=events[-1].id if len(events) == q.limit else None)


@api.route("GET", "/api/rooms/{room_id}/presence", summary="Presence of a room's members", tags=TAGS,
           response=PresenceListOut)
async def room_presence(req: ApiRequest[None, None]) -> PresenceListOut:
    users = await req.app[PRESENCE].get(req.principal, user_ids=[], room_id=req.path["room_id"])
    return PresenceListOut(users=[PresenceOut.model_validate(u) for u in users])


@api.route("GET", "/api/users/{user_id}/presence", summary="A user's presence and devices", tags=TAGS,
           response=PresenceOut)
async def user_presence(req: ApiRequest[None, None]) -> PresenceOut:
    (user,) = await req.app[PRESENCE].get(req.principal, user_ids=[req.path["user_id"]], room_id=None)
    return PresenceOut.model_validate(user)
