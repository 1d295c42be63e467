"""The bare python-socketio baseline of `bench/fanout.py`: the same stack as Muster's gateway
(python-socketio's AsyncServer on aiohttp, same server options), with nothing behind it.

- `join` {room}: enter the Socket.IO room; ack `{"data": {}}`;
- `msg` {..., room_id}: emit the payload as `msg` to that room (the sender too, as Muster does
  for the sender's own devices); ack `{"data": {"ok": true}}`.

No authentication, no storage, no sequence numbers.

With `--redis URL` it is one node of several: python-socketio's stock `AsyncRedisManager` carries every
emit through Redis to the nodes (this one too), as python-socketio documents for running more than one
server.

    .venv/bin/python bench/baselines/bare_python_socketio.py --port 8090 [--redis redis://127.0.0.1:6379/0]
                                                              [--max-seconds 600]

Stops by itself when the process that started it goes away, or after `--max-seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web


def make_app(redis_url: str | None = None) -> web.Application:
    # The options of Muster's Gateway (server/gateway/server.py), so only what is behind it differs.
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False,
                               max_http_buffer_size=1_000_000, client_manager=manager)
    app = web.Application()
    sio.attach(app, socketio_path="socket.io")

    @sio.on("join")
    async def join(sid: str, data: Any) -> dict[str, Any]:
        await sio.enter_room(sid, str(data["room"]))
        return {"data": {}}

    @sio.on("msg")
    async def msg(sid: str, data: Any) -> dict[str, Any]:
        await sio.emit("msg", data, room=str(data["room_id"]))
        return {"data": {"ok": True}}

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app.router.add_get("/readyz", readyz)
    return app


def stop_when_orphaned(max_seconds: float) -> Any:
    """A cleanup context: exit when the parent process is gone or the time is up."""

    async def watch() -> None:
        parent = os.getppid()
        loop = asyncio.get_running_loop()
        until = loop.time() + max_seconds
        while True:  # polling: nothing signals that the parent has gone
            await asyncio.sleep(0.5)
            if os.getppid() != parent or loop.time() > until:
                os._exit(0)

    async def context(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch())
        yield
        task.cancel()

    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", metavar="URL", help="join the other nodes on this Redis (stock AsyncRedisManager)")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    app = make_app(args.redis)
    app.cleanup_ctx.append(stop_when_orphaned(args.max_seconds))
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
