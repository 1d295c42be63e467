"""Expiring counters for rate limits: in memory on one node, in Redis on a cluster."""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis

from server.redis_errors import redis_or_503


class Counters(Protocol):
    async def incr(self, key: str, window_s: int) -> int:
        """Add one to `key`; the count starts a window of `window_s` seconds when created."""

    async def get(self, key: str) -> tuple[int, int]:
        """(count, seconds until the window ends); (0, 0) when none."""

    async def reset(self, key: str) -> None: ...

    async def decr(self, key: str) -> None:
        """Take one back (never below zero)."""


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

    async def decr(self, key: str) -> None:
        entry = self._live(key)
        if entry is not None:
            self._values[key] = (max(0, entry[0] - 1), entry[1])


_DECR_NOT_BELOW_ZERO = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisCounters:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self._prefix}:ctr:{key}"

    async def incr(self, key: str, window_s: int) -> int:
        async with redis_or_503(), self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._name(key))
            pipe.expire(self._name(key), window_s, nx=True)  # EXPIRE NX: Redis 7.0 or newer
            count, _ = await pipe.execute()
        return int(count)

    async def get(self, key: str) -> tuple[int, int]:
        async with redis_or_503(), self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._name(key))
            pipe.ttl(self._name(key))
            value, ttl = await pipe.execute()
        if value is None:
            return 0, 0
        return int(value), max(1, int(ttl))

    async def reset(self, key: str) -> None:
        async with redis_or_503():
            await self._redis.delete(self._name(key))

    async def decr(self, key: str) -> None:
        async with redis_or_503():
            await self._redis.eval(_DECR_NOT_BELOW_ZERO, 1, self._name(key))  # type: ignore[misc]
