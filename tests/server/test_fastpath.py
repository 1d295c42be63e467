"""The gateway's broadcast fast path (server/gateway/fastpath.py) with real clients over a real port.

Every member gets each broadcast once and in order (also when broadcasts and packets that go
through python-engineio's queue alternate), skip_sid is honoured, a client that stops reading is
dropped without holding up the others, packets for one socket (acks, emits to a sid) keep their
order, long-polling clients and acks with a callback take the normal path, and a
client's permessage-deflate offer is declined.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import socketio

from server.gateway.fastpath import FastManager, deliver_local, install_fastpath
from server.gateway.server import user_room
from tests.factories import Muster, until

ROOM = "fastpath-test-room"



async def _members(muster: Muster, count: int, *, transports: list[str] | None = None) -> list[socketio.AsyncClient]:
    clients = []
    for _ in range(count):
        s = await muster.session()
        if transports is None:
            client = await muster.socket(s.access_token)
        else:
            client = socketio.AsyncClient(reconnection=False)
            muster.sockets.append(client)
            await client.connect(muster.url, auth={"token": s.access_token}, transports=transports, wait_timeout=5)
        await muster.kernel.gateway.sio.enter_room(client.get_sid("/"), ROOM)
        clients.append(client)
    return clients


def _record(clients: list[socketio.AsyncClient], event: str = "n") -> list[list[Any]]:
    got: list[list[Any]] = [[] for _ in clients]
    for client, box in zip(clients, got, strict=True):
        client.on(event, box.append)
    return got


async def test_the_gateway_uses_the_fast_manager(muster: Muster) -> None:
    assert isinstance(muster.kernel.gateway.sio.manager, FastManager)


async def test_a_broadcast_reaches_every_member_once_and_in_order(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    clients = await _members(muster, 4)
    got = _record(clients)
    # Sizes around the frame header's length boundaries (125, 126, 65535, 65536 bytes).
    sizes = [0, 100, 125, 126, 1000, 65_535, 65_536, 100_000]
    expected = [{"i": i, "pad": "好" * sizes[i % len(sizes)]} for i in range(40)]
    for item in expected:
        await sio.emit("n", item, room=ROOM)
    await until(lambda: all(len(box) >= len(expected) for box in got))
    await asyncio.sleep(0.1)  # a duplicate would arrive right behind
    for box in got:
        assert [(item["i"], len(item["pad"])) for item in box] == [(i, len(x["pad"])) for i, x in enumerate(expected)]
        assert box == expected  # (the contents, once the shape is known to match: a diff of 2 MB is slow)


async def test_long_polling_members_still_get_broadcasts(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    clients = await _members(muster, 2) + await _members(muster, 2, transports=["polling"])
    got = _record(clients)
    for i in range(30):
        await sio.emit("n", {"i": i, "text": "好"}, room=ROOM)
    await until(lambda: all(len(box) >= 30 for box in got))
    await asyncio.sleep(0.1)
    assert got == [[{"i": i, "text": "好"} for i in range(30)]] * 4


async def test_order_holds_when_fast_and_queued_packets_alternate(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    clients = await _members(muster, 3)
    got = _record(clients)
    for i in range(300):
        if i % 3 == 0:  # python-socketio's own path: through each socket's Engine.IO queue
            await socketio.AsyncManager.emit(sio.manager, "n", i, "/", room=ROOM)
        else:
            await sio.emit("n", i, room=ROOM)
    await until(lambda: all(len(box) == 300 for box in got))
    for box in got:
        assert box == list(range(300))


async def test_skip_sid_and_room_lists(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    a, b, c = await _members(muster, 3)
    got = _record([a, b, c])
    await sio.emit("n", "all but a", room=ROOM, skip_sid=a.get_sid("/"))
    await sio.emit("n", "all but a and b", room=ROOM, skip_sid=[a.get_sid("/"), b.get_sid("/")])
    # Two rooms a socket is in both of: it gets one copy.
    await sio.enter_room(c.get_sid("/"), "other")
    await sio.emit("n", "once", room=[ROOM, "other"], skip_sid=[a.get_sid("/"), b.get_sid("/")])
    await until(lambda: len(got[2]) == 3)
    await asyncio.sleep(0.1)
    assert got == [[], ["all but a"], ["all but a", "all but a and b", "once"]]


async def test_deliver_local_counts_the_sockets_it_reached(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    a, b = await _members(muster, 2)
    got = _record([a, b])
    sent = await deliver_local(sio, "n", {"x": 1}, namespace="/", room=ROOM, skip_sid=b.get_sid("/"))
    assert sent == 1
    assert await deliver_local(sio, "n", 1, namespace="/", room="nobody-here") == 0
    await until(lambda: got[0] == [{"x": 1}])
    assert got[1] == []


async def test_acks_still_work_both_ways(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    (client,) = await _members(muster, 1)
    client.on("question", lambda data: {"answer": data["q"] * 2})
    assert await sio.call("question", {"q": 21}, to=client.get_sid("/"), timeout=5) == {"answer": 42}
    assert (await client.call("whoami", timeout=5))["data"]["sid"] == client.get_sid("/")


async def test_packets_for_one_socket_keep_their_order_with_queued_ones(muster: Muster) -> None:
    # Emits to one sid take the direct write (send_direct) unless that socket's Engine.IO queue still
    # holds something; alternate with packets put in that queue and check nothing overtakes.
    sio = muster.kernel.gateway.sio
    (client,) = await _members(muster, 1)
    got = _record([client])[0]
    sid = client.get_sid("/")
    for i in range(300):
        if i % 4 == 0:
            await socketio.AsyncManager.emit(sio.manager, "n", i, "/", room=sid)  # through the queue
        else:
            await sio.emit("n", i, to=sid)
    await until(lambda: len(got) == 300)
    assert got == list(range(300))
    # Acks of many events sent at once each answer their own event.
    answers = await asyncio.gather(*(client.call("whoami", timeout=5) for _ in range(50)))
    assert [a["data"]["sid"] for a in answers] == [sid] * 50


async def test_a_socket_s_rooms_are_known_without_a_walk_and_all_left_at_disconnect(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    manager = sio.manager
    a, b = await _members(muster, 2)
    sid = a.get_sid("/")
    await sio.enter_room(sid, "extra")
    expected = {sid, ROOM, "extra"} | {r for r in manager.get_rooms(sid, "/") if r.startswith(("user:", "device:"))}
    assert set(sio.rooms(sid)) == expected
    assert len([r for r in expected if r.startswith(("user:", "device:"))]) == 2
    await sio.leave_room(sid, "extra")
    assert "extra" not in sio.rooms(sid)
    await a.disconnect()
    await until(lambda: not manager.is_connected(sid, "/"))
    await until(lambda: ("/", sid) not in manager._sid_rooms())
    # No room of the namespace still lists it; the other member's rooms are intact.
    assert not any(sid in members for members in manager.rooms["/"].values())
    other = b.get_sid("/")
    assert ROOM in sio.rooms(other) and other in manager.rooms["/"][ROOM]


async def _raw_member(muster: Muster, http: aiohttp.ClientSession) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A websocket client speaking Engine.IO/Socket.IO by hand, offering permessage-deflate."""
    s = await muster.session()
    ws = await http.ws_connect(f"{muster.url}/socket.io/?EIO=4&transport=websocket", compress=15)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0")
    await ws.send_str("40" + json.dumps({"token": s.access_token}))
    connected = await ws.receive_str(timeout=5)
    assert connected.startswith("40"), connected
    # The user's own "online" presence comes next, from a task started after the connect: wait for it,
    # so that what a test emits afterwards is the next frame.
    presence = await ws.receive_str(timeout=5)
    assert presence.startswith('42["presence"'), presence
    return ws, s.user["id"]


async def test_permessage_deflate_is_declined(muster: Muster) -> None:
    async with aiohttp.ClientSession() as http:
        ws, user_id = await _raw_member(muster, http)
        assert ws.compress == 0  # offered, not negotiated
        await muster.kernel.gateway.sio.emit("n", {"x": "好"}, room=user_room(user_id))
        assert await ws.receive_str(timeout=5) == '42["n",{"x":"好"}]'
        await ws.close()


async def test_a_recipient_that_stops_reading_is_dropped_without_stalling_the_others(muster: Muster) -> None:
    gateway = muster.kernel.gateway
    install_fastpath(gateway.sio, send_buffer_limit=64 * 1024)  # for the connections made from here on
    readers = await _members(muster, 2)
    got = _record(readers)
    async with aiohttp.ClientSession() as http:
        stalled, stalled_user = await _raw_member(muster, http)  # never reads again
        await until(lambda: len(gateway.contexts_of_user(stalled_user)) == 1)
        payload = "x" * 200_000
        for i in range(60):  # 12 MB: more than loopback's socket buffers hold
            rooms = [ROOM, user_room(stalled_user)]
            await asyncio.wait_for(gateway.sio.emit("n", {"i": i, "pad": payload}, room=rooms), 5)
        await until(lambda: all(len(box) == 60 for box in got), within=30)
        for box in got:
            assert [item["i"] for item in box] == list(range(60))
        # The server gave up on it: its connection was closed and its disconnect hooks ran.
        await until(lambda: not gateway.contexts_of_user(stalled_user))
        await stalled.close()


async def test_a_closed_recipient_is_skipped(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    a, b, c = await _members(muster, 3)
    got = _record([a, c])
    gone = b.get_sid("/")
    await b.eio.ws.close()  # the client goes away without a Socket.IO goodbye
    for i in range(20):
        await sio.emit("n", i, room=ROOM)
    await until(lambda: all(len(box) == 20 for box in (got[0], got[1])))
    await until(lambda: gone not in muster.kernel.gateway._contexts)
    assert got == [list(range(20)), list(range(20))]


def test_the_packet_class_finds_binary_data_where_python_socketio_s_does() -> None:
    from socketio import packet as sio_packet

    from server.gateway.server import MusterPacket

    samples: list[Any] = [
        None, 1, "text", b"raw", bytearray(b"raw"), [], {}, ["a", 1, None], {"k": "v", "n": [1, {"x": 2}]},
        ["ev", {"deep": [{"deeper": [b"bytes"]}]}], {"a": {"b": {"c": bytearray(3)}}}, [[[[[[b""]]]]]],
        ("tuples", b"are not walked"), {"keys": "only values count", b"key": 1}, [{"x": 1}] * 50 + [b"last"],
    ]
    for data in samples:
        assert MusterPacket.data_is_binary(data) == sio_packet.Packet.data_is_binary(data), data


def test_packets_encode_compact_utf8_json() -> None:
    from socketio import packet as sio_packet

    from server.gateway.server import MusterPacket

    data = ["room.event", {"text": "水位上涨", "n": [1, 2.5, None, True]}]
    encoded = MusterPacket(sio_packet.EVENT, data=data).encode()
    assert encoded == '2["room.event",{"text":"水位上涨","n":[1,2.5,null,true]}]'
    assert json.loads(encoded[1:]) == data
    assert MusterPacket(sio_packet.EVENT, data=["x", b"\x00\x01"]).packet_type == sio_packet.BINARY_EVENT


async def test_binary_emits_still_reach_their_recipients(muster: Muster) -> None:
    sio = muster.kernel.gateway.sio
    assert sio.packet_class.__name__ == "MusterPacket"
    clients = await _members(muster, 2)
    got = _record(clients)
    await sio.emit("n", {"name": "现场.jpg", "blob": b"\x89PNG\x00\xff"}, room=ROOM)
    await until(lambda: all(box for box in got))
    for box in got:
        assert box == [{"name": "现场.jpg", "blob": b"\x89PNG\x00\xff"}]


async def test_websocket_sessions_are_served_by_muster_s_receive_loop(
    muster: Muster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engineio.async_socket import AsyncSocket

    async def refuse(self: AsyncSocket, ws: Any) -> None:
        raise AssertionError("python-engineio's own websocket handler was used")

    monkeypatch.setattr(AsyncSocket, "_websocket_handler", refuse)
    (client,) = await _members(muster, 1)
    got = _record([client])
    await muster.kernel.gateway.sio.emit("n", {"x": 1}, room=ROOM)
    await until(lambda: got[0] == [{"x": 1}])
    for _ in range(3):  # several packets in turn on one connection, each answered
        assert (await client.call("whoami", timeout=5))["data"]["sid"] == client.get_sid("/")


async def test_a_client_upgrading_from_long_polling_reaches_the_direct_path(muster: Muster) -> None:
    gateway = muster.kernel.gateway
    s = await muster.session()
    client = socketio.AsyncClient(reconnection=False)
    muster.sockets.append(client)
    await client.connect(muster.url, auth={"token": s.access_token}, transports=["polling", "websocket"],
                         wait_timeout=5)
    await until(lambda: client.transport() == "websocket")
    sid = client.get_sid("/")
    eio_socket = gateway.sio.eio.sockets[gateway.sio.manager.eio_sid_from_sid(sid, "/")]
    await until(lambda: eio_socket.upgraded and not eio_socket.upgrading)
    assert eio_socket.__dict__.get("_muster_ws") is not None
    await gateway.sio.enter_room(sid, ROOM)
    got = _record([client])
    for i in range(5):
        await gateway.sio.emit("n", {"i": i}, room=ROOM)
    await until(lambda: len(got[0]) == 5)
    assert got[0] == [{"i": i} for i in range(5)]
    assert (await client.call("whoami", timeout=5))["data"]["sid"] == sid


async def test_a_client_closing_its_websocket_ends_its_session(muster: Muster) -> None:
    gateway = muster.kernel.gateway
    async with aiohttp.ClientSession() as http:
        ws, user_id = await _raw_member(muster, http)
        await until(lambda: len(gateway.contexts_of_user(user_id)) == 1)
        await ws.close()
        await until(lambda: not gateway.contexts_of_user(user_id))  # disconnect hooks ran
