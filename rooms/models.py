"""Payloads (HTTP bodies and socket events) and responses of rooms and messages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from server.schemas import Id, Name, Out, Payload, Query

ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Topic = Annotated[str, StringConstraints(max_length=1000)]
# The service applies rooms.max_text_length; this is the hard ceiling of the wire format.
Text = Annotated[str, StringConstraints(max_length=20000)]
Seq = Annotated[int, Field(ge=0, le=2**53)]
PageLimit = Annotated[int, Field(ge=1, le=500)]
UserIds = Annotated[list[Id], Field(max_length=500)]


class AttachmentRef(Payload):
    file_id: Id
    name: Annotated[str, StringConstraints(max_length=255)] = ""


class AckRequest(Payload):
    """Ask for acknowledgement (回执) from named members, or from everyone (`all`)."""

    all: bool = False
    user_ids: UserIds = Field(default_factory=list)


class MessageBody(Payload):
    """A message sent over HTTP to a room named in the path."""

    client_id: ClientId
    text: Text
    mentions: Annotated[list[Id], Field(max_length=100)] = Field(default_factory=list)
    mention_all: bool = False
    reply_to: Id | None = None
    attachments: Annotated[list[AttachmentRef], Field(max_length=20)] = Field(default_factory=list)
    ack: AckRequest | None = None


class EditBody(Payload):
    text: Text
    mentions: Annotated[list[Id], Field(max_length=100)] = Field(default_factory=list)
    mention_all: bool = False


class SendMessage(MessageBody):
    room_id: Id


class EditMessage(EditBody):
    room_id: Id
    message_id: Id


class MessageRef(Payload):
    room_id: Id
    message_id: Id


class CreateRoom(Payload):
    kind: Literal["incident", "project", "department", "group"]
    name: Name
    topic: Topic = ""
    member_ids: UserIds = Field(default_factory=list)
    department_id: Id | None = None
    case_type: Literal["incident", "project"] | None = None
    case_id: Id | None = None


class OpenDirect(Payload):
    user_id: Id


class UpdateRoomBody(Payload):
    name: Name | None = None
    topic: Topic | None = None


class UpdateRoom(UpdateRoomBody):
    room_id: Id


class RoomRef(Payload):
    room_id: Id


class InviteBody(Payload):
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]


class Invite(InviteBody):
    room_id: Id


class MemberRef(Payload):
    room_id: Id
    user_id: Id


class SetRoleBody(Payload):
    role: Literal["owner", "admin", "member"]


class SetRole(SetRoleBody):
    room_id: Id
    user_id: Id


class History(Payload):
    room_id: Id
    after_seq: Seq | None = None
    before_seq: Seq | None = None
    limit: PageLimit = 50


class HistoryQuery(Query):
    after_seq: Seq | None = None
    before_seq: Seq | None = None
    limit: PageLimit = 50


class Sync(Payload):
    """The last sequence the device holds for each room it knows."""

    rooms: Annotated[dict[Id, Seq], Field(max_length=2000)] = Field(default_factory=dict)
    limit: PageLimit = 100


class MarkReadBody(Payload):
    seq: Seq


class MarkRead(MarkReadBody):
    room_id: Id


class TypingPayload(Payload):
    room_id: Id
    typing: bool


class Search(Payload):
    query: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    room_id: Id | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 30
    before_id: Id | None = None


class SearchQuery(Query):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    room_id: Id | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 30
    before_id: Id | None = None


class SetPresence(Payload):
    state: Literal["online", "away", "busy"]


class GetPresence(Payload):
    user_ids: Annotated[list[Id], Field(max_length=500)] = Field(default_factory=list)
    room_id: Id | None = None


# -- responses ---------------------------------------------------------------------------


class RoomOut(Out):
    id: str
    kind: Literal["incident", "project", "department", "group", "direct"]
    name: str
    topic: str
    archived: bool
    department_id: str | None
    case_type: str | None
    case_id: str | None
    created_by: str | None
    created_at: int
    updated_at: int
    last_seq: int


class MemberOut(Out):
    room_id: str
    user_id: str
    role: Literal["owner", "admin", "member"]
    joined_at: int
    read_seq: int


class RoomSummaryOut(Out):
    room: RoomOut
    membership: MemberOut
    unread: int


class RoomListOut(Out):
    rooms: list[RoomSummaryOut]


class MemberListOut(Out):
    members: list[MemberOut]


class EventOut(Out):
    id: str
    room_id: str
    seq: int
    kind: Literal["message", "system", "edit", "recall", "pin", "unpin", "member", "room"]
    sender_id: str | None
    device_id: str | None
    client_id: str | None
    created_at: int
    body: dict[str, Any]
    target_id: str | None
    edited_at: int | None
    recalled_at: int | None
    pinned: bool


class EventPageOut(Out):
    events: list[EventOut]
    has_more: bool


class SentOut(Out):
    event: EventOut
    duplicate: bool


class ReadOut(Out):
    room_id: str
    read_seq: int


class AckOut(Out):
    user_id: str
    device_id: str | None
    at: int


class AckStatusOut(Out):
    message_id: str
    required: list[str]
    acknowledged: list[AckOut]
    pending: list[str]
    stopped: bool


class SearchOut(Out):
    events: list[EventOut]
    next_before: str | None


class DevicePresenceOut(Out):
    device_id: str
    kind: str
    state: str


class PresenceOut(Out):
    user_id: str
    state: Literal["online", "away", "busy", "offline"]
    devices: list[DevicePresenceOut]
    last_seen_at: int | None


class PresenceListOut(Out):
    users: list[PresenceOut]
