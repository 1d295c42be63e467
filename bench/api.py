"""What authentication costs an API request on the embedded server.

Starts Muster (SQLite, one process) on a free loopback port, then, with the same client and
concurrency, measures requests per second of:

- `GET /healthz`: the baseline (routing, middleware, JSON answer, no auth, no storage),
- `GET /api/me`: a signed-in route (JWT check, user and device looked up in SQLite),

and prints the ratio of the two, measured in the same run because these machines are noisy.

    .venv/bin/python bench/api.py [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def hammer(http: aiohttp.ClientSession, url: str, headers: dict[str, str], seconds: float,
                 concurrency: int) -> tuple[int, list[float]]:
    done = 0
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            started = time.perf_counter()
            async with http.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
            latencies.append(time.perf_counter() - started)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "MUSTER_SERVER_DATA_DIR": data, "MUSTER_SERVER_PORT": str(port),
               "MUSTER_LOG_LEVEL": "error"}
        proc = subprocess.Popen([sys.executable, "-m", "server", "run", "--demo"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
                for _ in range(150):
                    try:
                        async with http.get(f"{base}/readyz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
                else:
                    raise SystemExit("server did not start")
                async with http.post(f"{base}/api/auth/login", json={
                    "username": "commander", "password": "muster-demo", "device_name": "bench",
                    "device_kind": "console"}) as resp:
                    token = (await resp.json())["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                await hammer(http, f"{base}/healthz", {}, 1.0, args.concurrency)  # warm up
                results = {}
                for name, path, headers in (("GET /healthz (baseline)", "/healthz", {}),
                                            ("GET /api/me (signed in)", "/api/me", auth)):
                    count, lat = await hammer(http, base + path, headers, args.seconds, args.concurrency)
                    results[name] = count / args.seconds
                    print(f"{name:26} {count / args.seconds:9.0f} req/s   p50 {pct(lat, .5):6.2f} ms"
                          f"   p99 {pct(lat, .99):6.2f} ms")
                values = list(results.values())
                print(f"ratio signed-in / baseline: {values[1] / values[0]:.2f}")
        finally:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    asyncio.run(main())
