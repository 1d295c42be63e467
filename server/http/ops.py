"""Operations: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.asyncio import Redis

from server.http.api import Api, ApiRequest
from server.kernel import KERNEL
from server.logging import get_logger
from server.schemas import Out

api = Api()
OPENAPI = web.AppKey("muster.openapi", dict)
log = get_logger("muster.ops")


class Health(Out):
    status: str


class Readiness(Out):
    status: str
    storage: str
    redis: str


async def _redis_ping(redis: Redis) -> None:
    await redis.ping()  # type: ignore[misc]  # redis-py types ping() as sync-or-async


@api.route("GET", "/healthz", summary="Alive", tags=["ops"], response=Health, auth=False)
async def healthz(req: ApiRequest[None, None]) -> Health:
    return Health(status="ok")


@api.route("GET", "/readyz", summary="Ready: storage (and Redis when configured) answer", tags=["ops"],
           response=Readiness, auth=False, errors=[503])
async def readyz(req: ApiRequest[None, None]) -> web.StreamResponse | Readiness:
    k = req.app[KERNEL]
    storage_state, redis_state = "ok", "off"
    try:
        await asyncio.wait_for(k.storage.ping(), timeout=2)
    except Exception as exc:
        log.warning("storage not ready", error=str(exc))
        storage_state = "unavailable"
    if k.redis is not None:
        try:
            await asyncio.wait_for(_redis_ping(k.redis), timeout=2)
            redis_state = "ok"
        except Exception as exc:
            log.warning("redis not ready", error=str(exc))
            redis_state = "unavailable"
    body = Readiness(status="ok", storage=storage_state, redis=redis_state)
    if "unavailable" in (storage_state, redis_state):
        return web.json_response({"error": {"code": "not_ready", "message": "a backing service is unavailable"},
                                  "storage": storage_state, "redis": redis_state}, status=503)
    return body


@api.route("GET", "/metrics", summary="Prometheus metrics", tags=["ops"], auth=False,
           content_type="text/plain", raw=True)
async def metrics(req: ApiRequest[None, None]) -> web.StreamResponse:
    body = req.app[KERNEL].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@api.route("GET", "/api/openapi.json", summary="This document", tags=["ops"], auth=False, raw=True)
async def openapi(req: ApiRequest[None, None]) -> web.StreamResponse:
    return web.json_response(req.app[OPENAPI])
