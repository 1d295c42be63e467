"""Builders for tests: settings, a running Muster on a real port, users and their sessions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher

from server.app import create_app
from server.auth.passwords import Passwords
from server.kernel import KERNEL, Kernel
from server.settings import Settings, load_settings

# Cheap Argon2 parameters so that tests creating many users stay fast; production uses the defaults.
FAST_PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
PASSWORD = "correct-horse-42"
_names = itertools.count(1)


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for one test: defaults, a private data folder, no environment variables."""
    overrides: dict[str, dict[str, Any]] = {
        "server": {"data_dir": str(tmp_path), "host": "127.0.0.1"},
        "log": {"level": "warning"},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_settings(environ={}, overrides=overrides)


class SocketRefused(socketio.exceptions.ConnectionError):
    """The server refused a socket connection; `data` is what it said (its connect_error payload)."""

    def __init__(self, data: Any) -> None:
        super().__init__(f"socket connection refused: {data!r}")
        self.data = data


@dataclass
class Session:
    """A signed-in user on one device."""

    user: dict[str, Any]
    device: dict[str, Any]
    access_token: str
    refresh_token: str
    username: str
    password: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def user_id(self) -> str:
        return str(self.user["id"])

    @property
    def device_id(self) -> str:
        return str(self.device["id"])


@dataclass
class Muster:
    """A Muster app served on a real loopback port."""

    app: web.Application
    server: TestServer
    http: aiohttp.ClientSession
    sockets: list[socketio.AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def kernel(self) -> Kernel:
        return self.app[KERNEL]

    async def create_user(
        self, *, roles: list[str] | None = None, username: str | None = None, password: str = PASSWORD,
        department_id: str | None = None, display_name: str | None = None,
    ) -> dict[str, Any]:
        name = username or f"user{next(_names)}"
        user = await self.kernel.org.create_user(
            None, username=name, display_name=display_name or name.title(), password=password,
            department_id=department_id, roles=roles or ["responder"],
        )
        return {"id": user.id, "username": user.username}

    async def login(
        self, username: str, password: str = PASSWORD, *, device_kind: str = "console", device_name: str = "test",
        device_id: str | None = None,
    ) -> Session:
        body: dict[str, Any] = {"username": username, "password": password, "device_name": device_name,
                                "device_kind": device_kind}
        if device_id:
            body["device_id"] = device_id
        async with self.http.post(f"{self.url}/api/auth/login", json=body) as resp:
            data = await resp.json()
            assert resp.status == 200, data
        return Session(user=data["user"], device=data["device"], access_token=data["access_token"],
                       refresh_token=data["refresh_token"], username=username, password=password)

    async def session(self, role: str = "responder", **kw: Any) -> Session:
        """A new user with `role`, signed in on a new device."""
        user = await self.create_user(roles=[role])
        return await self.login(user["username"], **kw)

    async def request(self, method: str, path: str, session: Session | None = None, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if session is not None:
            headers.update(session.headers)
        async with self.http.request(method, f"{self.url}{path}", headers=headers, **kw) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def socket(self, token: str | None, *, auth: Any = None, wait: float = 5) -> socketio.AsyncClient:
        """A real Socket.IO client connected over the real port (raises socketio.exceptions.ConnectionError)."""
        client = socketio.AsyncClient(reconnection=False)
        self.sockets.append(client)
        refusals: list[Any] = []

        async def on_connect_error(data: Any = None) -> None:
            refusals.append(data)

        client.on("connect_error", on_connect_error)
        try:
            await client.connect(self.url, auth=auth if auth is not None else {"token": token},
                                 transports=["websocket"], wait_timeout=wait)
        except socketio.exceptions.ConnectionError as exc:
            raise SocketRefused(refusals[-1] if refusals else None) from exc
        return client

    async def close_sockets(self) -> None:
        for client in self.sockets:
            with contextlib.suppress(Exception):
                await client.disconnect()


@contextlib.asynccontextmanager
async def running_muster(settings: Settings, **kw: Any) -> AsyncIterator[Muster]:
    app = create_app(settings, passwords=FAST_PASSWORDS, **kw)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    muster = Muster(app=app, server=server, http=http)
    try:
        yield muster
    finally:
        await muster.close_sockets()
        await http.close()
        await server.close()


async def until(check: Callable[[], object], within: float = 10) -> None:
    """Wait until `check()` is true, polling every 10 ms; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
