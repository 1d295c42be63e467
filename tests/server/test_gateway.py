"""The socket gateway over a real port: connect, bound device, error acks, rooms, revocation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import Field

from server.errors import Conflict
from server.gateway.server import SocketContext, device_room, user_room
from server.schemas import Payload
from tests.factories import Muster, until


class Echo(Payload):
    text: str = Field(max_length=10)
    count: int = 1


async def test_connection_is_bound_to_user_and_device(muster: Muster) -> None:
    user = await muster.create_user()
    console = await muster.login(user["username"], device_kind="console")
    phone = await muster.login(user["username"], device_kind="mobile")
    a = await muster.socket(console.access_token)
    b = await muster.socket(phone.access_token)
    who_a = (await a.call("whoami", timeout=5))["data"]
    who_b = (await b.call("whoami", timeout=5))["data"]
    assert who_a["user_id"] == who_b["user_id"] == user["id"]
    assert (who_a["device_id"], who_b["device_id"]) == (console.device_id, phone.device_id)

    got: dict[str, list[Any]] = {"a": [], "b": []}
    a.on("note", lambda data: got["a"].append(data))
    b.on("note", lambda data: got["b"].append(data))
    sio = muster.kernel.gateway.sio
    await sio.emit("note", {"to": "user"}, room=user_room(user["id"]))
    await sio.emit("note", {"to": "phone"}, room=device_room(phone.device_id))
    await until(lambda: len(got["a"]) == 1 and len(got["b"]) == 2)
    assert got["a"] == [{"to": "user"}]
    assert got["b"] == [{"to": "user"}, {"to": "phone"}]



async def test_events_validate_payloads_and_answer_in_the_error_shape(muster: Muster) -> None:
    calls: list[tuple[str, Echo]] = []

    @muster.kernel.gateway.on("test.echo", Echo)
    async def echo(ctx: SocketContext, payload: Echo) -> dict[str, Any]:
        calls.append((ctx.user_id, payload))
        if payload.text == "conflict":
            raise Conflict("already done", code="test.conflict")
        if payload.text == "boom":
            raise RuntimeError("a bug")
        return {"text": payload.text, "count": payload.count}

    s = await muster.session()
    client = await muster.socket(s.access_token)
    assert await client.call("test.echo", {"text": "你好"}, timeout=5) == {"data": {"text": "你好", "count": 1}}
    cases = [
        ("not an object", "request.invalid"),
        ({"text": "x", "extra": 1}, "request.invalid"),
        ({"text": "x" * 11}, "request.invalid"),
        ({"text": 5}, "request.invalid"),
        ({"text": "x", "count": "1"}, "request.invalid"),
        ({}, "request.invalid"),
        ({"text": "conflict"}, "test.conflict"),
        ({"text": "boom"}, "internal"),
    ]
    for payload, code in cases:
        ack = await client.call("test.echo", payload, timeout=5)
        assert set(ack) == {"error"} and ack["error"]["code"] == code, (payload, ack)
        assert isinstance(ack["error"]["message"], str) and "Traceback" not in ack["error"]["message"]
    assert [p.text for _, p in calls] == ["你好", "conflict", "boom"]
    ack = await client.call("whoami", {"unexpected": True}, timeout=5)
    assert ack["error"]["code"] == "request.invalid"
    ack = await client.call("no.such.event", {"a": 1}, timeout=5)
    assert ack["error"]["code"] == "event.unknown"
    # the connection survives every refusal
    assert (await client.call("whoami", timeout=5))["data"]["user_id"] == s.user_id


async def test_revoking_one_device_closes_only_its_sockets(muster: Muster) -> None:
    user = await muster.create_user()
    console = await muster.login(user["username"], device_kind="console")
    phone = await muster.login(user["username"], device_kind="mobile")
    a = await muster.socket(console.access_token)
    b = await muster.socket(phone.access_token)
    status, _ = await muster.request("DELETE", f"/api/me/devices/{phone.device_id}", console)
    assert status == 204
    await asyncio.wait_for(b.wait(), timeout=5)
    assert not b.connected and a.connected
    assert muster.kernel.gateway.local_connections == 1


async def test_graceful_shutdown_tells_and_closes_every_socket(muster: Muster) -> None:
    clients = []
    for _ in range(12):
        s = await muster.session()
        clients.append(await muster.socket(s.access_token))
    clients.append(await muster.socket(s.access_token))  # the last user's second connection
    told: list[list[Any]] = [[] for _ in clients]
    for client, box in zip(clients, told, strict=True):
        client.on("server.shutdown", box.append)
    await muster.server.close()  # runs on_shutdown, then cleanup
    for client in clients:
        await asyncio.wait_for(client.wait(), timeout=5)
    assert told == [[{}]] * len(clients)  # each socket told once
    assert not any(client.connected for client in clients)
    assert muster.kernel.gateway.local_connections == 0


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_both_transports_authenticate(muster: Muster, transport: str) -> None:
    import socketio

    s = await muster.session()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(muster.url, auth={"token": s.access_token}, transports=[transport], wait_timeout=5)
    try:
        assert (await client.call("whoami", timeout=5))["data"]["device_id"] == s.device_id
    finally:
        await client.disconnect()


async def test_bearer_header_is_accepted_at_connect(muster: Muster) -> None:
    import socketio

    s = await muster.session()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(muster.url, headers={"Authorization": f"Bearer {s.access_token}"},
                         transports=["websocket"], wait_timeout=5)
    try:
        assert (await client.call("whoami", timeout=5))["data"]["user_id"] == s.user_id
    finally:
        await client.disconnect()


async def test_chinese_text_travels_as_utf8_not_escapes(muster: Muster) -> None:
    """Read the raw Engine.IO frames: 水位 is sent as its UTF-8 characters, not as \\u6c34\\u4f4d escapes."""
    s = await muster.session()
    ws = await muster.http.ws_connect(f"{muster.url}/socket.io/?EIO=4&transport=websocket")
    try:
        opened = await ws.receive_str()
        assert opened.startswith("0{")
        await ws.send_str('40' + json.dumps({"token": s.access_token}))
        connected = await ws.receive_str()
        assert connected.startswith("40{")
        presence = await ws.receive_str()  # the user's own "online", sent by a task after the connect
        assert presence.startswith('42["presence"'), presence
        await muster.kernel.gateway.emit("note", {"text": "东沟水库水位上涨"}, room=user_room(s.user_id))
        frame = await ws.receive_str()
        assert frame == '42["note",{"text":"东沟水库水位上涨"}]'
    finally:
        await ws.close()
