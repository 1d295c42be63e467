"""The cluster presence store on a real redis-server: one store per node, all sharing one deployment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from rooms.presence import UserPresence
from rooms.presence_redis import RedisPresence
from server.errors import AppError
from server.ids import new_id
from tests.conftest import free_port
from tests.rooms.test_presence_rule import presence_follows_sockets_and_states

Nodes = Callable[..., RedisPresence]


@pytest.fixture
def prefix() -> str:
    return f"t{new_id()}"


@pytest.fixture
async def nodes(redis_url: str, prefix: str) -> AsyncIterator[Nodes]:
    """Builds stores standing for nodes of one deployment, each with its own Redis client."""
    clients: list[Redis] = []

    def node(ttl: int = 30) -> RedisPresence:
        client = Redis.from_url(redis_url)
        clients.append(client)
        return RedisPresence(client, prefix, ttl=ttl)

    yield node
    if clients:
        async for key in clients[0].scan_iter(match=f"{prefix}:*"):
            await clients[0].delete(key)
    for client in clients:
        await client.aclose()


def devices(p: UserPresence) -> list[tuple[str, str, str]]:
    return [(d.device_id, d.kind, d.state) for d in p.devices]


async def state_of(store: RedisPresence, user_id: str) -> str:
    return (await store.get([user_id]))[user_id].state


async def test_redis_presence_follows_sockets_and_states(nodes: Nodes) -> None:
    await presence_follows_sockets_and_states(nodes())


async def test_unknown_devices_and_sockets_change_nothing(nodes: Nodes) -> None:
    p = nodes()
    assert await p.set_state(user_id="u", device_id="ghost", state="busy") is None
    assert await p.disconnect(user_id="u", device_id="ghost", sid="s1") is None
    await p.connect(user_id="u", device_id="console", kind="console", sid="s1")
    assert await p.disconnect(user_id="u", device_id="console", sid="not-mine") is None
    assert await p.disconnect(user_id="u", device_id="console", sid="s1") is not None
    assert await p.disconnect(user_id="u", device_id="console", sid="s1") is None  # twice: once only
    # another user cannot set the state of someone else's device
    await p.connect(user_id="u", device_id="console", kind="console", sid="s2")
    assert await p.set_state(user_id="other", device_id="console", state="busy") is None
    assert await state_of(p, "u") == "online"


async def test_a_device_connected_on_one_node_is_online_on_another(nodes: Nodes) -> None:
    one, two = nodes(), nodes()
    await one.connect(user_id="u", device_id="console", kind="console", sid="s1")
    got = (await two.get(["u"]))["u"]
    assert got.state == "online" and devices(got) == [("console", "console", "online")]
    changed = await one.set_state(user_id="u", device_id="console", state="away")
    assert changed is not None and changed.state == "away"
    assert await state_of(two, "u") == "away"


async def test_a_user_on_two_nodes_combines_both_devices(nodes: Nodes) -> None:
    one, two = nodes(), nodes()
    assert await one.connect(user_id="u", device_id="console", kind="console", sid="s1") is not None
    # the phone on node 2 joins a user who is already online: no change to report
    assert await two.connect(user_id="u", device_id="phone", kind="mobile", sid="s2") is None
    changed = await one.set_state(user_id="u", device_id="console", state="busy")
    assert changed is not None and changed.state == "busy"
    got = (await two.get(["u"]))["u"]
    assert got.state == "busy"
    assert devices(got) == [("console", "console", "busy"), ("phone", "mobile", "online")]
    # the console closes on node 1: node 1 reports what the phone on node 2 leaves
    changed = await one.disconnect(user_id="u", device_id="console", sid="s1")
    assert changed is not None and changed.state == "online"
    assert devices(changed) == [("phone", "mobile", "online")]
    changed = await two.disconnect(user_id="u", device_id="phone", sid="s2")
    assert changed is not None and changed.state == "offline"


async def test_a_device_with_sockets_on_two_nodes_stays_online_until_both_close(nodes: Nodes) -> None:
    one, two = nodes(), nodes()
    assert await one.connect(user_id="u", device_id="console", kind="console", sid="s1") is not None
    assert await two.connect(user_id="u", device_id="console", kind="console", sid="s2") is None
    assert await one.disconnect(user_id="u", device_id="console", sid="s1") is None
    assert await state_of(one, "u") == "online"
    changed = await two.disconnect(user_id="u", device_id="console", sid="s2")
    assert changed is not None and changed.state == "offline"


async def test_a_node_that_closes_removes_its_devices(nodes: Nodes) -> None:
    one, two = nodes(), nodes()
    await one.connect(user_id="u", device_id="console", kind="console", sid="s1")
    await one.connect(user_id="v", device_id="shared", kind="console", sid="s2")
    await two.connect(user_id="v", device_id="shared", kind="console", sid="s3")
    await one.close()
    assert await state_of(two, "u") == "offline"
    assert (await two.get(["u"]))["u"].last_seen_at
    assert await state_of(two, "v") == "online"  # node 2 still holds a socket of that device
    assert await two.expire() == []


async def until_reported(survivors: list[RedisPresence], user_id: str, *, within: float) -> list[UserPresence]:
    """Survivors keep refreshing their own devices and race each other to expire; returns every
    change they reported, once one of them has reported `user_id` (fails after `within` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    reported: list[UserPresence] = []
    while not any(c.user_id == user_id for c in reported):
        assert loop.time() < deadline, f"{user_id} not expired within {within} s"
        for store in survivors:
            await store.refresh()
        for changes in await asyncio.gather(*(store.expire() for store in survivors)):
            reported += changes
        await asyncio.sleep(0.05)
    return reported


async def test_the_devices_of_a_node_that_died_go_offline_once(nodes: Nodes) -> None:
    ttl = 2  # seconds; the test refreshes every ~0.1 s, so only a stall of most of a ttl could expire a live node
    dying, two, three = nodes(ttl=ttl), nodes(ttl=ttl), nodes(ttl=ttl)
    await dying.connect(user_id="alone", device_id="a-console", kind="console", sid="s1")
    await dying.set_state(user_id="alone", device_id="a-console", state="busy")
    await dying.connect(user_id="split", device_id="s-console", kind="console", sid="s2")
    await two.connect(user_id="split", device_id="s-phone", kind="mobile", sid="s3")
    await dying.connect(user_id="both", device_id="b-console", kind="console", sid="s4")
    await three.connect(user_id="both", device_id="b-console", kind="console", sid="s5")

    # while the node refreshes, its devices outlive the ttl
    loop = asyncio.get_running_loop()
    alive_until = loop.time() + 1.25 * ttl
    while loop.time() < alive_until:
        for store in (dying, two, three):
            await store.refresh()
        assert await asyncio.gather(two.expire(), three.expire()) == [[], []]
        await asyncio.sleep(0.1)

    # the node dies: it stops refreshing and never closes
    reported = await until_reported([two, three], "alone", within=ttl + 3)
    for _ in range(3):  # later rounds find nothing left to report
        reported += await until_nothing(two, three)
    assert [(c.user_id, c.state, c.devices) for c in reported] == [("alone", "offline", ())]
    assert reported[0].last_seen_at
    split = (await two.get(["split"]))["split"]
    assert split.state == "online" and devices(split) == [("s-phone", "mobile", "online")]
    both = (await three.get(["both"]))["both"]
    assert both.state == "online" and devices(both) == [("b-console", "console", "online")]
    # the survivor that still holds the shared device closes it: now it goes
    changed = await three.disconnect(user_id="both", device_id="b-console", sid="s5")
    assert changed is not None and changed.state == "offline"


async def until_nothing(*stores: RedisPresence) -> list[UserPresence]:
    changes: list[UserPresence] = []
    for store in stores:
        await store.refresh()
    for found in await asyncio.gather(*(store.expire() for store in stores)):
        changes += found
    return changes


async def test_a_node_restores_its_devices_when_redis_lost_them(nodes: Nodes, redis_url: str, prefix: str) -> None:
    one, two = nodes(), nodes()
    await one.connect(user_id="u", device_id="console", kind="console", sid="s1")
    await one.set_state(user_id="u", device_id="console", state="busy")
    async with Redis.from_url(redis_url) as redis:  # Redis restarts empty, or a peer expired them
        async for key in redis.scan_iter(match=f"{prefix}:presence:*"):
            await redis.delete(key)
    assert await state_of(two, "u") == "offline"
    await one.refresh()
    restored = await one.expire()
    assert [(c.user_id, c.state) for c in restored] == [("u", "busy")]
    assert await state_of(two, "u") == "busy"
    assert await one.expire() == []


async def test_an_unreachable_redis_does_not_break_connecting_sockets() -> None:
    port = free_port()  # nothing listens there
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        p = RedisPresence(client, "down", ttl=30)
        assert await p.connect(user_id="u", device_id="console", kind="console", sid="s1") is None
        assert await p.disconnect(user_id="u", device_id="console", sid="s1") is None
        await p.refresh()
        assert await p.expire() == []
        await p.close()
        # asking is a request that fails: 503, never a 500
        with pytest.raises(AppError) as err:
            await p.get(["u"])
        assert (err.value.status, err.value.code) == (503, "service.unavailable")
        with pytest.raises(AppError):
            await p.set_state(user_id="u", device_id="console", state="busy")
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
