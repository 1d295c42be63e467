"""docker/compose.yaml's topology on loopback: clients reach two Muster nodes only through nginx.

nginx runs docker/nginx.conf itself (tests/cluster/topology.py), in front of two `python -m server run`
processes sharing one redis-server deployment and one data folder. Every request and socket of the
clients goes to nginx's port; the test reads each node's /metrics directly only to see which node a
socket landed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from server.ids import new_id
from tests.cluster.test_chat_cluster import PASSWORD, RECORDED, Client, Node, cli, until
from tests.cluster.topology import NGINX_HINT, Topology, find_nginx, gauge, running_topology

ADDRESS_LIMIT = 3  # failed sign-ins per client address: small, to see which address Muster counts
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
async def topology(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Topology, aiohttp.ClientSession]]:
    if find_nginx() is None:
        pytest.fail(NGINX_HINT, pytrace=False)
    cli(tmp_path, "create-admin", "root", "--password-stdin", stdin=f"{PASSWORD}\n")
    env = {"MUSTER_REDIS_URL": redis_url, "MUSTER_REDIS_PREFIX": f"t{new_id()}",
           "MUSTER_AUTH_TRUST_FORWARDED_FOR": "true", "MUSTER_AUTH_MAX_FAILURES_PER_ADDRESS": str(ADDRESS_LIMIT)}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        async with running_topology(http, tmp_path, env) as topo:
            try:
                yield topo, http
            finally:
                print(topo.logs())  # shown when the test fails


async def api(http: aiohttp.ClientSession, topo: Topology, method: str, path: str, *, token: str = "",
              expect: int = 200, **kw: Any) -> Any:
    headers = {**kw.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    async with http.request(method, f"{topo.url}{path}", headers=headers, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        assert resp.status == expect, (method, path, resp.status, body)
        return body


async def sign_in(http: aiohttp.ClientSession, topo: Topology, username: str, *, kind: str = "console",
                  device: str = "browser") -> dict[str, Any]:
    return await api(http, topo, "POST", "/api/auth/login", json={
        "username": username, "password": PASSWORD, "device_name": f"{username}-{device}", "device_kind": kind})


async def sockets_on(http: aiohttp.ClientSession, node: Node) -> float:
    """How many sockets a node holds (read from the node itself, not through nginx)."""
    async with http.get(f"{node.url}/metrics") as resp:
        return gauge(await resp.text(), "muster_sockets_connected")


@contextlib.asynccontextmanager
async def clients(topo: Topology) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """`connect(session, transport="websocket", headers=None) -> Client`, always through nginx."""
    made: list[socketio.AsyncClient] = []

    async def connect(session: dict[str, Any], transport: str = "websocket",
                      headers: dict[str, str] | None = None) -> Client:
        sio = socketio.AsyncClient(reconnection=False, ssl_verify=False)
        made.append(sio)
        client = Client(user_id=session["user"]["id"], device_id=session["device"]["id"], sio=sio)
        for name in RECORDED:
            sio.on(name, lambda data=None, into=client.got(name): into.append(data))
        sio.on("disconnect", lambda *_: client.lost.set())
        await sio.connect(topo.url, auth={"token": session["access_token"]}, transports=[transport],
                          headers=headers or {}, wait_timeout=10)
        return client

    try:
        yield connect
    finally:
        for sio in made:
            with contextlib.suppress(Exception):
                await sio.disconnect()


async def test_two_nodes_behind_nginx(topology: tuple[Topology, aiohttp.ClientSession]) -> None:
    topo, http = topology
    root = await sign_in(http, topo, "root")
    ids = {}
    for name in ("alice", "bob", "carol"):
        made = await api(http, topo, "POST", "/api/admin/users", token=root["access_token"], expect=201, json={
            "username": name, "display_name": name.title(), "password": PASSWORD, "roles": ["responder"]})
        ids[name] = made["id"]
    alice = await sign_in(http, topo, "alice")
    room = (await api(http, topo, "POST", "/api/rooms", token=alice["access_token"], expect=201, json={
        "kind": "group", "name": "防汛指挥群", "member_ids": [ids["bob"], ids["carol"]]}))["id"]

    async with clients(topo) as connect:
        # Websockets opened through nginx land on both nodes (least connections); a browser's Origin
        # is accepted because nginx tells the node the scheme and host the browser used.
        async def connect_and_locate(session: dict[str, Any]) -> tuple[Client, Node]:
            before = [await sockets_on(http, node) for node in topo.nodes]
            client = await connect(session, headers={"Origin": topo.url})
            after = [await sockets_on(http, node) for node in topo.nodes]
            [node] = [n for n, x, y in zip(topo.nodes, before, after, strict=True) if y == x + 1]
            return client, node

        sender, sender_node = await connect_and_locate(alice)
        bob, bob_node = await connect_and_locate(await sign_in(http, topo, "bob", device="console-1"))
        if bob_node is sender_node:  # least_conn should have chosen the other node; one more, to be sure
            bob, bob_node = await connect_and_locate(await sign_in(http, topo, "bob", device="console-2"))
        assert {sender_node.name, bob_node.name} == {"a", "b"}, "websockets through nginx reach both nodes"

        # Long-polling through nginx: every request of the session reaches the node that holds it.
        carol_session = await sign_in(http, topo, "carol", kind="mobile")
        carol = await connect(carol_session, transport="polling")
        assert carol.sio.transport() == "polling"
        assert (await carol.ok("whoami"))["user_id"] == ids["carol"]

        # Readiness: the nodes subscribe to Redis a moment after /readyz answers. Until bob (on the other
        # node) has heard one probe, a message could not cross; after that none may be lost.
        probes = 0
        while not bob.messages(room):
            assert probes < 50, "no probe crossed from alice's node to bob's"
            probes += 1
            await sender.ok("message.send", {"room_id": room, "client_id": f"probe-{probes}", "text": "试音"})
            await asyncio.sleep(0.2)

        sent = (await sender.ok("message.send", {"room_id": room, "client_id": "m1", "text": "堤坝水位上涨"}))["event"]
        await until(lambda: any(e["id"] == sent["id"] for e in bob.messages(room)), what="alice's message on bob")
        await until(lambda: any(e["id"] == sent["id"] for e in carol.messages(room)), what="alice's message on carol")
        for client in (bob, carol):
            assert [e["id"] for e in client.messages(room)].count(sent["id"]) == 1
        # The polling client sends too, and the websocket clients on either node get it.
        reply = (await carol.ok("message.send", {"room_id": room, "client_id": "c1", "text": "收到"}))["event"]
        await until(lambda: any(e["id"] == reply["id"] for e in bob.messages(room))
                    and any(e["id"] == reply["id"] for e in sender.messages(room)), what="carol's reply")

        # A tus upload through nginx, each PATCH larger than the 2 MiB the rest of the API may send; nginx may
        # send the two PATCHes to different nodes (they share the files folder, as compose's nodes share a volume).
        content = os.urandom(6 * 1024 * 1024 + 17)
        half = len(content) // 2
        async with http.post(f"{topo.url}/api/uploads", headers={
                **TUS, "Authorization": f"Bearer {alice['access_token']}", "Upload-Length": str(len(content)),
                "Upload-Metadata": "filename ZmllbGQuYmlu"}) as resp:
            assert resp.status == 201, await resp.text()
            location = resp.headers["Location"]
        for offset, chunk in ((0, content[:half]), (half, content[half:])):
            async with http.patch(f"{topo.url}{location}", data=chunk, headers={
                    **TUS, "Authorization": f"Bearer {alice['access_token']}", "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream"}) as resp:
                assert resp.status == 204, await resp.text()
        file_id = resp.headers["Muster-File-Id"]
        async with http.get(f"{topo.url}/api/files/{file_id}/content",
                            headers={"Authorization": f"Bearer {alice['access_token']}"}) as resp:
            assert resp.status == 200
            assert hashlib.sha256(await resp.read()).hexdigest() == hashlib.sha256(content).hexdigest()

        # Static scripts are compressed by nginx; /metrics is not reachable from outside.
        async with http.get(f"{topo.url}/vendor/socket.io.esm.min.js", headers={"Accept-Encoding": "gzip"},
                            auto_decompress=False) as resp:
            assert resp.status == 200 and resp.headers.get("Content-Encoding") == "gzip"
        await api(http, topo, "GET", "/metrics", expect=404)

        # Kill bob's node: his socket closes, nginx sends everything to the node left, chat goes on.
        dead = bob_node
        survivor = topo.b if dead is topo.a else topo.a
        dead.kill()
        await asyncio.wait_for(bob.lost.wait(), 10)
        await api(http, topo, "GET", "/readyz")
        bob_again = await connect(await sign_in(http, topo, "bob", device="again"))
        assert await sockets_on(http, survivor) >= 1
        assert not sender.lost.is_set()  # alice is on the node that is left
        after = (await sender.ok("message.send", {"room_id": room, "client_id": "m2", "text": "还在吗"}))["event"]
        await until(lambda: any(e["id"] == after["id"] for e in bob_again.messages(room)), what="message after kill")
        history = await bob_again.ok("room.history", {"room_id": room, "after_seq": sent["seq"] - 1})
        assert [e["client_id"] for e in history["events"]] == ["m1", "c1", "m2"]

    # nginx hands the node the client's address and overwrites a forged X-Forwarded-For: failed sign-ins
    # from "different" forged addresses all count against the one real address.
    for n in range(ADDRESS_LIMIT):
        await api(http, topo, "POST", "/api/auth/login", expect=401, headers={"X-Forwarded-For": f"10.0.0.{n}"},
                  json={"username": f"nobody{n}", "password": "wrong-password", "device_name": "x",
                        "device_kind": "console"})
    throttled = await api(http, topo, "POST", "/api/auth/login", expect=429, headers={"X-Forwarded-For": "10.9.9.9"},
                          json={"username": "carol", "password": PASSWORD, "device_name": "x",
                                "device_kind": "console"})
    assert throttled["error"]["code"] == "auth.throttled"
