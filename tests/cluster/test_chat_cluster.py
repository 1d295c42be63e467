"""Chat on a cluster of real processes: two `python -m server run` nodes, one redis-server, one database.

Each node is a separate process, started the way an operator starts one (environment
variables, `--port`), so the only things the nodes share are what a cluster shares: Redis and
the database (both point MUSTER_SERVER_DATA_DIR at one folder, so they open one SQLite file).
Killing a node with SIGKILL is a node that dies: no shutdown code runs.

Every test gets its own MUSTER_REDIS_PREFIX (its own deployment on the session's redis-server).
Every process a test starts is killed (if still running) and waited for on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from redis.asyncio import Redis

from server.ids import new_id
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "cluster-password-42"
PRESENCE_TTL = 3
KEEP_ALIVE = max(1.0, PRESENCE_TTL / 3)  # how often a node refreshes and expires presence
# Processes on a busy two-core machine: room for a pub/sub hop and a context switch, not for a retry.
SCHEDULING_MARGIN = 1.0
RECORDED = ("room.event", "presence", "room.joined", "server.shutdown")


# -- nodes as processes ----------------------------------------------------------------------------


def cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `python -m server ...` against a data folder (no server needed)."""
    env = {**os.environ, "MUSTER_SERVER_DATA_DIR": str(data_dir), "MUSTER_LOG_LEVEL": "warning"}
    result = subprocess.run([sys.executable, "-m", "server", *args], input=stdin, capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


@dataclass
class Node:
    """One `python -m server run` process; its output goes to a log file shown when a test fails."""

    name: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"node-{self.name}.log"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"node {self.name} is already running"
        env = {**os.environ, "MUSTER_SERVER_DATA_DIR": str(self.data_dir), "MUSTER_LOG_LEVEL": "warning",
               # one test client sends many events from one device; the flood limit has its own tests
               "MUSTER_GATEWAY_EVENTS_PER_SECOND": "10000", "MUSTER_GATEWAY_EVENT_BURST": "10000", **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "server", "run", "--port", str(self.port)],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: the node dies on the spot, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    async def stop(self, within: float = 20) -> int | None:
        """Stop cleanly (SIGTERM) if it still runs, killing it if it does not stop within `within` seconds;
        returns its exit code. Waits without blocking the loop: this process's clients must answer
        the node's goodbyes for it to finish."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, within)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                async with http.get(f"{self.url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} not ready within {within} s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def started(http: aiohttp.ClientSession, *nodes: Node) -> AsyncIterator[None]:
    """Start the nodes and wait until they are ready; on the way out stop each and wait for it."""
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await node.wait_ready(http)
        yield
    finally:
        for node in nodes:
            await node.stop()


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Client:
    """A signed-in device with a real Socket.IO connection that records the events it gets."""

    user_id: str
    device_id: str
    sio: socketio.AsyncClient
    received: dict[str, list[Any]] = field(default_factory=dict)
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    def got(self, event: str) -> list[Any]:
        return self.received.setdefault(event, [])

    async def ok(self, event: str, data: Any = None) -> Any:
        ack = await self.sio.call(event, data if data is not None else {}, timeout=10)
        assert "data" in ack, (event, data, ack)
        return ack["data"]

    def messages(self, room_id: str) -> list[dict[str, Any]]:
        return [e for e in self.got("room.event") if e["room_id"] == room_id and e["kind"] == "message"]

    def presence_of(self, user_id: str) -> list[dict[str, Any]]:
        return [p for p in self.got("presence") if p["user_id"] == user_id]


@dataclass
class Login:
    user_id: str
    device_id: str
    token: str


async def create_user(http: aiohttp.ClientSession, node: Node, admin: Login, username: str) -> str:
    async with http.post(f"{node.url}/api/admin/users", headers={"Authorization": f"Bearer {admin.token}"},
                         json={"username": username, "display_name": username.title(), "password": PASSWORD,
                               "roles": ["responder"]}) as resp:
        body = await resp.json()
        assert resp.status == 201, body
    return str(body["id"])


async def login(http: aiohttp.ClientSession, node: Node, username: str, *, kind: str = "console",
                password: str = PASSWORD) -> Login:
    async with http.post(f"{node.url}/api/auth/login", json={
        "username": username, "password": password, "device_name": f"{username}-{kind}", "device_kind": kind,
    }) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return Login(user_id=body["user"]["id"], device_id=body["device"]["id"], token=body["access_token"])


async def create_room(http: aiohttp.ClientSession, node: Node, owner: Login, *members: Login) -> str:
    room = {"kind": "group", "name": "防汛指挥群", "member_ids": [m.user_id for m in members]}
    async with http.post(f"{node.url}/api/rooms", headers={"Authorization": f"Bearer {owner.token}"},
                         json=room) as resp:
        body = await resp.json()
        assert resp.status == 201, body
    return str(body["id"])


@contextlib.asynccontextmanager
async def clients() -> AsyncIterator[Callable[[Node, Login], Awaitable[Client]]]:
    """Yields `connect(node, login) -> Client`; disconnects every client on the way out."""
    made: list[socketio.AsyncClient] = []

    async def connect(node: Node, who: Login) -> Client:
        sio = socketio.AsyncClient(reconnection=False)
        made.append(sio)
        client = Client(user_id=who.user_id, device_id=who.device_id, sio=sio)
        for name in RECORDED:
            sio.on(name, _recorder(client.got(name)))
        sio.on("disconnect", lambda *_: client.lost.set())
        await sio.connect(node.url, auth={"token": who.token}, transports=["websocket"], wait_timeout=10)
        return client

    try:
        yield connect
    finally:
        for sio in made:
            with contextlib.suppress(Exception):
                await sio.disconnect()


def _recorder(into: list[Any]) -> Callable[..., None]:
    def record(data: Any = None) -> None:
        into.append(data)

    return record


async def until(check: Callable[[], Any], *, within: float = 10, what: str = "condition") -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within} s")
        await asyncio.sleep(0.02)


# -- the cluster -----------------------------------------------------------------------------------


@dataclass
class Cluster:
    a: Node
    b: Node
    http: aiohttp.ClientSession
    admin: Login
    redis: Redis

    async def user(self, username: str) -> str:
        return await create_user(self.http, self.a, self.admin, username)


async def subscribers(redis: Redis, channel: str) -> int:
    [(_, count)] = await redis.pubsub_numsub(channel)
    return int(count)


@pytest.fixture
async def cluster(tmp_path: Path, redis_url: str) -> AsyncIterator[Cluster]:
    """Nodes A and B on one Redis deployment (a fresh prefix) and one data folder (one SQLite file)."""
    prefix = f"t{new_id()}"
    cli(tmp_path, "create-admin", "root", "--password-stdin", stdin=f"{PASSWORD}\n")
    env = {"MUSTER_REDIS_URL": redis_url, "MUSTER_REDIS_PREFIX": prefix, "MUSTER_PRESENCE_TTL": str(PRESENCE_TTL)}
    a, b = Node("a", tmp_path, dict(env)), Node("b", tmp_path, dict(env))
    while b.port == a.port:
        b.port = free_port()
    async with aiohttp.ClientSession() as http, Redis.from_url(redis_url) as redis:
        async with started(http, a, b):
            # Ready answers before the nodes' Socket.IO listeners have subscribed: wait for both.
            for channel in (f"{prefix}:sio", f"{prefix}:bus"):
                deadline = time.monotonic() + 10
                while await subscribers(redis, channel) < 2:
                    assert time.monotonic() < deadline, f"both nodes subscribed to {channel}"
                    await asyncio.sleep(0.05)
            admin = await login(http, a, "root")
            yield Cluster(a=a, b=b, http=http, admin=admin, redis=redis)
        # Both nodes are gone, each stopped cleanly or expired by the other: no device is left online.
        left = [key async for key in redis.scan_iter(match=f"{prefix}:presence:*") if not key.endswith(b":seen")]
        assert left == []


async def test_a_message_sent_on_node_a_reaches_members_on_node_b_once(cluster: Cluster) -> None:
    c = cluster
    await c.user("alice")
    await c.user("bob")
    alice_console = await login(c.http, c.a, "alice", kind="console")
    alice_phone = await login(c.http, c.b, "alice", kind="mobile")
    bob_console = await login(c.http, c.b, "bob", kind="console")
    room = await create_room(c.http, c.a, alice_console, bob_console)

    async with clients() as connect:
        sender = await connect(c.a, alice_console)
        phone = await connect(c.b, alice_phone)
        bob = await connect(c.b, bob_console)
        sent = (await sender.ok("message.send", {"room_id": room, "client_id": "m1", "text": "堤坝水位上涨"}))["event"]
        assert sent["seq"] == 2 and sent["client_id"] == "m1"  # seq 1: the room's creation

        everyone = (sender, phone, bob)
        await until(lambda: all(c.messages(room) for c in everyone), what="the message on every device")
        # A later message from the same node arrives after any copy of the first one would have.
        later = (await sender.ok("message.send", {"room_id": room, "client_id": "m2", "text": "收到请回复"}))["event"]
        await until(lambda: all(len(c.messages(room)) >= 2 for c in everyone), what="the second message")
        for client in everyone:
            assert [(e["id"], e["seq"]) for e in client.messages(room)] == [(sent["id"], 2), (later["id"], 3)]

        # node B reads it from the shared database
        history = await bob.ok("room.history", {"room_id": room, "after_seq": 0})
        assert [(e["seq"], e["kind"], e["client_id"]) for e in history["events"]] == [
            (1, "room", None), (2, "message", "m1"), (3, "message", "m2")]
        assert history["events"][1]["body"]["text"] == "堤坝水位上涨"
        synced = await phone.ok("sync", {"rooms": {room: 1}})
        [mine] = [r for r in synced["rooms"] if r["room"]["id"] == room]
        assert [e["id"] for e in mine["events"]] == [sent["id"], later["id"]]

        # a resend through node B (same sender, same client id) is the stored message, not a new one
        resend = await phone.ok("message.send", {"room_id": room, "client_id": "m1", "text": "堤坝水位上涨"})
        assert resend["duplicate"] is True and resend["event"]["id"] == sent["id"]


async def test_presence_crosses_nodes(cluster: Cluster) -> None:
    c = cluster
    await c.user("carol")
    await c.user("dave")
    carol_login = await login(c.http, c.a, "carol")
    dave_console = await login(c.http, c.b, "dave", kind="console")
    dave_phone = await login(c.http, c.b, "dave", kind="mobile")
    room = await create_room(c.http, c.a, carol_login, dave_console)

    async with clients() as connect:
        carol = await connect(c.a, carol_login)
        await connect(c.b, dave_console)
        await until(lambda: carol.presence_of(dave_console.user_id), what="dave's presence pushed to carol on A")
        [pushed] = carol.presence_of(dave_console.user_id)
        assert pushed["state"] == "online"
        assert [d["device_id"] for d in pushed["devices"]] == [dave_console.device_id]

        dave_mobile = await connect(c.b, dave_phone)
        busy = await dave_mobile.ok("presence.set", {"state": "busy"})
        assert busy["state"] == "busy"
        await until(lambda: len(carol.presence_of(dave_console.user_id)) == 2, what="dave busy pushed to carol")
        assert carol.presence_of(dave_console.user_id)[-1]["state"] == "busy"

        [seen] = (await carol.ok("presence.get", {"user_ids": [dave_console.user_id]}))["users"]
        assert seen["state"] == "busy"
        assert sorted((d["device_id"], d["kind"], d["state"]) for d in seen["devices"]) == sorted([
            (dave_console.device_id, "console", "online"), (dave_phone.device_id, "mobile", "busy")])
        by_room = {u["user_id"]: u["state"] for u in
                   (await carol.ok("presence.get", {"room_id": room}))["users"]}
        assert by_room == {carol.user_id: "online", dave_console.user_id: "busy"}

        # B stops cleanly with dave's sockets open: B itself takes them offline as it goes, instead of
        # leaving them to expire (an expired device's last-seen is its last refresh, before the stop).
        stopping_at = await redis_ms(c.redis)
        assert await c.b.stop() == 0
        [gone] = (await carol.ok("presence.get", {"user_ids": [dave_console.user_id]}))["users"]
        assert (gone["state"], gone["devices"]) == ("offline", [])
        assert gone["last_seen_at"] >= stopping_at
        await until(lambda: carol.presence_of(dave_console.user_id)[-1]["state"] == "offline",
                    what="dave offline pushed to carol")


async def test_a_killed_nodes_devices_go_offline_and_the_other_node_keeps_serving(cluster: Cluster) -> None:
    c = cluster
    await c.user("erin")
    await c.user("frank")
    erin_login = await login(c.http, c.a, "erin")
    frank_console = await login(c.http, c.b, "frank", kind="console")
    frank_phone = await login(c.http, c.b, "frank", kind="mobile")
    room = await create_room(c.http, c.a, erin_login, frank_console)
    frank_id = frank_console.user_id

    async with clients() as connect:
        erin = await connect(c.a, erin_login)
        await connect(c.b, frank_console)
        await connect(c.b, frank_phone)
        [frank] = (await erin.ok("presence.get", {"user_ids": [frank_id]}))["users"]
        assert frank["state"] == "online" and len(frank["devices"]) == 2
        await until(lambda: told_online(erin, frank_id), what="frank online pushed to erin")
        pushes_before = len(erin.presence_of(frank_id))

        c.b.kill()
        # B's devices were last refreshed at most a ttl before it died; A looks once per keep-alive period.
        await until(lambda: len(erin.presence_of(frank_id)) > pushes_before,
                           within=PRESENCE_TTL + KEEP_ALIVE + SCHEDULING_MARGIN, what="frank offline pushed")
        offline = erin.presence_of(frank_id)[-1]
        assert (offline["state"], offline["devices"]) == ("offline", []), offline
        assert offline["last_seen_at"]
        [frank] = (await erin.ok("presence.get", {"user_ids": [frank_id]}))["users"]
        assert (frank["state"], frank["devices"]) == ("offline", [])

        # A keeps serving: frank comes back through A and chat goes on
        back = await connect(c.a, frank_console)
        await until(lambda: erin.presence_of(frank_id)[-1]["state"] == "online", what="frank online again")
        sent = (await erin.ok("message.send", {"room_id": room, "client_id": "after-kill", "text": "还在吗"}))["event"]
        await until(lambda: back.messages(room), what="the message reaches frank on A")
        assert [e["id"] for e in back.messages(room)] == [sent["id"]]
        reply = (await back.ok("message.send", {"room_id": room, "client_id": "r1", "text": "在"}))["event"]
        assert reply["seq"] == sent["seq"] + 1
        await until(lambda: len(erin.messages(room)) == 2, what="frank's reply reaches erin")
    assert c.a.proc is not None and c.a.proc.poll() is None


async def redis_ms(redis: Redis) -> int:
    """Now on Redis' clock, which the presence store uses."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def told_online(client: Client, user_id: str) -> bool:
    """Whether `client` has been told that `user_id` is online."""
    return any(p["state"] == "online" for p in client.presence_of(user_id))
