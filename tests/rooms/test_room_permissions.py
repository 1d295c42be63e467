"""A user cannot read or act where they don't belong: every room route and event refuses outsiders."""

from __future__ import annotations

import pytest

from tests.factories import Muster
from tests.rooms.conftest import make_room, new_client, send


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("room.history", {"after_seq": 0}),
        ("room.members", {}),
        ("message.send", {"client_id": "x", "text": "闯入"}),
        ("room.read", {"seq": 1}),
        ("typing", {"typing": True}),
        ("search", {"query": "机密"}),
        ("presence.get", {}),
        ("room.update", {"name": "x"}),
        ("room.invite", {"user_ids": ["someone"]}),
        ("room.leave", {}),
        ("room.archive", {}),
        ("message.pin", {"message_id": "MSG"}),
        ("message.ack", {"message_id": "MSG"}),
        ("message.ack_status", {"message_id": "MSG"}),
    ],
)
async def test_outsiders_are_refused_on_every_room_event(
    muster: Muster, event: str, payload: dict[str, object]
) -> None:
    owner = await new_client(muster, "commander")
    member = await new_client(muster)
    outsider = await new_client(muster, "admin")  # even an admin of the back office is not a room member
    room = await make_room(owner, member, name="机密会商")
    secret = await send(owner, room, "机密 内容", ack={"all": True})
    body = {k: (secret["id"] if v == "MSG" else v) for k, v in payload.items()}
    ack = await outsider.call(event, {"room_id": room, **body})
    assert ack["error"]["code"] == "room.not_member", ack
    assert "机密" not in str(ack)
    denied = await muster.kernel.storage.list_audit_records(chain=f"user:{outsider.user_id}",
                                                            action="permission.denied")
    assert denied and denied[0].subject_id == room
    # nothing changed in the room
    assert (await muster.kernel.storage.get_room(room)).last_seq == secret["seq"]  # type: ignore[union-attr]


async def test_outsiders_are_refused_over_http(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    outsider = await muster.session("responder")
    room = await make_room(owner, name="机密")
    message = await send(owner, room, "机密 内容")
    for method, path, body in (
        ("GET", f"/api/rooms/{room}", None),
        ("GET", f"/api/rooms/{room}/events", None),
        ("GET", f"/api/rooms/{room}/members", None),
        ("GET", f"/api/rooms/{room}/presence", None),
        ("POST", f"/api/rooms/{room}/messages", {"client_id": "x", "text": "闯入"}),
        ("POST", f"/api/rooms/{room}/read", {"seq": 1}),
        ("PATCH", f"/api/rooms/{room}", {"name": "x"}),
        ("POST", f"/api/rooms/{room}/members", {"user_ids": [outsider.user_id]}),
        ("PUT", f"/api/rooms/{room}/messages/{message['id']}/pin", None),
        ("GET", f"/api/search?q=%E6%9C%BA%E5%AF%86&room_id={room}", None),
    ):
        status, answer = await muster.request(method, path, outsider, json=body) if body else \
            await muster.request(method, path, outsider)
        assert status == 403 and answer["error"]["code"] == "room.not_member", (method, path, answer)
    status, found = await muster.request("GET", "/api/search?q=%E6%9C%BA%E5%AF%86", outsider)
    assert status == 200 and found["events"] == []


async def test_unknown_rooms_and_messages(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    room = await make_room(a)
    for event, payload, code in (
        ("message.send", {"room_id": "nope", "client_id": "x", "text": "hi"}, "room.not_found"),
        ("room.history", {"room_id": "nope"}, "room.not_found"),
        ("message.edit", {"room_id": room, "message_id": "nope", "text": "x"}, "message.not_found"),
        ("message.pin", {"room_id": room, "message_id": "nope"}, "message.not_found"),
        ("message.ack", {"room_id": room, "message_id": "nope"}, "ack.not_requested"),
    ):
        ack = await a.call(event, payload)
        assert ack["error"]["code"] == code, (event, ack)
