"""Rooms and group management: create, rename, topic, archive, invite, remove, leave, roles, direct chats,
department rooms that follow their department. Every change is audited and posted into the room."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.factories import Muster
from tests.rooms.conftest import Client, connect, make_room, new_client, send, until


def texts(client: Client, room: str) -> list[str]:
    return [e["body"].get("text", "") for e in client.room_events(room) if e["kind"] in ("room", "member")]


async def test_room_lifecycle_is_posted_and_audited(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    b = await new_client(muster)
    c = await new_client(muster)
    room = await make_room(owner, b, name="东沟水库险情")
    await owner.ok("room.update", {"room_id": room, "name": "东沟水库险情处置", "topic": "每 30 分钟报告水位"})
    await owner.ok("room.invite", {"room_id": room, "user_ids": [c.user_id]})
    await until(lambda: c.got("room.joined"), what="c told it joined")
    await owner.ok("room.set_role", {"room_id": room, "user_id": b.user_id, "role": "admin"})
    await b.ok("room.remove", {"room_id": room, "user_id": c.user_id})
    await until(lambda: c.got("room.left"), what="c told it left")
    kinds = [(e["kind"], e["body"].get("action")) for e in owner.room_events(room)]
    assert kinds == [("room", "create"), ("room", "rename"), ("room", "topic"), ("member", "invite"),
                     ("member", "role"), ("member", "remove")]
    assert all(t for t in texts(owner, room))  # each change reads as a system message
    seqs = [e["seq"] for e in owner.room_events(room)]
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))
    # c saw its own removal before it left, and receives nothing after
    assert any(e["body"].get("action") == "remove" for e in c.room_events(room))
    await send(owner, room, "c 不应收到")
    status, members = await muster.request("GET", f"/api/rooms/{room}/members", owner.session)
    assert {m["user_id"]: m["role"] for m in members["members"]} == {owner.user_id: "owner", b.user_id: "admin"}
    actions = [r.action for r in reversed(await muster.kernel.storage.list_audit_records(chain=f"room:{room}"))]
    assert actions == ["room.create", "room.update", "room.member_invite", "room.member_role", "room.member_remove"]
    assert all(r.actor_id for r in await muster.kernel.storage.list_audit_records(chain=f"room:{room}"))
    assert not any(e["body"].get("text") == "c 不应收到" for e in c.room_events(room))


async def test_archived_rooms_are_read_only(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    b = await new_client(muster)
    room = await make_room(owner, b)
    await send(owner, room, "处置完毕")
    ack = await b.call("room.archive", {"room_id": room})
    assert ack["error"]["code"] == "room.forbidden"
    archived = await owner.ok("room.archive", {"room_id": room})
    assert archived["room"]["archived"] is True
    ack = await b.call("message.send", {"room_id": room, "client_id": "late", "text": "还能发吗"})
    assert ack["error"]["code"] == "room.archived"
    # the history stays readable
    assert (await b.ok("room.history", {"room_id": room, "after_seq": 0}))["events"]


async def test_leaving_passes_ownership_on(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    b = await new_client(muster)
    c = await new_client(muster)
    room = await make_room(owner, b, c)
    await owner.ok("room.set_role", {"room_id": room, "user_id": c.user_id, "role": "admin"})
    await owner.ok("room.leave", {"room_id": room})
    roles = {m["user_id"]: m["role"] for m in (await b.ok("room.members", {"room_id": room}))["members"]}
    assert roles == {b.user_id: "member", c.user_id: "owner"}
    ack = await owner.call("room.history", {"room_id": room})
    assert ack["error"]["code"] == "room.not_member"


async def test_role_rules(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    admin = await new_client(muster)
    member = await new_client(muster)
    room = await make_room(owner, admin, member)
    await owner.ok("room.set_role", {"room_id": room, "user_id": admin.user_id, "role": "admin"})
    # a plain member manages nothing
    for event, payload in (("room.update", {"room_id": room, "name": "x"}),
                           ("room.invite", {"room_id": room, "user_ids": [owner.user_id]}),
                           ("room.remove", {"room_id": room, "user_id": admin.user_id}),
                           ("room.set_role", {"room_id": room, "user_id": member.user_id, "role": "admin"})):
        ack = await member.call(event, payload)
        assert ack["error"]["code"] == "room.forbidden", (event, ack)
    # an admin cannot touch the owner or hand out ownership
    ack = await admin.call("room.remove", {"room_id": room, "user_id": owner.user_id})
    assert ack["error"]["code"] == "room.forbidden"
    ack = await admin.call("room.set_role", {"room_id": room, "user_id": member.user_id, "role": "owner"})
    assert ack["error"]["code"] == "room.forbidden"
    # the owner hands over ownership and becomes an admin
    await owner.ok("room.set_role", {"room_id": room, "user_id": member.user_id, "role": "owner"})
    roles = {m["user_id"]: m["role"] for m in (await owner.ok("room.members", {"room_id": room}))["members"]}
    assert roles == {owner.user_id: "admin", admin.user_id: "admin", member.user_id: "owner"}


async def test_direct_chats_are_one_per_pair(muster: Muster) -> None:
    a = await new_client(muster)
    b = await new_client(muster)
    one = (await a.ok("direct.open", {"user_id": b.user_id}))["room"]
    two = (await b.ok("direct.open", {"user_id": a.user_id}))["room"]
    assert one["id"] == two["id"] and one["kind"] == "direct"
    status, three = await muster.request("POST", "/api/direct", a.session, json={"user_id": b.user_id})
    assert status == 200 and three["id"] == one["id"]
    await send(a, one["id"], "私聊")
    await until(lambda: b.room_events(one["id"]), what="b receives")
    for event, payload in (("room.invite", {"room_id": one["id"], "user_ids": [a.user_id]}),
                           ("room.update", {"room_id": one["id"], "name": "x"})):
        ack = await a.call(event, payload)
        assert "error" in ack
    ack = await a.call("direct.open", {"user_id": a.user_id})
    assert ack["error"]["code"] == "room.bad_direct"
    ack = await a.call("room.leave", {"room_id": one["id"]})
    assert ack["error"]["code"] == "room.fixed_membership"


async def test_who_may_create_which_rooms(muster: Muster) -> None:
    responder = await new_client(muster)
    commander = await new_client(muster, "commander")
    admin = await new_client(muster, "admin")
    assert (await responder.ok("room.create", {"kind": "group", "name": "小组"}))["room"]["kind"] == "group"
    for kind in ("incident", "project", "department"):
        ack = await responder.call("room.create", {"kind": kind, "name": "x"})
        assert ack["error"]["code"] == "auth.forbidden", kind
    assert (await commander.ok("room.create", {"kind": "incident", "name": "事件"}))["room"]["kind"] == "incident"
    ack = await commander.call("room.create", {"kind": "department", "name": "x"})
    assert ack["error"]["code"] == "auth.forbidden"
    ack = await admin.call("room.create", {"kind": "department", "name": "x"})
    assert ack["error"]["code"] == "room.bad_department"


async def test_department_rooms_follow_the_department(muster: Muster) -> None:
    admin_session = await muster.session("admin")
    admin = await connect(muster, admin_session)

    async def dept(name: str) -> dict[str, Any]:
        status, body = await muster.request("POST", "/api/admin/departments", admin_session,
                                            json={"name": name, "kind": "county"})
        assert status == 201
        return body

    water, police = await dept("水利局"), await dept("公安局")
    early = await muster.create_user(department_id=water["id"])
    room = (await admin.ok("room.create", {"kind": "department", "name": "水利局工作群",
                                           "department_id": water["id"]}))["room"]["id"]
    members = {m["user_id"] for m in (await admin.ok("room.members", {"room_id": room}))["members"]}
    assert members == {admin.user_id, early["id"]}
    # a new colleague joins the room with the department; one who moves away leaves it
    late = await muster.create_user(department_id=water["id"])
    status, _ = await muster.request("PATCH", f"/api/admin/users/{early['id']}", admin_session,
                                     json={"department_id": police["id"]})
    assert status == 200
    members = {m["user_id"] for m in (await admin.ok("room.members", {"room_id": room}))["members"]}
    assert members == {admin.user_id, late["id"]}
    # disabling takes them out too
    await muster.request("PATCH", f"/api/admin/users/{late['id']}", admin_session, json={"disabled": True})
    members = {m["user_id"] for m in (await admin.ok("room.members", {"room_id": room}))["members"]}
    assert members == {admin.user_id}
    actions = [e["body"]["action"] for e in (await admin.ok("room.history", {"room_id": room, "after_seq": 0}))[
        "events"] if e["kind"] == "member"]
    assert actions == ["department", "department", "department"]
    ack = await admin.call("room.invite", {"room_id": room, "user_ids": [early["id"]]})
    assert ack["error"]["code"] == "room.fixed_membership"


async def test_room_list_has_unread_counts_and_the_latest_activity_first(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    quiet = await make_room(a, b, name="安静")
    await asyncio.sleep(0.01)  # activity is ordered by the millisecond
    busy = await make_room(a, b, name="繁忙")
    for i in range(3):
        await send(a, busy, f"m{i}")
    rooms = (await b.ok("room.list"))["rooms"]
    unread = {r["room"]["id"]: r["unread"] for r in rooms}
    assert unread == {quiet: 0, busy: 3}
    assert [r["room"]["id"] for r in rooms] == [busy, quiet]
    await asyncio.sleep(0.01)
    await send(a, quiet, "现在这里最新")
    assert [r["room"]["id"] for r in (await b.ok("room.list"))["rooms"]] == [quiet, busy]
    status, body = await muster.request("GET", "/api/rooms", b.session)
    assert status == 200 and {r["room"]["id"] for r in body["rooms"]} == {quiet, busy}
    status, one = await muster.request("GET", f"/api/rooms/{busy}", b.session)
    assert status == 200 and one["unread"] == 3 and one["membership"]["role"] == "member"
