"""Helpers for chat tests: clients that record what they receive, rooms made over the socket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio

from server.settings import Settings
from tests.factories import Muster, Session, make_settings


@dataclass
class Client:
    """A signed-in device with a real Socket.IO connection that records every event it gets."""

    session: Session
    sio: socketio.AsyncClient
    received: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.session.user_id

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data if data is not None else {}, timeout=10)

    async def ok(self, event: str, data: Any = None) -> Any:
        ack = await self.call(event, data)
        assert "data" in ack, (event, data, ack)
        return ack["data"]

    def got(self, event: str) -> list[Any]:
        return self.received.setdefault(event, [])

    def room_events(self, room_id: str) -> list[dict[str, Any]]:
        return [e for e in self.got("room.event") if e["room_id"] == room_id]


_client_ids = itertools.count(1)
RECORDED = ("room.event", "room.joined", "room.left", "room.read", "typing", "mention", "ack.requested",
            "message.acked", "presence", "session.ended")


async def connect(muster: Muster, session: Session) -> Client:
    sio = await muster.socket(session.access_token)
    client = Client(session, sio)
    for name in RECORDED:
        client.sio.on(name, _recorder(client.got(name)))
    return client


def _recorder(into: list[Any]) -> Callable[[Any], None]:
    def record(data: Any = None) -> None:
        into.append(data)

    return record


async def new_client(muster: Muster, role: str = "responder", **kw: Any) -> Client:
    return await connect(muster, await muster.session(role, **kw))


async def make_room(owner: Client, *members: Client, name: str = "防汛指挥群", kind: str = "group") -> str:
    data = await owner.ok("room.create", {"kind": kind, "name": name, "member_ids": [m.user_id for m in members]})
    return str(data["room"]["id"])


async def until(check: Callable[[], Any], within: float = 10, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def send(client: Client, room_id: str, text: str, client_id: str | None = None, **extra: Any) -> dict[str, Any]:
    payload = {"room_id": room_id, "client_id": client_id or f"c{next(_client_ids)}", "text": text, **extra}
    return dict((await client.ok("message.send", payload))["event"])


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    """Chat tests send hundreds of messages from one device: lift the flood limit (tested on its own)."""
    return make_settings(tmp_path, gateway={"events_per_second": 10_000.0, "event_burst": 10_000})
