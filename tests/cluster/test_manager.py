"""Muster's Socket.IO manager over Redis (server/gateway/manager.py): routing by room.

Two Muster apps in this process, each on its own port with its own Redis clients and manager,
sharing one real redis-server (their own prefix) and one SQLite file, with real Socket.IO clients
over real ports on each (the setup of test_redis_nodes.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from redis.asyncio import Redis

from server.gateway.manager import MusterRedisManager
from server.ids import new_id
from tests.cluster.test_redis_nodes import OBSERVER, Nodes, received, subscribers, two_nodes, until
from tests.factories import Muster, Session

FAST = {"gateway": {"events_per_second": 10000, "event_burst": 10000}}


@pytest.fixture
def prefix() -> str:
    return f"t{new_id()}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, client_name=OBSERVER)
    yield client
    await client.aclose()


@pytest.fixture
async def nodes(tmp_path: Path, redis_url: str, prefix: str) -> AsyncIterator[Nodes]:
    async with two_nodes(tmp_path, redis_url, prefix, **FAST) as pair:
        yield pair


def manager(node: Muster) -> MusterRedisManager:
    m = node.kernel.gateway.sio.manager
    assert isinstance(m, MusterRedisManager)
    return m


def channel(prefix: str, room: str) -> str:
    return f"{prefix}:sio:r:{room}"


async def call(client: socketio.AsyncClient, event: str, data: Any = None) -> Any:
    answer = await client.call(event, data, timeout=10)
    assert "data" in answer, answer
    return answer["data"]


async def group_room(owner: socketio.AsyncClient, members: list[Session]) -> str:
    data = await call(owner, "room.create", {"kind": "group", "name": f"r{new_id()[:6]}",
                                             "member_ids": [m.user_id for m in members]})
    return str(data["room"]["id"])


def messages_of(seen: list[Any], room_id: str) -> list[str]:
    return [e["body"]["text"] for e in seen if e["room_id"] == room_id and e["kind"] == "message"]


async def in_room(node: Muster, room: str, sockets: int) -> None:
    """Wait until `sockets` of the node's sockets are in `room` (joins travel over the control bus)."""
    await until(lambda: len(manager(node).rooms.get("/", {}).get(room, {})) == sockets,
                what=f"{sockets} sockets in {room}")


async def send(client: socketio.AsyncClient, room_id: str, text: str) -> None:
    await call(client, "message.send", {"room_id": room_id, "client_id": f"c{new_id()}", "text": text})


async def test_a_room_split_across_nodes_gets_every_message_exactly_once(nodes: Nodes) -> None:
    a, b = nodes
    owner, member, other = await a.session(), await a.session(), await a.session()
    on_a = await a.socket(owner.access_token)
    on_b = [await b.socket(member.access_token), await b.socket(other.access_token)]
    rid = await group_room(on_a, [member, other])
    room = f"room:{rid}"
    await in_room(b, room, 2)
    await until(lambda: manager(b).node_id in manager(a).nodes_with(room), what="A knows B has members")
    await until(lambda: manager(a).node_id in manager(b).nodes_with(room), what="B knows A has members")
    got = [received(s, "room.event") for s in (on_a, *on_b)]

    texts = [f"m{i}" for i in range(30)]
    for i, text in enumerate(texts):
        await send(on_a if i % 2 else on_b[i % 3 == 0], rid, text)

    await until(lambda: all(len(messages_of(g, rid)) >= len(texts) for g in got), what="every message delivered")
    via_a = {text for i, text in enumerate(texts) if i % 2}
    for g in got:
        assert sorted(messages_of(g, rid)) == sorted(texts)  # each exactly once, on both nodes
        events = [e for e in g if e["room_id"] == rid and e["kind"] == "message"]
        # Each node's emits arrive in the order it made them. Messages sent through different nodes
        # may arrive in another order than their seq (the sender's ack does not wait for the other
        # node's delivery); clients order a room by seq.
        for through_a in (True, False):
            seqs = [e["seq"] for e in events if (e["body"]["text"] in via_a) is through_a]
            assert seqs == sorted(seqs) and len(seqs) == 15


async def test_a_room_whose_members_are_all_on_one_node_is_not_published(nodes: Nodes, redis: Redis,
                                                                          prefix: str) -> None:
    a, b = nodes
    owner, member = await a.session(), await a.session()
    bystander = await b.socket((await a.session()).access_token)  # B is busy, but not in this room
    on_a = [await a.socket(owner.access_token), await a.socket(member.access_token)]
    rid = await group_room(on_a[0], [member])
    room = f"room:{rid}"
    await in_room(a, room, 2)
    await until(lambda: manager(a).view_ready, what="A has heard B's rooms")
    got = [received(s, "room.event") for s in on_a]
    spy = redis.pubsub()
    await spy.subscribe(channel(prefix, room))
    before = dict(manager(a).stats)

    for i in range(5):
        await send(on_a[i % 2], rid, f"m{i}")

    await until(lambda: all(len(messages_of(g, rid)) == 5 for g in got), what="delivered on A")
    assert manager(a).stats["skipped"] - before["skipped"] >= 5
    metric = a.kernel.metrics.sio_redis_emits.labels("local_only")._value.get()
    assert metric >= 5
    assert manager(a).nodes_with(room) == set()
    heard = [m for m in [await spy.get_message(timeout=0.2) for _ in range(3)] if m and m["type"] == "message"]
    assert heard == []  # nothing went through Redis
    assert bystander.connected
    await spy.aclose()


async def test_a_node_without_members_of_a_room_never_receives_it(nodes: Nodes, redis: Redis, prefix: str) -> None:
    a, b = nodes
    owner, member, split_member = await a.session(), await a.session(), await a.session()
    on_a = [await a.socket(owner.access_token), await a.socket(member.access_token)]
    on_b = await b.socket(split_member.access_token)
    local_rid = await group_room(on_a[0], [member])  # only on A
    split_rid = await group_room(on_a[0], [split_member])  # on A and B
    await in_room(a, f"room:{local_rid}", 2)
    await in_room(b, f"room:{split_rid}", 1)
    b_events = received(on_b, "room.event")
    # Force A to publish even the local room (as before its view of B is complete): B must still
    # not hear it, because B is not subscribed to that room's channel.
    manager(a)._view_ready_at = float("inf")

    for i in range(3):
        await send(on_a[0], local_rid, f"local{i}")
        await send(on_a[0], split_rid, f"split{i}")

    await until(lambda: len(messages_of(b_events, split_rid)) == 3, what="B got the split room")
    assert messages_of(b_events, local_rid) == []
    assert await subscribers(redis, channel(prefix, f"room:{local_rid}")) == 1  # A only
    assert await subscribers(redis, channel(prefix, f"room:{split_rid}")) == 2
    assert f"room:{local_rid}" not in manager(b).rooms.get("/", {})


async def test_leaving_the_last_local_member_unsubscribes(nodes: Nodes, redis: Redis, prefix: str) -> None:
    a, b = nodes
    owner, member = await a.session(), await a.session()
    on_a = await a.socket(owner.access_token)
    on_b = [await b.socket(member.access_token), await b.socket(member.access_token)]  # two tabs
    rid = await group_room(on_a, [member])
    room = f"room:{rid}"
    await in_room(b, room, 2)
    await until(lambda: subscribers(redis, channel(prefix, room)), what="subscribed")
    assert await subscribers(redis, channel(prefix, room)) == 2

    await on_b[0].disconnect()  # one tab closes: the other is still a member here
    await in_room(b, room, 1)
    assert await subscribers(redis, channel(prefix, room)) == 2

    await call(on_a, "room.remove", {"room_id": rid, "user_id": member.user_id})
    await in_room(b, room, 0)

    async def unsubscribed() -> bool:
        return await subscribers(redis, channel(prefix, room)) == 1

    await until(unsubscribed, what="B left the room's channel")
    await until(lambda: manager(a).nodes_with(room) == set(), what="A heard that B left")
    await until(lambda: manager(a).view_ready, what="A's view complete")
    skipped = manager(a).stats["skipped"]
    await send(on_a, rid, "after")
    assert manager(a).stats["skipped"] > skipped  # nobody else needs it: not published


async def test_emits_to_a_sid_and_to_several_rooms_cross_nodes_once(nodes: Nodes) -> None:
    a, b = nodes
    user = await a.session()
    client = await b.socket(user.access_token)
    sid = (await call(client, "whoami"))["sid"]
    assert sid.startswith(manager(b).node_id)
    pings = received(client, "test.ping")
    ended = received(client, "session.ended")
    sio = a.kernel.gateway.sio

    await sio.emit("test.ping", {"to": "sid"}, to=sid)
    # one socket in both rooms: one copy, though the emit travels on both rooms' channels
    manager(a)._view_ready_at = float("inf")
    await sio.emit("test.ping", {"to": "both"}, room=[f"user:{user.user_id}", f"device:{user.device_id}"])
    await until(lambda: len(pings) == 2, what="both emits delivered on B")
    await sio.emit("session.ended", {"reason": "test"}, to=sid)
    await sio.disconnect(sid)  # a sid on B, disconnected from A
    await until(lambda: not client.connected, what="B closed the socket")
    assert pings == [{"to": "sid"}, {"to": "both"}]
    assert ended == [{"reason": "test"}]
