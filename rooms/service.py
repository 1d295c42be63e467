"""The rules of rooms and messages: who may do what, sequence, idempotency, sync and acknowledgements.

Everything that changes a room (a message, an edit, a recall, a pin, a member joining or
leaving, a rename) is an event in the room's one sequence, numbered by the storage. A client
that remembers the last sequence it saw can always catch up without holes. Room and
membership changes, edits, recalls and pins are also written to the audit log (the
original text of an edited or recalled message is kept there and nowhere else).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rooms.files.service import FileService
from rooms.search import query_tokens, tokenize
from server.audit.service import AuditLog, case_chain
from server.auth.service import Principal
from server.errors import AppError, BadRequest, Conflict, NotFound
from server.ids import new_id, now_ms
from server.logging import get_logger
from server.permissions import Permissions
from server.scheduler import Scheduler
from server.settings import RoomsSettings
from server.storage.ports import Storage, StorageConflict
from server.storage.records import (
    MESSAGE_KINDS,
    Job,
    MemberRole,
    Membership,
    MessageAck,
    Room,
    RoomEvent,
    RoomKind,
    StoredFile,
    User,
)

log = get_logger("muster.rooms")
ACK_JOB = "rooms.ack_renotify"
MANAGERS = ("owner", "admin")


class RoomNotifier(Protocol):
    """How the service reaches devices (implemented over the socket gateway)."""

    async def room_event(self, room_id: str, event: RoomEvent) -> None:
        """Deliver an event to every connected device of every member."""

    async def to_user(self, user_id: str, name: str, data: dict[str, Any]) -> None:
        """Deliver to every connected device of one user."""

    async def join(self, user_id: str, room_id: str) -> None:
        """The user's sockets start receiving the room's events."""

    async def leave(self, user_id: str, room_id: str) -> None: ...

    async def typing(self, room_id: str, user_id: str, typing: bool, *, skip_sid: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class RoomAccess:
    """A room and the asking user's membership in it (None: not a member)."""

    room: Room
    member: Membership | None

    @property
    def is_manager(self) -> bool:
        return self.member is not None and self.member.role in MANAGERS


@dataclass(frozen=True, slots=True)
class RoomSummary:
    room: Room
    member: Membership
    unread: int


@dataclass(frozen=True, slots=True)
class RoomSync:
    room: Room
    member: Membership
    events: list[RoomEvent]
    has_more: bool
    unread: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    rooms: list[RoomSync]
    left: list[str]


@dataclass(frozen=True, slots=True)
class AckStatus:
    message_id: str
    required: list[str]
    acknowledged: list[MessageAck]
    pending: list[str]
    stopped: bool


@dataclass
class _Names:
    """Display names for system message texts, looked up once per call."""

    storage: Storage
    cache: dict[str, str] = field(default_factory=dict)

    async def __call__(self, user_id: str | None) -> str:
        if user_id is None:
            return "系统"
        if user_id not in self.cache:
            user = await self.storage.get_user(user_id)
            self.cache[user_id] = user.display_name if user else user_id
        return self.cache[user_id]


# -- permission rules (pure), registered at start ------------------------------------------------


def _member(principal: Principal, access: RoomAccess) -> bool:
    return access.member is not None


def _sender(principal: Principal, access: RoomAccess) -> bool:
    return access.member is not None and not access.room.archived


def _manager(principal: Principal, access: RoomAccess) -> bool:
    return access.is_manager and not access.room.archived


def _may_create(principal: Principal, kind: str) -> bool:
    if kind == "group":
        return True
    if kind == "department":
        return principal.user.has_role("admin")
    return principal.user.has_role("admin", "commander")  # incident and project rooms


ROOM_RULES = {
    "room.read": _member,
    "room.send": _sender,
    "room.manage": _manager,
    "room.archive": lambda p, a: a.is_manager,
    "room.create": _may_create,
}


def register_room_rules(permissions: Permissions) -> None:
    for action, rule in ROOM_RULES.items():
        permissions.register(action, rule)  # all judge a room (room.create: the kind of room)


def event_out(event: RoomEvent) -> dict[str, Any]:
    """The wire form of an event (socket payloads and HTTP answers)."""
    return {
        "id": event.id, "room_id": event.room_id, "seq": event.seq, "kind": event.kind,
        "sender_id": event.sender_id, "device_id": event.device_id, "client_id": event.client_id,
        "created_at": event.created_at, "body": event.body, "target_id": event.target_id,
        "edited_at": event.edited_at, "recalled_at": event.recalled_at, "pinned": event.pinned,
    }


class RoomService:
    def __init__(
        self,
        *,
        storage: Storage,
        audit: AuditLog,
        permissions: Permissions,
        notifier: RoomNotifier,
        scheduler: Scheduler,
        settings: RoomsSettings,
        files: FileService | None = None,
    ) -> None:
        self._storage = storage
        self._files = files
        self._audit = audit
        self._permissions = permissions
        self._notify = notifier
        self._scheduler = scheduler
        self._settings = settings
        scheduler.register(ACK_JOB, self._renotify_pending_acks)

    # -- access ---------------------------------------------------------------------------------

    async def access(self, principal: Principal, room_id: str, action: str = "room.read") -> RoomAccess:
        """Load the room and the asker's membership; refuse (audited) unless they may `action`."""
        room, member = await self._storage.get_room_member(room_id, principal.user_id)
        if room is None:
            raise NotFound("no such room", code="room.not_found")
        access = RoomAccess(room, member)
        if member is None:
            await self._permissions.require(principal, action, access, subject_type="room", subject_id=room_id,
                                            code="room.not_member", message="you are not a member of this room")
        if (action == "room.send" and room.archived) or (action == "room.manage" and room.archived):
            raise Conflict("this room is archived", code="room.archived")
        await self._permissions.require(principal, action, access, subject_type="room", subject_id=room_id,
                                        code="room.forbidden", message="only the room's owner or admins may do this")
        return access

    def _chain(self, room: Room) -> str:
        if room.case_type and room.case_id:
            return case_chain(room.case_type, room.case_id)
        return f"room:{room.id}"

    async def _record(self, room: Room, actor: Principal | None, action: str, subject_type: str, subject_id: str,
                      details: dict[str, Any]) -> None:
        await self._audit.record(
            chain=self._chain(room), action=action, subject_type=subject_type, subject_id=subject_id,
            actor_id=actor.user_id if actor else None, device_id=actor.device_id if actor else None,
            details={"room_id": room.id, **details},
        )

    async def _append(self, event: RoomEvent, *, tokens: list[str] | None = None) -> tuple[RoomEvent, bool]:
        try:
            stored, created = await self._storage.append_event(event, search_tokens=tokens)
        except LookupError:
            raise NotFound("no such room", code="room.not_found") from None
        if created:
            await self._notify.room_event(stored.room_id, stored)
        return stored, created

    async def _system_event(self, room: Room, actor: Principal | None, kind: str, body: dict[str, Any]) -> RoomEvent:
        event = RoomEvent(
            id=new_id(), room_id=room.id, seq=0, kind=kind,  # type: ignore[arg-type]
            sender_id=actor.user_id if actor else None, device_id=actor.device_id if actor else None,
            client_id=None, created_at=now_ms(), body=body,
        )
        stored, _ = await self._append(event)
        return stored

    async def _check_users(self, user_ids: Iterable[str]) -> list[User]:
        users = []
        for user_id in dict.fromkeys(user_ids):
            user = await self._storage.get_user(user_id)
            if user is None or user.disabled:
                raise BadRequest(f"no active user {user_id}", code="room.unknown_user")
            users.append(user)
        return users

    # -- rooms ----------------------------------------------------------------------------------

    async def create_room(
        self,
        actor: Principal,
        *,
        kind: RoomKind,
        name: str,
        topic: str = "",
        member_ids: list[str] | None = None,
        department_id: str | None = None,
        case_type: str | None = None,
        case_id: str | None = None,
    ) -> Room:
        """Create a room; the creator is its owner. A department room takes in the department's people."""
        if not self._permissions.allows(actor, "room.create", kind):
            await self._permissions.require(actor, "room.create", kind, subject_type="room", subject_id="new",
                                            message=f"you may not create {kind} rooms")
        if kind == "department":
            if department_id is None or await self._storage.get_department(department_id) is None:
                raise BadRequest("a department room needs an existing department_id", code="room.bad_department")
            people = await self._department_people(department_id)
            member_ids = [*(member_ids or []), *(u.id for u in people)]
        elif department_id is not None:
            raise BadRequest("only department rooms follow a department", code="room.bad_department")
        if (case_type is None) != (case_id is None) or (case_type is not None and case_type != kind):
            raise BadRequest("case_type and case_id go together and match the room kind", code="room.bad_case")
        others = [u for u in await self._check_users(member_ids or []) if u.id != actor.user_id]
        return await self._create(actor, kind=kind, name=name, topic=topic, others=[u.id for u in others],
                                  department_id=department_id, case_type=case_type, case_id=case_id)

    async def create_case_room(
        self, *, kind: RoomKind, name: str, case_type: str, case_id: str, owner_id: str, member_ids: list[str],
        actor: Principal | None = None,
    ) -> Room:
        """For workflows: the room of an incident or project, owned by the case's commander."""
        others = [u.id for u in await self._check_users(member_ids) if u.id != owner_id]
        return await self._create(actor, kind=kind, name=name, topic="", others=others, owner_id=owner_id,
                                  case_type=case_type, case_id=case_id)

    async def _create(
        self, actor: Principal | None, *, kind: RoomKind, name: str, topic: str, others: list[str],
        owner_id: str | None = None, department_id: str | None = None, case_type: str | None = None,
        case_id: str | None = None, direct_key: str | None = None,
    ) -> Room:
        now = now_ms()
        owner = owner_id or (actor.user_id if actor else None)
        room = Room(id=new_id(), kind=kind, name=name, topic=topic, archived=False,
                    created_by=actor.user_id if actor else None, created_at=now, updated_at=now,
                    department_id=department_id, case_type=case_type, case_id=case_id, direct_key=direct_key)
        members = [Membership(room.id, owner, "owner" if kind != "direct" else "member", now)] if owner else []
        members += [Membership(room.id, uid, "member", now) for uid in dict.fromkeys(others) if uid != owner]
        await self._storage.create_room(room, members)
        for m in members:
            await self._notify.join(m.user_id, room.id)
        names = _Names(self._storage)
        await self._system_event(room, actor, "room", {
            "action": "create", "name": name, "topic": topic, "user_ids": [m.user_id for m in members],
            "text": f"{await names(actor.user_id if actor else None)} 创建了「{name}」",
        })
        await self._record(room, actor, "room.create", "room", room.id, {
            "kind": kind, "name": name, "members": [m.user_id for m in members],
            "department_id": department_id, "case_type": case_type, "case_id": case_id,
        })
        for m in members:
            await self._notify.to_user(m.user_id, "room.joined", {"room_id": room.id})
        stored = await self._storage.get_room(room.id)
        assert stored is not None
        return stored

    async def open_direct(self, actor: Principal, other_id: str) -> Room:
        """The direct chat between the asker and another user (created on first use)."""
        if other_id == actor.user_id:
            raise BadRequest("a direct chat needs another user", code="room.bad_direct")
        (other,) = await self._check_users([other_id])
        key = "|".join(sorted((actor.user_id, other.id)))
        room = await self._storage.find_direct_room(key)
        if room is not None:
            return room
        try:
            return await self._create(actor, kind="direct", name="", topic="", others=[other.id], direct_key=key)
        except StorageConflict:  # the other side opened it at the same moment
            room = await self._storage.find_direct_room(key)
            assert room is not None
            return room

    async def unread(self, actor: Principal, room_id: str, read_seq: int) -> int:
        return await self._storage.count_unread(room_id, actor.user_id, read_seq)

    async def room_ids_of(self, user_id: str) -> list[str]:
        return [room.id for room, _ in await self._storage.list_user_rooms(user_id)]

    async def list_rooms(self, actor: Principal) -> list[RoomSummary]:
        """My rooms, the one with the latest event first."""
        out = []
        for room, member in await self._storage.list_user_rooms(actor.user_id):
            unread = await self._storage.count_unread(room.id, actor.user_id, member.read_seq)
            newest = await self._storage.list_events(room.id, limit=1)
            out.append((newest[0].created_at if newest else room.created_at, RoomSummary(room, member, unread)))
        out.sort(key=lambda pair: pair[0], reverse=True)
        return [summary for _, summary in out]

    async def update_room(self, actor: Principal, room_id: str, *, name: str | None, topic: str | None) -> Room:
        access = await self.access(actor, room_id, "room.manage")
        room = access.room
        if room.kind == "direct":
            raise BadRequest("a direct chat has no name or topic", code="room.bad_direct")
        updated = replace(room, name=name if name is not None else room.name,
                          topic=topic if topic is not None else room.topic, updated_at=now_ms())
        if (updated.name, updated.topic) == (room.name, room.topic):
            return room
        await self._storage.update_room(updated)
        who = await _Names(self._storage)(actor.user_id)
        if updated.name != room.name:
            await self._system_event(room, actor, "room", {"action": "rename", "name": updated.name,
                                                           "text": f"{who} 将名称改为「{updated.name}」"})
        if updated.topic != room.topic:
            await self._system_event(room, actor, "room", {"action": "topic", "topic": updated.topic,
                                                           "text": f"{who} 修改了公告"})
        await self._record(room, actor, "room.update", "room", room.id,
                           {"before": {"name": room.name, "topic": room.topic},
                            "after": {"name": updated.name, "topic": updated.topic}})
        return await self._get(room.id)

    async def archive_room(self, actor: Principal, room_id: str) -> Room:
        access = await self.access(actor, room_id, "room.archive")
        room = access.room
        if room.archived:
            return room
        await self._storage.update_room(replace(room, archived=True, updated_at=now_ms()))
        who = await _Names(self._storage)(actor.user_id)
        await self._system_event(room, actor, "room", {"action": "archive", "text": f"{who} 归档了「{room.name}」"})
        await self._record(room, actor, "room.archive", "room", room.id, {})
        return await self._get(room.id)

    async def _get(self, room_id: str) -> Room:
        room = await self._storage.get_room(room_id)
        if room is None:
            raise NotFound("no such room", code="room.not_found")
        return room

    async def list_members(self, actor: Principal, room_id: str) -> list[Membership]:
        await self.access(actor, room_id)
        return await self._storage.list_members(room_id)

    async def invite(self, actor: Principal, room_id: str, user_ids: list[str]) -> list[Membership]:
        access = await self.access(actor, room_id, "room.manage")
        room = access.room
        if room.kind in ("direct", "department"):
            raise BadRequest(f"members of a {room.kind} room are not invited", code="room.fixed_membership")
        users = await self._check_users(user_ids)
        return await self._add_members(room, actor, [u.id for u in users], action="invite")

    async def _add_members(self, room: Room, actor: Principal | None, user_ids: list[str], *,
                           action: str) -> list[Membership]:
        added = []
        now = now_ms()
        for user_id in user_ids:
            member = Membership(room.id, user_id, "member", now)
            if await self._storage.add_member(member):
                added.append(member)
                await self._notify.join(user_id, room.id)
        if not added:
            return []
        names = _Names(self._storage)
        joined = "、".join([await names(m.user_id) for m in added])
        text = f"{await names(actor.user_id if actor else None)} 邀请 {joined} 加入" if action == "invite" \
            else f"{joined} 加入了"
        await self._system_event(room, actor, "member", {"action": action, "user_ids": [m.user_id for m in added],
                                                         "text": text})
        await self._record(room, actor, f"room.member_{action}", "room", room.id,
                           {"user_ids": [m.user_id for m in added]})
        for m in added:
            await self._notify.to_user(m.user_id, "room.joined", {"room_id": room.id})
        return added

    async def add_case_members(self, room_id: str, user_ids: list[str], *, actor: Principal | None) -> None:
        """For workflows: bring the people a case needs (assignees, department leads) into its room."""
        room = await self._get(room_id)
        users = await self._check_users(user_ids)
        await self._add_members(room, actor, [u.id for u in users], action="case")

    async def remove_member(self, actor: Principal, room_id: str, user_id: str) -> None:
        if user_id == actor.user_id:
            return await self.leave(actor, room_id)
        access = await self.access(actor, room_id, "room.manage")
        room = access.room
        if room.kind in ("direct", "department"):
            raise BadRequest(f"members of a {room.kind} room are not removed by hand", code="room.fixed_membership")
        target = await self._storage.get_member(room_id, user_id)
        if target is None:
            raise NotFound("not a member of this room", code="room.member_not_found")
        if target.role == "owner" or (target.role == "admin" and access.member and access.member.role != "owner"):
            raise BadRequest("only the owner removes admins, and nobody removes the owner",
                             code="room.forbidden")
        await self._drop_member(room, actor, user_id, action="remove")

    async def _drop_member(self, room: Room, actor: Principal | None, user_id: str, *, action: str) -> None:
        names = _Names(self._storage)
        who = await names(user_id)
        text = f"{who} 退出了" if action in ("leave", "department") else \
            f"{await names(actor.user_id if actor else None)} 将 {who} 移出"
        # The event goes out before the member does, so their devices see why they left.
        await self._system_event(room, actor, "member", {"action": action, "user_ids": [user_id], "text": text})
        await self._storage.remove_member(room.id, user_id)
        await self._notify.leave(user_id, room.id)
        await self._notify.to_user(user_id, "room.left", {"room_id": room.id, "reason": action})
        await self._record(room, actor, f"room.member_{action}", "room", room.id, {"user_ids": [user_id]})

    async def leave(self, actor: Principal, room_id: str) -> None:
        access = await self.access(actor, room_id)
        room, me = access.room, access.member
        assert me is not None
        if room.kind in ("department", "direct"):
            raise BadRequest(f"nobody leaves a {room.kind} room", code="room.fixed_membership")
        if me.role == "owner":
            # Ownership passes to the longest-standing admin, else the longest-standing member.
            others = [m for m in await self._storage.list_members(room_id) if m.user_id != actor.user_id]
            heir = next((m for m in others if m.role == "admin"), others[0] if others else None)
            if heir is not None:
                await self._storage.set_member_role(room_id, heir.user_id, "owner")
                await self._record(room, actor, "room.member_role", "room", room.id,
                                   {"user_id": heir.user_id, "role": "owner", "reason": "owner_left"})
        await self._drop_member(room, actor, actor.user_id, action="leave")

    async def set_role(self, actor: Principal, room_id: str, user_id: str, role: MemberRole) -> Membership:
        access = await self.access(actor, room_id, "room.manage")
        room, me = access.room, access.member
        assert me is not None
        if room.kind == "direct":
            raise BadRequest("a direct chat has no roles", code="room.bad_direct")
        target = await self._storage.get_member(room_id, user_id)
        if target is None:
            raise NotFound("not a member of this room", code="room.member_not_found")
        if me.role != "owner" and (role == "owner" or target.role == "owner"):
            raise BadRequest("only the owner hands over ownership", code="room.forbidden")
        if target.role == role:
            return target
        await self._storage.set_member_role(room_id, user_id, role)
        if role == "owner":  # one owner: the old one becomes an admin
            await self._storage.set_member_role(room_id, actor.user_id, "admin")
        names = _Names(self._storage)
        label = {"owner": "群主", "admin": "管理员", "member": "成员"}[role]
        await self._system_event(room, actor, "member", {
            "action": "role", "user_ids": [user_id], "role": role,
            "text": f"{await names(actor.user_id)} 将 {await names(user_id)} 设为{label}"})
        await self._record(room, actor, "room.member_role", "room", room.id, {"user_id": user_id, "role": role})
        updated = await self._storage.get_member(room_id, user_id)
        assert updated is not None
        return updated

    # -- department rooms follow the department ---------------------------------------------

    async def _department_people(self, department_id: str) -> list[User]:
        people, after = [], None
        while True:
            page = await self._storage.list_users(department_id=department_id, after_id=after, limit=500)
            people += [u for u in page if not u.disabled]
            if len(page) < 500:
                return people
            after = page[-1].id

    async def user_changed(self, before: User | None, after: User) -> None:
        """Keep department rooms in step when a user joins, moves or is disabled."""
        old = before.department_id if before and not before.disabled else None
        new = after.department_id if not after.disabled else None
        if old == new:
            return
        if old is not None:
            for room in await self._storage.find_rooms(department_id=old):
                if await self._storage.get_member(room.id, after.id):
                    await self._drop_member(room, None, after.id, action="department")
        if new is not None:
            for room in await self._storage.find_rooms(department_id=new):
                if not room.archived:
                    await self._add_members(room, None, [after.id], action="department")

    # -- messages -------------------------------------------------------------------------------

    def _check_text(self, text: str) -> None:
        if not text.strip():
            raise BadRequest("a message needs text", code="message.empty")
        if len(text) > self._settings.max_text_length:
            raise BadRequest(f"a message has at most {self._settings.max_text_length} characters",
                             code="message.too_long")

    async def _check_mentions(self, room_id: str, mentions: list[str]) -> list[str]:
        for user_id in dict.fromkeys(mentions):
            if await self._storage.get_member(room_id, user_id) is None:
                raise BadRequest(f"{user_id} is not in this room", code="message.bad_mention")
        return list(dict.fromkeys(mentions))

    async def send_message(
        self,
        actor: Principal,
        *,
        room_id: str,
        client_id: str,
        text: str,
        mentions: list[str] | None = None,
        mention_all: bool = False,
        reply_to: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        ack_all: bool = False,
        ack_user_ids: list[str] | None = None,
        ack_requested: bool = False,
    ) -> tuple[RoomEvent, bool]:
        """Store and deliver a message; a resend with the same client_id returns the stored one."""
        access = await self.access(actor, room_id, "room.send")
        files: list[dict[str, Any]] = []
        if attachments:
            if self._files is None:
                raise BadRequest("file attachments are not available here", code="message.attachments_unavailable")
            files = await self._files.attachments(actor, attachments)
        if text or not files:
            self._check_text(text)
        mentions = await self._check_mentions(room_id, mentions or [])
        if reply_to is not None:
            target = await self._storage.get_event(room_id, reply_to)
            if target is None or target.kind not in MESSAGE_KINDS:
                raise BadRequest("reply_to must name a message of this room", code="message.bad_reply")
        body: dict[str, Any] = {"text": text, "mentions": mentions, "mention_all": mention_all,
                                "reply_to": reply_to, "attachments": files}
        if ack_requested or ack_all or ack_user_ids:
            if ack_all:
                required = [m.user_id for m in await self._storage.list_members(room_id)
                            if m.user_id != actor.user_id]
            else:
                required = [u for u in await self._check_mentions(room_id, ack_user_ids or [])
                            if u != actor.user_id]
            if not required:
                raise BadRequest("nobody to ask for acknowledgement", code="message.bad_ack")
            body["ack"] = {"all": ack_all, "user_ids": required, "stopped": False}
        event = RoomEvent(id=new_id(), room_id=room_id, seq=0, kind="message", sender_id=actor.user_id,
                          device_id=actor.device_id, client_id=client_id, created_at=now_ms(), body=body)
        if files:
            await self._link_files(access.room, actor, event.id, files)
        tokens = tokenize(" ".join([text, *(f["name"] for f in files)]))
        stored, created = await self._append(event, tokens=tokens)
        if files and not created:
            # A resend: the stored message carries the files; forget the links made for this copy.
            assert self._files is not None
            await self._files.unlink("message", event.id)
        if created:
            await self._after_send(stored, actor)
        return stored, created

    async def _link_files(self, room: Room, actor: Principal, message_id: str, files: list[dict[str, Any]]) -> None:
        # Linked before the message is stored: once members can see it, they can open its files.
        assert self._files is not None
        await self._files.link([f["file_id"] for f in files], scope_type="room", scope_id=room.id,
                               target_type="message", target_id=message_id, actor=actor)
        for f in files:
            await self._record(room, actor, "file.attach", "file", f["file_id"],
                               {"message_id": message_id, "name": f["name"], "sha256": f["sha256"],
                                "size": f["size"]})

    async def check_share(self, actor: Principal, room_id: str) -> None:
        """Refuse an upload meant for a room the actor may not post in."""
        await self.access(actor, room_id, "room.send")

    async def share_file(self, actor: Principal, room_id: str, *, client_id: str, file: StoredFile) -> None:
        """Post a finished upload to the room it was meant for (idempotent on client_id)."""
        await self.send_message(actor, room_id=room_id, client_id=client_id, text="",
                                attachments=[{"file_id": file.id, "name": file.name}])

    async def may_read_room(self, principal: Principal, room_id: str) -> bool:
        """Whether the user is a member (files shared in a room are visible to its members)."""
        return await self._storage.get_member(room_id, principal.user_id) is not None

    async def _after_send(self, event: RoomEvent, actor: Principal) -> None:
        body = event.body
        notice = {"room_id": event.room_id, "event_id": event.id, "seq": event.seq, "sender_id": actor.user_id}
        for user_id in body.get("mentions", []):
            if user_id != actor.user_id:
                await self._notify.to_user(user_id, "mention", notice)
        ack = body.get("ack")
        if ack:
            for user_id in ack["user_ids"]:
                await self._notify.to_user(user_id, "ack.requested", notice)
            await self._scheduler.schedule(
                ACK_JOB, job_id=f"ack:{event.id}", due_at=now_ms() + self._settings.ack_renotify_interval * 1000,
                payload={"room_id": event.room_id, "message_id": event.id},
            )

    async def post_system_message(self, room_id: str, text: str, data: dict[str, Any] | None = None, *,
                                  actor: Principal | None = None) -> RoomEvent:
        """A message from Muster itself (workflow steps); it is searchable like any message."""
        event = RoomEvent(id=new_id(), room_id=room_id, seq=0, kind="system",
                          sender_id=actor.user_id if actor else None, device_id=actor.device_id if actor else None,
                          client_id=None, created_at=now_ms(), body={"text": text, "data": data or {}})
        stored, _ = await self._append(event, tokens=tokenize(text))
        return stored

    async def _own_message(self, actor: Principal, room_id: str, message_id: str, window_s: int,
                           verb: str) -> tuple[RoomAccess, RoomEvent]:
        access = await self.access(actor, room_id, "room.send")
        message = await self._storage.get_event(room_id, message_id)
        if message is None or message.kind != "message":
            raise NotFound("no such message", code="message.not_found")
        if message.sender_id != actor.user_id:
            raise AppError(f"only the sender may {verb} a message", code="message.not_sender", status=403)
        if message.recalled_at is not None:
            raise Conflict("the message was recalled", code="message.recalled")
        if now_ms() - message.created_at > window_s * 1000:
            raise Conflict(f"messages can be {verb}ed for {window_s} seconds after sending",
                           code="message.window_passed")
        return access, message

    async def edit_message(self, actor: Principal, room_id: str, message_id: str, *, text: str,
                           mentions: list[str] | None = None, mention_all: bool = False) -> RoomEvent:
        access, message = await self._own_message(actor, room_id, message_id, self._settings.edit_window, "edit")
        self._check_text(text)
        mentions = await self._check_mentions(room_id, mentions or [])
        now = now_ms()
        body = {**message.body, "text": text, "mentions": mentions, "mention_all": mention_all}
        await self._record(access.room, actor, "message.edit", "message", message_id,
                           {"original": message.body.get("text", ""), "text": text})
        await self._storage.update_message(room_id, message_id, body=body, edited_at=now, search_tokens=tokenize(text))
        event, _ = await self._append(RoomEvent(
            id=new_id(), room_id=room_id, seq=0, kind="edit", sender_id=actor.user_id, device_id=actor.device_id,
            client_id=None, created_at=now, target_id=message_id,
            body={"text": text, "mentions": mentions, "mention_all": mention_all}))
        return event

    async def recall_message(self, actor: Principal, room_id: str, message_id: str) -> RoomEvent:
        access, message = await self._own_message(actor, room_id, message_id, self._settings.recall_window,
                                                  "recall")
        now = now_ms()
        # The original text stays in the audit log only: history and search forget it.
        await self._record(access.room, actor, "message.recall", "message", message_id,
                           {"original": message.body})
        await self._storage.update_message(room_id, message_id, body={}, recalled_at=now, search_tokens=[])
        if message.body.get("attachments") and self._files is not None:
            # The message no longer carries its files; a case or another message that refers to them keeps them.
            await self._files.unlink("message", message_id)
        await self._scheduler.cancel(f"ack:{message_id}")
        who = await _Names(self._storage)(actor.user_id)
        event, _ = await self._append(RoomEvent(
            id=new_id(), room_id=room_id, seq=0, kind="recall", sender_id=actor.user_id, device_id=actor.device_id,
            client_id=None, created_at=now, target_id=message_id, body={"text": f"{who} 撤回了一条消息"}))
        return event

    async def pin_message(self, actor: Principal, room_id: str, message_id: str, *, pinned: bool) -> RoomEvent:
        access = await self.access(actor, room_id, "room.manage")
        message = await self._storage.get_event(room_id, message_id)
        if message is None or message.kind not in MESSAGE_KINDS or message.recalled_at is not None:
            raise NotFound("no such message", code="message.not_found")
        await self._storage.update_message(room_id, message_id, pinned=pinned)
        await self._record(access.room, actor, "message.pin" if pinned else "message.unpin", "message", message_id,
                           {})
        who = await _Names(self._storage)(actor.user_id)
        event, _ = await self._append(RoomEvent(
            id=new_id(), room_id=room_id, seq=0, kind="pin" if pinned else "unpin", sender_id=actor.user_id,
            device_id=actor.device_id, client_id=None, created_at=now_ms(), target_id=message_id,
            body={"text": f"{who} {'置顶' if pinned else '取消置顶'}了一条消息"}))
        return event

    # -- reading --------------------------------------------------------------------------------

    async def history(self, actor: Principal, room_id: str, *, after_seq: int | None = None,
                      before_seq: int | None = None, limit: int = 50) -> tuple[list[RoomEvent], bool]:
        """A page of events; `has_more` says whether more lie beyond it in the paging direction."""
        if after_seq is not None and before_seq is not None:
            raise BadRequest("give after_seq or before_seq, not both", code="request.invalid")
        access = await self.access(actor, room_id)
        limit = min(limit, self._settings.page_limit)
        last = access.room.last_seq
        if after_seq is not None and after_seq > last:
            raise BadRequest(f"after_seq is past the room's last sequence ({last})", code="room.bad_seq")
        events = await self._storage.list_events(room_id, after_seq=after_seq, before_seq=before_seq, limit=limit)
        if after_seq is not None:
            has_more = bool(events) and events[-1].seq < last
        else:
            has_more = bool(events) and events[0].seq > 1
        return events, has_more

    async def sync(self, actor: Principal, known: dict[str, int], *, limit: int = 100) -> SyncResult:
        """What a reconnecting device missed, room by room, with unread counts.

        Rooms the device knows get the events after the sequence it holds (a page; ask again
        while `has_more`); rooms it does not know get their newest page. Rooms it knows but
        the user left are listed in `left`.
        """
        limit = min(limit, self._settings.page_limit)
        result = []
        mine = await self._storage.list_user_rooms(actor.user_id)
        for room, member in mine:
            seen = known.get(room.id)
            if seen is not None and seen >= room.last_seq:
                events: list[RoomEvent] = []
                has_more = False
            elif seen is None:
                events = await self._storage.list_events(room.id, limit=limit)
                has_more = bool(events) and events[0].seq > 1
            else:
                events = await self._storage.list_events(room.id, after_seq=seen, limit=limit)
                has_more = bool(events) and events[-1].seq < room.last_seq
            unread = await self._storage.count_unread(room.id, actor.user_id, member.read_seq)
            result.append(RoomSync(room, member, events, has_more, unread))
        member_of = {room.id for room, _ in mine}
        return SyncResult(rooms=result, left=[room_id for room_id in known if room_id not in member_of])

    async def mark_read(self, actor: Principal, room_id: str, seq: int) -> int:
        """Move the user's read position (shared by all their devices) and tell their other devices."""
        await self.access(actor, room_id)
        position = await self._storage.mark_read(room_id, actor.user_id, seq)
        await self._notify.to_user(actor.user_id, "room.read", {"room_id": room_id, "read_seq": position})
        return position

    async def typing(self, actor: Principal, room_id: str, typing: bool, *, sid: str | None) -> None:
        await self.access(actor, room_id, "room.send")
        await self._notify.typing(room_id, actor.user_id, typing, skip_sid=sid)

    async def search(self, actor: Principal, query: str, *, room_id: str | None = None, limit: int = 30,
                     before_id: str | None = None) -> list[RoomEvent]:
        """Messages in the user's rooms (or one of them) that hold every word of `query`."""
        tokens = query_tokens(query)
        if not tokens:
            raise BadRequest("the query has no words to search for", code="search.empty")
        if room_id is not None:
            await self.access(actor, room_id)
            rooms = [room_id]
        else:
            rooms = [room.id for room, _ in await self._storage.list_user_rooms(actor.user_id)]
        if not rooms:
            return []
        return await self._storage.search_messages(rooms, tokens, limit=limit, before_id=before_id)

    # -- acknowledgements (回执) ----------------------------------------------------------------

    async def _ack_message(self, actor: Principal, room_id: str, message_id: str) -> tuple[RoomAccess, RoomEvent]:
        access = await self.access(actor, room_id)
        message = await self._storage.get_event(room_id, message_id)
        if message is None or message.kind != "message" or not message.body.get("ack"):
            raise NotFound("no acknowledgement was asked for this message", code="ack.not_requested")
        return access, message

    async def acknowledge(self, actor: Principal, room_id: str, message_id: str) -> MessageAck:
        """Record that the asker has seen the message (person, device, time); tell the sender."""
        _, message = await self._ack_message(actor, room_id, message_id)
        if actor.user_id not in message.body["ack"]["user_ids"]:
            raise BadRequest("your acknowledgement was not asked for", code="ack.not_required")
        ack = MessageAck(room_id=room_id, message_id=message_id, user_id=actor.user_id, device_id=actor.device_id,
                         at=now_ms())
        if not await self._storage.add_message_ack(ack):
            existing = next(a for a in await self._storage.list_message_acks(room_id, message_id)
                            if a.user_id == actor.user_id)
            return existing
        notice = {"room_id": room_id, "message_id": message_id, "user_id": ack.user_id, "device_id": ack.device_id,
                  "at": ack.at}
        if message.sender_id:
            await self._notify.to_user(message.sender_id, "message.acked", notice)
        await self._notify.to_user(actor.user_id, "message.acked", notice)  # the asker's other devices
        status = await self.ack_status(actor, room_id, message_id, check=False)
        if not status.pending:
            await self._scheduler.cancel(f"ack:{message_id}")
        return ack

    async def ack_status(self, actor: Principal, room_id: str, message_id: str, *, check: bool = True) -> AckStatus:
        if check:
            _, message = await self._ack_message(actor, room_id, message_id)
        else:
            found = await self._storage.get_event(room_id, message_id)
            assert found is not None
            message = found
        acks = await self._storage.list_message_acks(room_id, message_id)
        required = list(message.body["ack"]["user_ids"])
        done = {a.user_id for a in acks}
        return AckStatus(message_id=message_id, required=required, acknowledged=acks,
                         pending=[u for u in required if u not in done],
                         stopped=bool(message.body["ack"].get("stopped")))

    async def stop_ack_requests(self, actor: Principal, room_id: str, message_id: str) -> AckStatus:
        """The sender stops the reminders (acknowledgements can still be given)."""
        access, message = await self._ack_message(actor, room_id, message_id)
        if message.sender_id != actor.user_id and not access.is_manager:
            raise AppError("only the sender or a room admin stops the reminders", code="message.not_sender",
                           status=403)
        body = {**message.body, "ack": {**message.body["ack"], "stopped": True}}
        await self._storage.update_message(room_id, message_id, body=body)
        await self._scheduler.cancel(f"ack:{message_id}")
        await self._record(access.room, actor, "message.ack_stop", "message", message_id, {})
        return await self.ack_status(actor, room_id, message_id, check=False)

    async def _renotify_pending_acks(self, job: Job) -> int | None:
        room_id, message_id = str(job.payload["room_id"]), str(job.payload["message_id"])
        message = await self._storage.get_event(room_id, message_id)
        if message is None or message.recalled_at is not None or not message.body.get("ack"):
            return None
        if message.body["ack"].get("stopped"):
            return None
        done = {a.user_id for a in await self._storage.list_message_acks(room_id, message_id)}
        members = {m.user_id for m in await self._storage.list_members(room_id)}
        pending = [u for u in message.body["ack"]["user_ids"] if u not in done and u in members]
        if not pending:
            return None
        notice = {"room_id": room_id, "event_id": message_id, "seq": message.seq, "sender_id": message.sender_id,
                  "reminder": True}
        for user_id in pending:
            await self._notify.to_user(user_id, "ack.requested", notice)
        log.info("acknowledgement reminders sent", message_id=message_id, pending=len(pending))
        return now_ms() + self._settings.ack_renotify_interval * 1000
