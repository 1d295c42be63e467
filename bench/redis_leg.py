"""The Redis leg of Socket.IO fan-out: Muster's manager next to python-socketio's, in one run.

Two Socket.IO servers ("nodes") in this process share a redis-server this script starts on a free
loopback port. Node B has a member in a room; node A has one too and emits `--messages` room
events (a realistic `room.event` payload, with Chinese text) from `--senders` concurrent tasks,
as concurrent requests would. The figure is messages per second from the first emit until node B
has received every one (decoded and handed to local delivery; no sockets are written, so this is
the Redis leg alone: encode, publish, Redis, receive, decode). Managers compared:

- `stock`: python-socketio's `AsyncRedisManager` (JSON, one channel every node reads, one PUBLISH
  round trip per emit),
- `muster-nobatch`: `MusterRedisManager(batch=False)` (msgpack, a channel per room, one PUBLISH per emit),
- `muster`: `MusterRedisManager` (the same, emits of a tick and those queued behind an in-flight
  publish go out in one pipelined round trip).

The "local" scenario puts every member on node A: Muster skips Redis, the stock manager still publishes.
Each scenario runs `--repeat` times; the ranges and the ratios against `stock` (same run) are printed.

    .venv/bin/python bench/redis_leg.py [--messages 20000] [--senders 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.gateway.manager import MusterRedisManager

ROOM = "room:01hzbench"
PAYLOAD = {
    "id": "01hzx8k2j371ragph4871ab6y8", "room_id": "01hzbench", "seq": 1, "kind": "message",
    "sender_id": "01m8k2j371ragph4871ab6y8wd", "device_id": "01m8k2j37fqr377gvex1621cvk",
    "client_id": "c-1234567890", "created_at": 1764400000000,
    "body": {"text": "请各单位立即到指挥中心集合，携带通讯设备。Report to the command centre.", "mentions": []},
    "target_id": None, "edited_at": None, "recalled_at": None, "pinned": False,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
            c.sendall(b"PING\r\n")
            if c.recv(16).startswith(b"+PONG"):
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


class Counted:
    """Counts what a node hands to local delivery for the benchmark's room."""

    received = 0
    done: asyncio.Event


class StockCounting(socketio.AsyncRedisManager, Counted):  # type: ignore[misc]
    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("event") == "room.event":
            self.received += 1
            if self.received >= self.expected:
                self.done.set()


class MusterCounting(MusterRedisManager, Counted):
    async def deliver_local(self, event: str, data: Any, namespace: str, room: Any, skip_sid: Any) -> None:
        if event == "room.event":
            self.received += 1
            if self.received >= self.expected:
                self.done.set()


def make(kind: str, url: str, prefix: str) -> Any:
    if kind == "stock":
        return StockCounting(url, channel=f"{prefix}:sio")
    return MusterCounting(url, prefix=prefix, batch=kind == "muster", heartbeat=0.5)


async def one_run(kind: str, url: str, scenario: str, messages: int, senders: int) -> float:
    prefix = f"b{time.monotonic_ns()}"
    servers, managers = [], []
    for _ in range(2):
        manager = make(kind, url, prefix)
        server = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
        server.manager_initialized = True
        manager.initialize()
        manager.done = asyncio.Event()
        manager.expected = messages
        servers.append(server)
        managers.append(manager)
    a, b = managers
    await asyncio.sleep(0.3)  # listeners subscribed
    for manager, node in ((a, "A"), (b, "B")):
        if node == "B" and scenario == "local":
            continue
        sid = await manager.connect(f"eio-{node}", "/")
        await manager.enter_room(sid, "/", ROOM)
    if kind != "stock":  # wait until A's view of B is complete (as a running cluster's is)
        while not a.view_ready or (scenario == "split" and not a.nodes_with(ROOM)):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    target = a if scenario == "local" else b  # who must see every message

    async def sender(n: int) -> None:
        for _ in range(n):
            await a.emit("room.event", PAYLOAD, namespace="/", room=ROOM)

    started = time.perf_counter()
    per = messages // senders
    await asyncio.gather(*(sender(per) for _ in range(senders)))
    if kind == "stock" and scenario == "local":
        # nobody elsewhere needs it, but every emit was published (and awaited) all the same
        elapsed = time.perf_counter() - started
    else:
        await asyncio.wait_for(target.done.wait(), timeout=120)
        elapsed = time.perf_counter() - started
    for manager in managers:
        task = manager.thread
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        for name in ("pubsub", "redis"):
            client = getattr(manager, name, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
    return per * senders / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        proc, url = start_redis(folder)
        try:
            for scenario in ("split", "local"):
                results: dict[str, list[float]] = {"stock": [], "muster-nobatch": [], "muster": []}
                for _ in range(args.repeat):
                    for kind in results:  # interleaved, so load changes hit every manager alike
                        results[kind].append(await one_run(kind, url, scenario, args.messages, args.senders))
                print(f"\n{scenario}: {'room split across A and B' if scenario == 'split' else 'every member on A'}"
                      f" ({args.messages} messages, {args.senders} concurrent senders, {args.repeat} runs)")
                base = results["stock"]
                for kind, figures in results.items():
                    ratios = [f / s for f, s in zip(figures, base, strict=True)]
                    print(f"  {kind:15s} {min(figures):>10,.0f} - {max(figures):>10,.0f} msg/s"
                          f"   x{min(ratios):.2f} - x{max(ratios):.2f} stock")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
