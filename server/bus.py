"""A small control bus between nodes: in-process on one node, Redis pub/sub on a cluster.

The shape follows python-socketio's pub/sub manager: the base class does the
dispatch, and an implementation only publishes and listens. It carries control
messages (disconnect a revoked device's sockets everywhere), not chat traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from server.logging import get_logger
from server.redis_errors import redis_or_503

Handler = Callable[[dict[str, Any]], Awaitable[None]]
log = get_logger("muster.bus")


class Bus:
    """Topic-based publish/subscribe; every node's subscribers get every message."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._reconnect_hooks: list[Callable[[], Awaitable[None]]] = []

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook()` after the bus listens again following a lost connection: whatever
        was published meanwhile never reached this node."""
        self._reconnect_hooks.append(hook)

    async def _reconnected(self) -> None:
        for hook in self._reconnect_hooks:
            try:
                await hook()
            except Exception:
                log.exception("bus reconnect hook failed")

    async def start(self) -> None:
        """Begin listening."""

    async def stop(self) -> None:
        """Stop listening."""

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _dispatch(self, topic: str, payload: dict[str, Any]) -> None:
        for handler in self._handlers.get(topic, []):
            try:
                await handler(payload)
            except Exception:
                log.exception("bus handler failed", topic=topic)


class LocalBus(Bus):
    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        await self._dispatch(topic, payload)


class RedisBus(Bus):
    """Redis pub/sub on one channel per deployment, with reconnects.

    A listener that loses its connection resubscribes instead of dying silently.
    """

    def __init__(self, redis: Redis, prefix: str, *, retry_delay: float = 0.5) -> None:
        super().__init__()
        self._redis = redis
        self._channel = f"{prefix}:bus"
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="muster-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            # Bounded: a listener cancelled in the middle of redis-py's reconnect must not hold up shutdown.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5)
            self._task = None

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        async with redis_or_503():
            await self._redis.publish(self._channel, json.dumps({"t": topic, "p": payload}))

    async def _listen(self) -> None:
        lost = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._ready.set()
                if lost:
                    lost = False
                    await self._reconnected()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        data = json.loads(message["data"])
                        await self._dispatch(str(data["t"]), dict(data["p"]))
                    except (ValueError, KeyError, TypeError):
                        log.warning("bus message ignored: not a Muster message")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                lost = True
                log.warning("bus connection lost; resubscribing", error=str(exc))
            finally:
                # Close before waiting: redis-py has usually reconnected and resubscribed this
                # pubsub before raising, and left open it is a subscriber that nobody reads.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 5)  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry_delay)
