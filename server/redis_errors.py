"""Redis failures as client errors: a Redis that cannot be reached is a 503, not a 500."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from server.errors import AppError


@contextlib.asynccontextmanager
async def redis_or_503() -> AsyncIterator[None]:
    try:
        yield
    except RedisError as exc:
        raise AppError("a backing service is unavailable; try again shortly", code="service.unavailable",
                       status=503) from exc
