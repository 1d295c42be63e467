"""Consultations (视频会商), one-to-one calls and field video: who may do what, and the signalling.

A call belongs to a room (and so to its incident or project). Its state lives on the node that
hosts its media (the SFU is in-process); clients reach it over Socket.IO. The server is always
the offerer: a client asks to publish or subscribe, the SFU changes its transceivers and the
server sends an offer (in the answer to the request, or as `call.offer` when something else
changed), which the client answers with `call.answer`. No glare is possible.

Who may:
- start a call: members of the room who may post in it;
- join: members of the room, or the user named in a valid invitation (who then joins the room);
- publish, subscribe, mute themselves, leave: participants, on the device that joined;
- host controls (mute someone, remove someone, end for all, record, invite): the starter, the
  room's owner and admins, and commanders in the room;
- monitor a responder's device (多设备监听): commanders in an incident's room; the responder is told.
Every start, join, leave, host action, recording and monitoring is written to the audit log (the
case's chain for an incident or project room).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from media.tokens import Invitation, ice_servers, read_invitation, sign_invitation
from rooms.service import RoomService
from server.audit.service import AuditLog, case_chain
from server.auth.service import Principal
from server.errors import AppError, BadRequest, Conflict, Forbidden, NotFound
from server.ids import new_id, now_ms
from server.logging import get_logger
from server.settings import MediaSettings
from server.storage.ports import Storage
from server.storage.records import Room

log = get_logger("muster.media")
Kind = Literal["audio", "video"]
Source = Literal["camera", "microphone", "screen"]


class SfuPort(Protocol):
    """What the service needs of the forwarding core (media/sfu.py)."""

    async def connect(self, call_id: str, participant_id: str) -> None: ...

    async def publish(self, call_id: str, participant_id: str, *, kind: Kind, source: str) -> str: ...

    async def unpublish(self, call_id: str, participant_id: str, publication_id: str) -> None: ...

    async def subscribe(self, call_id: str, subscriber_id: str, publication_id: str) -> None: ...

    async def unsubscribe(self, call_id: str, subscriber_id: str, publication_id: str) -> None: ...

    async def negotiate(self, call_id: str, participant_id: str) -> Mapping[str, Any]: ...

    async def answer(self, call_id: str, participant_id: str, sdp: str) -> None: ...

    async def leave(self, call_id: str, participant_id: str) -> None: ...

    async def close_call(self, call_id: str) -> None: ...

    def set_forwarding(self, call_id: str, publication_id: str, enabled: bool) -> None: ...


class CallNotifier(Protocol):
    async def to_sid(self, sid: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None: ...


@dataclass
class Publication:
    id: str
    participant_id: str
    user_id: str
    kind: Kind
    source: Source
    muted: bool = False
    # Muted by a host: not forwarded until a host lets it through again.
    host_muted: bool = False


@dataclass
class Participant:
    id: str
    user_id: str
    device_id: str
    sid: str
    joined_at: int
    mode: Literal["normal", "audio_only"] = "normal"
    subscriptions: set[str] = field(default_factory=set)


@dataclass
class Call:
    id: str
    room: Room
    kind: Literal["consultation", "direct", "field"]
    started_by: str
    started_at: int
    hosts: set[str]
    participants: dict[str, Participant] = field(default_factory=dict)
    publications: dict[str, Publication] = field(default_factory=dict)
    ended_at: int | None = None
    recording: Any = None
    # Who monitors whom: (watcher user id, watched user id).
    monitors: set[tuple[str, str]] = field(default_factory=set)

    @property
    def chain(self) -> str:
        if self.room.case_type and self.room.case_id:
            return case_chain(self.room.case_type, self.room.case_id)
        return f"room:{self.room.id}"


def call_out(call: Call) -> dict[str, Any]:
    return {
        "id": call.id, "room_id": call.room.id, "kind": call.kind, "started_by": call.started_by,
        "started_at": call.started_at, "hosts": sorted(call.hosts), "ended_at": call.ended_at,
        "recording": call.recording is not None,
        "participants": [{"id": p.id, "user_id": p.user_id, "device_id": p.device_id, "joined_at": p.joined_at,
                          "mode": p.mode} for p in call.participants.values()],
        "publications": [publication_out(p) for p in call.publications.values()],
    }


def publication_out(p: Publication) -> dict[str, Any]:
    return {"id": p.id, "participant_id": p.participant_id, "user_id": p.user_id, "kind": p.kind,
            "source": p.source, "muted": p.muted or p.host_muted, "host_muted": p.host_muted}


class CallService:
    def __init__(self, *, rooms: RoomService, storage: Storage, audit: AuditLog, sfu: SfuPort, notifier: CallNotifier,
                 settings: MediaSettings, secret: str, clock: Callable[[], int] = now_ms) -> None:
        self._rooms = rooms
        self._storage = storage
        self._audit = audit
        self.sfu = sfu
        self._notify = notifier
        self.settings = settings
        self._secret = secret
        self.clock = clock
        self.calls: dict[str, Call] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Called when a recording should start or stop (media/recording wiring); optional.
        self.on_record: Callable[[Call, bool, Principal | None], Awaitable[dict[str, Any]]] | None = None

    # -- lookups --------------------------------------------------------------------------------------------------

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None or call.ended_at is not None:
            raise NotFound("no such call, or it has ended", code="call.not_found")
        return call

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    def participant(self, call: Call, actor: Principal, sid: str | None = None) -> Participant:
        for p in call.participants.values():
            if p.user_id == actor.user_id and p.device_id == actor.device_id:
                return p
        raise Forbidden("join the call first", code="call.not_participant")

    async def _is_host(self, call: Call, actor: Principal) -> bool:
        # Hosts are always members of the call's room: a commander elsewhere in the county is not one.
        member = await self._storage.get_member(call.room.id, actor.user_id)
        if member is None:
            return False
        return actor.user_id in call.hosts or actor.user.has_role("commander", "admin") or member.role in (
            "owner", "admin")

    async def _require_host(self, call: Call, actor: Principal) -> None:
        if not await self._is_host(call, actor):
            raise Forbidden("only the call's hosts may do this", code="call.not_host")

    async def _record(self, call: Call, actor: Principal | None, action: str, details: dict[str, Any]) -> None:
        await self._audit.record(chain=call.chain, action=action, subject_type="call", subject_id=call.id,
                                 actor_id=actor.user_id if actor else None,
                                 device_id=actor.device_id if actor else None,
                                 details={"room_id": call.room.id, **details})

    async def _broadcast(self, call: Call, event: str, data: dict[str, Any], *, skip: str | None = None) -> None:
        for p in list(call.participants.values()):
            if p.id != skip:
                await self._notify.to_sid(p.sid, event, {"call_id": call.id, **data})

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self, actor: Principal, room_id: str, *,
                    kind: Literal["consultation", "direct", "field"] = "consultation") -> Call:
        access = await self._rooms.access(actor, room_id, "room.send")
        if kind == "direct" and access.room.kind != "direct":
            raise BadRequest("one-to-one calls are started in a direct chat", code="call.bad_kind")
        for existing in self.calls.values():
            if existing.room.id == room_id and existing.ended_at is None:
                return existing  # one live call per room: starting again finds it
        call = Call(id=new_id(), room=access.room, kind=kind, started_by=actor.user_id, started_at=self.clock(),
                    hosts={actor.user_id})
        self.calls[call.id] = call
        await self._record(call, actor, "call.start", {"kind": kind})
        label = {"consultation": "发起了视频会商", "direct": "发起了通话", "field": "开始回传现场视频"}[kind]
        await self._rooms.post_system_message(room_id, f"{actor.user.display_name} {label}",
                                              {"call": "start", "call_id": call.id, "kind": kind}, actor=actor)
        return call

    async def join(self, actor: Principal, call_id: str, *, sid: str, invitation: str | None = None) -> tuple[
            Call, Participant]:
        call = self._call(call_id)
        member = await self._storage.get_member(call.room.id, actor.user_id)
        if member is None:
            if invitation is None:
                await self._rooms.access(actor, call.room.id)  # refuses (audited) with room.not_member
            invite = read_invitation(self._secret, invitation or "", now_s=self.clock() // 1000)
            if invite.call_id != call.id or invite.user_id != actor.user_id:
                raise Forbidden("this invitation is for another call or person", code="call.bad_invitation")
            await self._rooms.add_case_members(call.room.id, [actor.user_id], actor=actor)
        async with self._lock(call.id):
            for old in [p for p in call.participants.values()
                        if p.user_id == actor.user_id and p.device_id == actor.device_id]:
                await self._drop(call, old)  # the same device joining again replaces itself
            participant = Participant(id=new_id(), user_id=actor.user_id, device_id=actor.device_id, sid=sid,
                                      joined_at=self.clock())
            call.participants[participant.id] = participant
            await self.sfu.connect(call.id, participant.id)
        await self._record(call, actor, "call.join", {"participant_id": participant.id,
                                                      "invited": invitation is not None})
        await self._broadcast(call, "call.joined", {"participant": {"id": participant.id, "user_id": actor.user_id,
                                                                    "device_id": actor.device_id}},
                              skip=participant.id)
        return call, participant

    def ice(self, actor: Principal) -> list[dict[str, Any]]:
        return ice_servers(self.settings, user_id=actor.user_id, now_s=self.clock() // 1000)

    async def leave(self, actor: Principal, call_id: str) -> None:
        call = self._call(call_id)
        participant = self.participant(call, actor)
        async with self._lock(call.id):
            await self._drop(call, participant)
        await self._record(call, actor, "call.leave", {"participant_id": participant.id})
        if not call.participants:
            await self._end(call, None)

    async def _drop(self, call: Call, participant: Participant) -> None:
        call.participants.pop(participant.id, None)
        gone = [p for p in call.publications.values() if p.participant_id == participant.id]
        for publication in gone:
            call.publications.pop(publication.id, None)
        for other in call.participants.values():
            other.subscriptions -= {p.id for p in gone}
        await self.sfu.leave(call.id, participant.id)
        for publication in gone:
            await self._broadcast(call, "call.unpublished", {"publication_id": publication.id})
        await self._broadcast(call, "call.left", {"participant_id": participant.id, "user_id": participant.user_id})

    async def end(self, actor: Principal, call_id: str) -> None:
        call = self._call(call_id)
        await self._require_host(call, actor)
        await self._end(call, actor)

    async def _end(self, call: Call, actor: Principal | None) -> None:
        if call.ended_at is not None:
            return
        if call.recording is not None and self.on_record is not None:
            await self.on_record(call, False, actor)
        call.ended_at = self.clock()
        await self._broadcast(call, "call.ended", {"by": actor.user_id if actor else None})
        for participant in list(call.participants.values()):
            call.participants.pop(participant.id, None)
        await self.sfu.close_call(call.id)
        await self._record(call, actor, "call.end", {"duration_ms": call.ended_at - call.started_at})
        await self._rooms.post_system_message(call.room.id, "视频会商已结束", {"call": "end", "call_id": call.id},
                                              actor=actor)
        self.calls.pop(call.id, None)
        self._locks.pop(call.id, None)

    # -- media ----------------------------------------------------------------------------------------------------

    async def publish(self, actor: Principal, call_id: str, *, kind: Kind, source: Source) -> tuple[
            Publication, dict[str, Any]]:
        call = self._call(call_id)
        participant = self.participant(call, actor)
        if (kind == "audio") != (source == "microphone"):
            raise BadRequest("audio comes from the microphone; video from the camera or the screen",
                             code="call.bad_source")
        async with self._lock(call.id):
            publication_id = await self.sfu.publish(call.id, participant.id, kind=kind, source=source)
            publication = Publication(id=publication_id, participant_id=participant.id, user_id=actor.user_id,
                                      kind=kind, source=source)
            call.publications[publication.id] = publication
            offer = dict(await self.sfu.negotiate(call.id, participant.id))
        await self._broadcast(call, "call.published", {"publication": publication_out(publication)},
                              skip=participant.id)
        return publication, offer

    async def subscribe(self, actor: Principal, call_id: str, publication_id: str) -> dict[str, Any]:
        call = self._call(call_id)
        participant = self.participant(call, actor)
        publication = call.publications.get(publication_id)
        if publication is None:
            raise NotFound("no such publication", code="call.no_publication")
        if publication.participant_id == participant.id:
            raise BadRequest("you cannot subscribe to yourself", code="call.own_publication")
        if participant.mode == "audio_only" and publication.kind == "video":
            raise Conflict("this device asked for audio only", code="call.audio_only")
        async with self._lock(call.id):
            await self.sfu.subscribe(call.id, participant.id, publication.id)
            participant.subscriptions.add(publication.id)
            return dict(await self.sfu.negotiate(call.id, participant.id))

    async def unsubscribe(self, actor: Principal, call_id: str, publication_id: str) -> dict[str, Any] | None:
        call = self._call(call_id)
        participant = self.participant(call, actor)
        async with self._lock(call.id):
            if publication_id in participant.subscriptions:
                await self.sfu.unsubscribe(call.id, participant.id, publication_id)
                participant.subscriptions.discard(publication_id)
            return await self._offer(call, participant)

    async def _offer(self, call: Call, participant: Participant) -> dict[str, Any] | None:
        """The current offer for a participant, or None when its connection carries nothing yet."""
        try:
            return dict(await self.sfu.negotiate(call.id, participant.id))
        except Conflict:
            return None

    async def renegotiate(self, call_id: str, participant_id: str) -> None:
        """Something changed beyond the participant's own request (a publisher left): send a fresh offer."""
        call = self.calls.get(call_id)
        participant = call.participants.get(participant_id) if call is not None else None
        if call is None or participant is None:
            return
        try:
            async with self._lock(call.id):
                offer = await self._offer(call, participant)
        except Exception:
            # The participant or the call went away meanwhile: nothing to renegotiate.
            log.info("renegotiation skipped", call_id=call_id, participant_id=participant_id)
            return
        if offer is not None:
            await self._notify.to_sid(participant.sid, "call.offer", {"call_id": call.id, **offer})

    async def answer(self, actor: Principal, call_id: str, sdp: str) -> None:
        call = self._call(call_id)
        participant = self.participant(call, actor)
        await self.sfu.answer(call.id, participant.id, sdp)

    async def reconnect(self, actor: Principal, call_id: str) -> dict[str, Any] | None:
        """A device whose network changed gets a fresh connection; its publications and subscriptions stay."""
        call = self._call(call_id)
        participant = self.participant(call, actor)
        async with self._lock(call.id):
            await self.sfu.connect(call.id, participant.id)
            offer = await self._offer(call, participant)
        await self._record(call, actor, "call.reconnect", {"participant_id": participant.id})
        return offer

    async def set_mode(self, actor: Principal, call_id: str,
                       mode: Literal["normal", "audio_only"]) -> dict[str, Any] | None:
        """Low-bandwidth mode: audio only drops every video subscription of this device."""
        call = self._call(call_id)
        participant = self.participant(call, actor)
        async with self._lock(call.id):
            participant.mode = mode
            if mode == "audio_only":
                for publication_id in list(participant.subscriptions):
                    publication = call.publications.get(publication_id)
                    if publication is not None and publication.kind == "video":
                        await self.sfu.unsubscribe(call.id, participant.id, publication_id)
                        participant.subscriptions.discard(publication_id)
            return await self._offer(call, participant)

    async def mute_self(self, actor: Principal, call_id: str, publication_id: str, muted: bool) -> Publication:
        call = self._call(call_id)
        participant = self.participant(call, actor)
        publication = call.publications.get(publication_id)
        if publication is None or publication.participant_id != participant.id:
            raise NotFound("no such publication of yours", code="call.no_publication")
        publication.muted = muted
        await self._broadcast(call, "call.muted", {"publication": publication_out(publication)})
        return publication

    # -- host controls --------------------------------------------------------------------------------------------

    async def host_mute(self, actor: Principal, call_id: str, publication_id: str, muted: bool) -> Publication:
        call = self._call(call_id)
        await self._require_host(call, actor)
        publication = call.publications.get(publication_id)
        if publication is None:
            raise NotFound("no such publication", code="call.no_publication")
        publication.host_muted = muted
        self.sfu.set_forwarding(call.id, publication.id, not muted)
        await self._record(call, actor, "call.host_mute", {"publication_id": publication.id,
                                                           "user_id": publication.user_id, "muted": muted})
        await self._broadcast(call, "call.muted", {"publication": publication_out(publication),
                                                   "by": actor.user_id})
        return publication

    async def remove(self, actor: Principal, call_id: str, participant_id: str) -> None:
        call = self._call(call_id)
        await self._require_host(call, actor)
        participant = call.participants.get(participant_id)
        if participant is None:
            raise NotFound("no such participant", code="call.no_participant")
        async with self._lock(call.id):
            await self._notify.to_sid(participant.sid, "call.removed", {"call_id": call.id, "by": actor.user_id})
            await self._drop(call, participant)
        await self._record(call, actor, "call.remove", {"participant_id": participant.id,
                                                        "user_id": participant.user_id})

    async def invite(self, actor: Principal, call_id: str, user_id: str) -> str:
        """A signed, expiring link for one person (a department lead) to join this consultation."""
        call = self._call(call_id)
        await self._require_host(call, actor)
        user = await self._storage.get_user(user_id)
        if user is None or user.disabled:
            raise BadRequest("no such active user", code="call.unknown_user")
        token = sign_invitation(self._secret, Invitation(
            call_id=call.id, room_id=call.room.id, user_id=user.id, invited_by=actor.user_id,
            expires_at=self.clock() // 1000 + self.settings.invitation_ttl))
        await self._record(call, actor, "call.invite", {"user_id": user.id})
        await self._notify.to_user(user.id, "call.invited", {"call_id": call.id, "room_id": call.room.id,
                                                             "invitation": token, "by": actor.user_id})
        return token

    async def record(self, actor: Principal, call_id: str, on: bool) -> dict[str, Any]:
        call = self._call(call_id)
        await self._require_host(call, actor)
        if self.on_record is None:
            raise AppError("recording is not available on this server", code="call.no_recording", status=501)
        if on == (call.recording is not None):
            raise Conflict("the call is already " + ("being recorded" if on else "not recorded"),
                           code="call.recording_state")
        result = await self.on_record(call, on, actor)
        # Everyone in the call is told (a recording is never secret).
        await self._broadcast(call, "call.recording", {"recording": on, "by": actor.user_id})
        return result

    async def monitor(self, actor: Principal, call_id: str, user_id: str) -> list[dict[str, Any]]:
        """A commander opens a responder's live streams in an incident; the responder is told, and it is audited."""
        call = self._call(call_id)
        if not actor.user.has_role("commander", "admin") or call.room.case_type != "incident":
            raise Forbidden("monitoring is for commanders in an incident's room", code="call.not_allowed")
        await self._rooms.access(actor, call.room.id)
        streams = [p for p in call.publications.values() if p.user_id == user_id]
        if not streams:
            raise NotFound("that person publishes nothing in this call", code="call.no_publication")
        call.monitors.add((actor.user_id, user_id))
        await self._record(call, actor, "call.monitor", {"user_id": user_id,
                                                         "publications": [p.id for p in streams]})
        await self._notify.to_user(user_id, "call.monitored", {"call_id": call.id, "by": actor.user_id,
                                                               "name": actor.user.display_name})
        return [publication_out(p) for p in streams]

    async def disconnected(self, sid: str) -> None:
        """A socket went away: its participants leave (the client rejoins after a reconnect)."""
        for call in list(self.calls.values()):
            for participant in [p for p in call.participants.values() if p.sid == sid]:
                async with self._lock(call.id):
                    await self._drop(call, participant)
                await self._audit.record(chain=call.chain, action="call.leave", subject_type="call",
                                         subject_id=call.id, actor_id=participant.user_id,
                                         device_id=participant.device_id,
                                         details={"room_id": call.room.id, "participant_id": participant.id,
                                                  "reason": "disconnected"})
            if not call.participants and call.ended_at is None:
                await self._end(call, None)

    async def close(self) -> None:
        for call in list(self.calls.values()):
            await self._end(call, None)
