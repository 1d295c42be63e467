"""Redis dies and comes back while a room split across two nodes is busy: nothing acked is lost.

Two Muster apps share a redis-server that this test starts itself, so it can SIGKILL it and start
it again on the same port (an empty Redis: no persistence, as after a crash). A sender on node A
sends messages at a steady rate and waits for each ack; members on A and B count what they get
live, and resync the way the web client does (clients/web/app/lib/chat.js): on `sync.hint`, or
when a `room.event` skips a sequence number, they `sync` from the last sequence they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from server.gateway.manager import MusterRedisManager
from server.ids import new_id
from tests.cluster.test_redis_nodes import two_nodes, until
from tests.conftest import free_port
from tests.factories import Muster

FAST = {"gateway": {"events_per_second": 10000, "event_burst": 10000}}
SEND_EVERY = 0.02  # seconds between messages: a steady flow, not a flood


class RedisProcess:
    """A redis-server of this test's own, on a fixed port, that it can kill and start again."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisProcess(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Member:
    """A socket that keeps a room in step like the web client: live events, and `sync` on a hint or a gap."""

    def __init__(self, client: socketio.AsyncClient, room_id: str, last_seq: int) -> None:
        self.client, self.room_id = client, room_id
        self.last_seq = last_seq
        self.live: list[int] = []  # message seqs delivered live, as delivered (duplicates would show)
        self.synced: list[int] = []  # message seqs fetched by sync that were not held yet
        self.applied: list[int] = []  # every message seq taken into the timeline, live or by sync
        self.have: set[int] = set()
        self.hints = 0
        self._sync_wanted = asyncio.Event()
        client.on("room.event", self._on_event)
        client.on("sync.hint", self._on_hint)
        self._task = asyncio.create_task(self._syncer())

    async def _on_event(self, event: dict[str, Any]) -> None:
        if event["room_id"] != self.room_id:
            return
        if event["kind"] == "message":
            self.live.append(event["seq"])
        if event["seq"] > self.last_seq + 1:
            self._sync_wanted.set()  # a gap: something was missed
        self._take(event)

    async def _on_hint(self, data: dict[str, Any]) -> None:
        self.hints += 1
        self._sync_wanted.set()

    def _take(self, event: dict[str, Any], *, synced: bool = False) -> None:
        if event["kind"] == "message" and event["seq"] not in self.have:
            self.have.add(event["seq"])
            self.applied.append(event["seq"])
            if synced:
                self.synced.append(event["seq"])
        self.last_seq = max(self.last_seq, event["seq"])

    async def _syncer(self) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            with contextlib.suppress(Exception):  # a failed sync is retried on the next hint or gap
                while True:
                    answer = await self.client.call("sync", {"rooms": {self.room_id: self.last_seq}}, timeout=10)
                    rooms = [r for r in answer["data"]["rooms"] if r["room"]["id"] == self.room_id]
                    for event in rooms[0]["events"] if rooms else []:
                        self._take(event, synced=True)
                    if not rooms or not rooms[0]["has_more"]:
                        break

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def call(client: socketio.AsyncClient, event: str, data: Any = None) -> Any:
    answer = await client.call(event, data, timeout=10)
    assert "data" in answer, answer
    return answer["data"]


def manager(node: Muster) -> MusterRedisManager:
    m = node.kernel.gateway.sio.manager
    assert isinstance(m, MusterRedisManager)
    return m


async def test_nothing_acked_is_lost_when_redis_restarts_while_messages_flow(
        tmp_path: Path, own_redis: RedisProcess) -> None:
    async with two_nodes(tmp_path, own_redis.url, f"t{new_id()}", **FAST) as (a, b):
        sender_session = await a.session()
        member_sessions = [await a.session() for _ in range(3)]
        sender = await a.socket(sender_session.access_token)
        clients = [await a.socket(member_sessions[0].access_token),
                   await b.socket(member_sessions[1].access_token),
                   await b.socket(member_sessions[2].access_token)]
        created = await call(sender, "room.create", {"kind": "group", "name": "restart",
                                                     "member_ids": [s.user_id for s in member_sessions]})
        room_id = created["room"]["id"]
        room = f"room:{room_id}"
        await until(lambda: len(manager(b).rooms.get("/", {}).get(room, {})) == 2, what="members joined on B")
        await until(lambda: manager(b).node_id in manager(a).nodes_with(room), what="A knows B's members")
        start = (await call(clients[0], "sync", {"rooms": {}}))["rooms"]
        last_seq = max(r["room"]["last_seq"] for r in start if r["room"]["id"] == room_id)
        members = [Member(c, room_id, last_seq) for c in clients]

        acked: list[int] = []
        acked_after_restart: list[int] = []
        restarted = asyncio.Event()
        stop = asyncio.Event()

        async def send_steadily() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                answer = await call(sender, "message.send", {"room_id": room_id, "client_id": f"c{n}",
                                                             "text": f"message {n}"})
                acked.append(answer["event"]["seq"])
                if restarted.is_set():
                    acked_after_restart.append(answer["event"]["seq"])
                await asyncio.sleep(SEND_EVERY)

        sending = asyncio.create_task(send_steadily())
        try:
            await until(lambda: len(acked) >= 20 and all(len(m.live) >= 10 for m in members),
                        what="messages flowing")
            own_redis.kill()
            acked_while_down = len(acked)
            await until(lambda: len(acked) >= acked_while_down + 20, what="sends acked while Redis is down")
            own_redis.start()  # same port, empty
            restarted.set()

            def live_again() -> bool:
                # a message sent after the restart reached every member live, not through a sync
                after = set(acked_after_restart)
                return all(after & set(m.live) for m in members)

            await until(live_again, within=15, what="live delivery resumed after Redis came back")
            resumed_at = len(acked)
            await until(lambda: len(acked) >= resumed_at + 20, what="more messages after the resume")
        finally:
            stop.set()
            await sending
        # Everything acked reaches every member: live, or fetched by the resync.
        await until(lambda: all(set(acked) <= m.have for m in members), within=15,
                    what="every acked message at every member")
        for m in members:
            assert len(m.live) == len(set(m.live)), "a message was delivered live twice"
            # A sync can fetch an event before its live copy arrives: like chat.js, a member takes a
            # sequence number once, whichever way it came first.
            assert len(m.applied) == len(set(m.applied))
            assert set(acked) <= set(m.applied) == set(m.live) | set(m.synced)
        # the members on B missed what was sent while Redis was down, and were told to resync
        for m in members[1:]:
            assert m.synced and m.hints >= 1
        assert manager(b).stats["reconnects"] >= 1
        for m in members:
            await m.close()
