"""Helpers for file tests: raw tus requests over a real port, and a proxy that cuts connections."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict

from tests.factories import Muster, Session

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: Any


async def call(muster: Muster, method: str, path: str, session: Session | None = None, *,
               headers: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
    h = dict(headers or {})
    if session is not None:
        h.update(session.headers)
    async with muster.http.request(method, f"{muster.url}{path}", headers=h, data=data) as resp:
        raw = await resp.read()
        body: Any = raw
        if resp.content_type == "application/json" and raw:
            import json

            body = json.loads(raw)
        return Reply(resp.status, CIMultiDict(resp.headers), body)


async def create(muster: Muster, session: Session, length: int, *, name: str = "现场照片.jpg",
                 extra: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
    headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": meta(filename=name, **(extra or {}))}
    if data is not None:
        headers.update(OCTETS)
    return await call(muster, "POST", "/api/uploads", session, headers=headers, data=data)


async def patch(muster: Muster, session: Session, location: str, offset: int, data: bytes,
                **headers: str) -> Reply:
    return await call(muster, "PATCH", location, session,
                      headers={**TUS, **OCTETS, "Upload-Offset": str(offset), **headers}, data=data)


async def upload(muster: Muster, session: Session, data: bytes, *, name: str = "报告.pdf",
                 extra: dict[str, str] | None = None) -> str:
    """A whole upload in one PATCH; returns the file id."""
    created = await create(muster, session, len(data), name=name, extra=extra)
    assert created.status == 201, created
    done = await patch(muster, session, created.headers["Location"], 0, data)
    assert done.status == 204, done
    return done.headers["Muster-File-Id"]


async def download(muster: Muster, session: Session | None, file_id: str, **headers: str) -> Reply:
    return await call(muster, "GET", f"/api/files/{file_id}/content", session, headers=headers)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CuttingProxy:
    """A TCP proxy in front of Muster that can drop a connection after some bytes of a request.

    It forwards bytes unchanged; when `cut_after` is set, the first connection whose client side has
    sent that many bytes is closed on both sides, as a mobile network that drops would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after: int | None = None
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        sent = 0
        cut = asyncio.Event()

        async def upstream() -> None:
            nonlocal sent
            while data := await client_r.read(65536):
                if self.cut_after is not None and sent + len(data) >= self.cut_after:
                    self.cut_after = None
                    self.cuts += 1
                    cut.set()
                    return
                sent += len(data)
                up_w.write(data)
                await up_w.drain()

        async def downstream() -> None:
            while data := await up_r.read(65536):
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, up_w):
            if cut.is_set():
                # An abrupt drop (RST), not a polite close.
                writer.transport.abort()
            else:
                writer.close()


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
