"""Expiring counters for rate limits: in memory on one node, in Redis on a cluster."""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis


class Counters(Protocol):
    async def incr(self, key: str, window_s: int) -> int:
        """Add one to `key`; the count starts a window of `window_s` seconds when created."""

    async def get(self, key: str) -> tuple[int, int]:
        """(count, seconds until the window ends); (0, 0) when none."""

    async def reset(self, key: str) -> None: ...


class MemoryCounters:
    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._values.get(key)
        if entry and entry[1] <= time.monotonic():
            del self._values[key]
            return None
        return entry

    async def incr(self, key: str, window_s: int) -> int:
        entry = self._live(key)
        count, until = (entry[0] + 1, entry[1]) if entry else (1, time.monotonic() + window_s)
        self._values[key] = (count, until)
        if len(self._values) > 100_000:  # bounded: drop expired entries
            now = time.monotonic()
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        return count

    async def get(self, key: str) -> tuple[int, int]:
        entry = self._live(key)
        if not entry:
            return 0, 0
        return entry[0], max(1, int(entry[1] - time.monotonic()))

    async def reset(self, key: str) -> None:
        self._values.pop(key, None)


class RedisCounters:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def incr(self, key: str, window_s: int) -> int:
        name = f"{self._prefix}:ctr:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window_s, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def get(self, key: str) -> tuple[int, int]:
        name = f"{self._prefix}:ctr:{key}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.ttl(name)
            value, ttl = await pipe.execute()
        if value is None:
            return 0, 0
        return int(value), max(1, int(ttl))

    async def reset(self, key: str) -> None:
        await self._redis.delete(f"{self._prefix}:ctr:{key}")
