"""Who may start, join and control a call, with invitations; the SFU is replaced by a recorder of what it was
asked (the forwarding itself is tested with real aiortc peers in test_sfu.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from media.service import CallService
from rooms.views import ROOMS
from server.auth.service import Principal
from server.errors import AppError
from tests.factories import Muster, Session

SECRET = "consultation-invitation-test-secret-000000"


class FakeSfu:
    """Remembers what the service asked of the forwarding core."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.forwarding: dict[str, bool] = {}
        self._n = 0

    async def connect(self, call_id: str, participant_id: str) -> None:
        self.log.append(("connect", participant_id))

    async def publish(self, call_id: str, participant_id: str, *, kind: str, source: str) -> str:
        self._n += 1
        self.log.append(("publish", participant_id, kind))
        return f"pub{self._n}"

    async def unpublish(self, call_id: str, participant_id: str, publication_id: str) -> None:
        self.log.append(("unpublish", publication_id))

    async def subscribe(self, call_id: str, subscriber_id: str, publication_id: str) -> None:
        self.log.append(("subscribe", subscriber_id, publication_id))

    async def unsubscribe(self, call_id: str, subscriber_id: str, publication_id: str) -> None:
        self.log.append(("unsubscribe", subscriber_id, publication_id))

    async def negotiate(self, call_id: str, participant_id: str) -> dict[str, Any]:
        return {"type": "offer", "sdp": "v=0"}

    async def answer(self, call_id: str, participant_id: str, sdp: str) -> None:
        self.log.append(("answer", participant_id))

    async def leave(self, call_id: str, participant_id: str) -> None:
        self.log.append(("leave", participant_id))

    async def close_call(self, call_id: str) -> None:
        self.log.append(("close", call_id))

    def set_forwarding(self, call_id: str, publication_id: str, enabled: bool) -> None:
        self.forwarding[publication_id] = enabled


@dataclass
class Notes:
    to_sid: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    to_user: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def send_sid(self, sid: str, event: str, data: dict[str, Any]) -> None:
        self.to_sid.append((sid, event, data))

    async def send_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        self.to_user.append((user_id, event, data))


class Notifier:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    async def to_sid(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self.notes.send_sid(sid, event, data)

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        await self.notes.send_user(user_id, event, data)


@dataclass
class World:
    muster: Muster
    calls: CallService
    sfu: FakeSfu
    notes: Notes
    people: dict[str, Principal]
    room_id: str
    incident_room_id: str

    def __getitem__(self, name: str) -> Principal:
        return self.people[name]


async def principal(muster: Muster, session: Session) -> Principal:
    return await muster.kernel.auth.authenticate(session.access_token)


@pytest.fixture
async def world(muster: Muster) -> AsyncIterator[World]:
    people = {}
    for name, role in (("commander", "commander"), ("host", "responder"), ("member", "responder"),
                       ("responder", "responder"), ("outsider", "responder"), ("lead", "dept_lead")):
        people[name] = await principal(muster, await muster.session(role))
    rooms = muster.app[ROOMS]
    room = await rooms.create_room(people["host"], kind="group", name="会商", member_ids=[
        people["member"].user_id, people["commander"].user_id])
    incident_room = await rooms.create_case_room(kind="incident", name="事件", case_type="incident", case_id="i1",
                                                 owner_id=people["commander"].user_id,
                                                 member_ids=[people["responder"].user_id])
    sfu, notes = FakeSfu(), Notes()
    calls = CallService(rooms=rooms, storage=muster.kernel.storage, audit=muster.kernel.audit, sfu=sfu,
                        notifier=Notifier(notes), settings=muster.kernel.settings.media, secret=SECRET)
    yield World(muster, calls, sfu, notes, people, room.id, incident_room.id)
    await calls.close()


async def refused(coro: Any, code: str) -> None:
    with pytest.raises(AppError) as err:
        await coro
    assert err.value.code == code, (err.value.code, err.value.message)


async def test_members_start_and_join_outsiders_do_not(world: World) -> None:
    w = world
    await refused(w.calls.start(w["outsider"], w.room_id), "room.not_member")
    call = await w.calls.start(w["host"], w.room_id)
    assert (await w.calls.start(w["member"], w.room_id)).id == call.id  # one live call per room
    await refused(w.calls.join(w["outsider"], call.id, sid="s-out"), "room.not_member")
    _, host = await w.calls.join(w["host"], call.id, sid="s-host")
    _, member = await w.calls.join(w["member"], call.id, sid="s-member")
    assert any(sid == "s-host" and event == "call.joined" for sid, event, _ in w.notes.to_sid)
    publication, offer = await w.calls.publish(w["host"], call.id, kind="video", source="camera")
    assert offer["type"] == "offer"
    await refused(w.calls.publish(w["outsider"], call.id, kind="video", source="camera"), "call.not_participant")
    await refused(w.calls.subscribe(w["outsider"], call.id, publication.id), "call.not_participant")
    await refused(w.calls.subscribe(w["host"], call.id, publication.id), "call.own_publication")
    await refused(w.calls.publish(w["member"], call.id, kind="audio", source="camera"), "call.bad_source")
    await w.calls.subscribe(w["member"], call.id, publication.id)
    assert ("subscribe", member.id, publication.id) in w.sfu.log
    # Low-bandwidth mode drops video subscriptions and refuses new ones.
    await w.calls.set_mode(w["member"], call.id, "audio_only")
    assert ("unsubscribe", member.id, publication.id) in w.sfu.log
    await refused(w.calls.subscribe(w["member"], call.id, publication.id), "call.audio_only")
    records = await w.muster.kernel.storage.list_audit_records(chain=f"room:{w.room_id}", limit=100)
    assert {"call.start", "call.join"} <= {r.action for r in records}
    assert host.id != member.id


async def test_only_hosts_control_the_call(world: World) -> None:
    w = world
    call = await w.calls.start(w["host"], w.room_id)
    _, member = await w.calls.join(w["member"], call.id, sid="s-member")
    await w.calls.join(w["host"], call.id, sid="s-host")
    publication, _ = await w.calls.publish(w["member"], call.id, kind="audio", source="microphone")
    await refused(w.calls.host_mute(w["member"], call.id, publication.id, True), "call.not_host")
    await refused(w.calls.remove(w["member"], call.id, member.id), "call.not_host")
    await refused(w.calls.end(w["member"], call.id), "call.not_host")
    await refused(w.calls.invite(w["member"], call.id, w["lead"].user_id), "call.not_host")
    # A commander who is not in the room is no host of its call.
    stranger = await principal(w.muster, await w.muster.session("commander"))
    await refused(w.calls.end(stranger, call.id), "call.not_host")
    await refused(w.calls.host_mute(stranger, call.id, publication.id, True), "call.not_host")
    muted = await w.calls.host_mute(w["host"], call.id, publication.id, True)
    assert muted.host_muted and w.sfu.forwarding[publication.id] is False
    # A commander in the room is a host too.
    await w.calls.remove(w["commander"], call.id, member.id)
    assert any(sid == "s-member" and event == "call.removed" for sid, event, _ in w.notes.to_sid)
    assert publication.id not in call.publications
    await w.calls.end(w["host"], call.id)
    await refused(w.calls.join(w["member"], call.id, sid="x"), "call.not_found")
    actions = [r.action for r in await w.muster.kernel.storage.list_audit_records(chain=f"room:{w.room_id}")]
    assert {"call.host_mute", "call.remove", "call.end"} <= set(actions)


async def test_a_department_lead_joins_by_invitation(world: World) -> None:
    w = world
    call = await w.calls.start(w["host"], w.room_id)
    token = await w.calls.invite(w["host"], call.id, w["lead"].user_id)
    assert any(u == w["lead"].user_id and e == "call.invited" for u, e, _ in w.notes.to_user)
    # The invitation is for the lead only, and only for this call.
    await refused(w.calls.join(w["outsider"], call.id, sid="s-o", invitation=token), "call.bad_invitation")
    other = await w.calls.start(w["commander"], w.incident_room_id)
    await refused(w.calls.join(w["lead"], other.id, sid="s-l", invitation=token), "call.bad_invitation")
    await refused(w.calls.join(w["lead"], call.id, sid="s-l", invitation=token[:-3] + "abc"),
                  "call.bad_invitation")
    _, lead = await w.calls.join(w["lead"], call.id, sid="s-l", invitation=token)
    assert await w.muster.kernel.storage.get_member(w.room_id, w["lead"].user_id) is not None
    # Expired: the clock moves past the invitation's life.
    late = await w.calls.invite(w["host"], call.id, w["outsider"].user_id)
    real = w.calls.clock
    w.calls.clock = lambda: real() + (w.calls.settings.invitation_ttl + 1) * 1000
    await refused(w.calls.join(w["outsider"], call.id, sid="s-o2", invitation=late), "call.invitation_expired")
    assert lead.user_id == w["lead"].user_id


async def test_monitoring_a_responder_is_for_commanders_and_is_told(world: World) -> None:
    w = world
    call = await w.calls.start(w["responder"], w.incident_room_id, kind="field")
    await w.calls.join(w["responder"], call.id, sid="s-r")
    await w.calls.join(w["commander"], call.id, sid="s-c")
    await w.calls.publish(w["responder"], call.id, kind="video", source="camera")
    await refused(w.calls.monitor(w["responder"], call.id, w["responder"].user_id), "call.not_allowed")
    streams = await w.calls.monitor(w["commander"], call.id, w["responder"].user_id)
    assert [s["kind"] for s in streams] == ["video"]
    assert any(u == w["responder"].user_id and e == "call.monitored" for u, e, _ in w.notes.to_user)
    records = await w.muster.kernel.storage.list_audit_records(chain="case:incident:i1", action="call.monitor")
    assert [r.details["user_id"] for r in records] == [w["responder"].user_id]
    # Not in an ordinary room.
    group_call = await w.calls.start(w["host"], w.room_id)
    await w.calls.join(w["commander"], group_call.id, sid="s-c2")
    await refused(w.calls.monitor(w["commander"], group_call.id, w["host"].user_id), "call.not_allowed")


async def test_the_last_one_out_ends_the_call_and_sockets_that_drop_leave(world: World) -> None:
    w = world
    call = await w.calls.start(w["host"], w.room_id)
    await w.calls.join(w["host"], call.id, sid="s-host")
    await w.calls.join(w["member"], call.id, sid="s-member")
    await w.calls.disconnected("s-member")
    assert [p.user_id for p in call.participants.values()] == [w["host"].user_id]
    await w.calls.leave(w["host"], call.id)
    assert call.ended_at is not None and call.id not in w.calls.calls
    events = await w.muster.kernel.storage.list_events(w.room_id, limit=50)
    assert [e.body.get("data", {}).get("call") for e in events if e.kind == "system"][-2:] == ["start", "end"]
