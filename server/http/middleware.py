"""Middleware: request context and logs, metrics, CORS, security headers, and the one error shape."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from server.errors import AppError, error_body
from server.ids import new_id
from server.logging import get_logger
from server.metrics import Metrics

log = get_logger("muster.http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HTTP_CODES = {
    400: "request.invalid",
    401: "auth.unauthenticated",
    403: "auth.forbidden",
    404: "not_found",
    405: "http.method_not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def make_middlewares(
    *, metrics: Metrics, cors_origins: list[str]
) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    allow_all = "*" in cors_origins
    allowed = set(cors_origins)

    def cors_headers(request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if not origin or not (allow_all or origin in allowed):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Allow-Credentials": "true",
            # Resumable uploads (tus) and ranged downloads read these from another origin too.
            "Access-Control-Expose-Headers": "X-Request-Id, Retry-After, Location, Upload-Offset, Upload-Length, "
            "Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
            "Tus-Checksum-Algorithm, Muster-File-Id, Content-Range, Accept-Ranges, ETag, Content-Disposition",
        }

    @web.middleware
    async def context(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if REQUEST_ID.match(incoming) else new_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        extra = cors_headers(request)
        if request.method == "OPTIONS" and extra and request.headers.get("Access-Control-Request-Method"):
            extra.update({
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", ""),
                "Access-Control-Max-Age": "600",
            })
            response: web.StreamResponse = web.Response(status=204, headers=extra)
        else:
            response = await _answer(request, handler, metrics)
            if not response.prepared:
                response.headers.update(extra)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            if request.path.startswith("/api/"):
                response.headers.setdefault("Cache-Control", "no-store")
        route = _route_label(request)
        elapsed = time.perf_counter() - started
        metrics.http_requests.labels(request.method, route, str(response.status)).inc()
        metrics.http_seconds.labels(request.method, route).observe(elapsed)
        if route != "/socket.io/":
            log.info("request", method=request.method, path=request.path, status=response.status,
                     ms=round(elapsed * 1000, 1))
        return response

    return [context]


async def _answer(request: web.Request, handler: Handler, metrics: Metrics) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        log.info("request refused", code=exc.code, status=exc.status, message=exc.message)
        return web.json_response(exc.to_dict(), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, f"http.{exc.status}")
        message = exc.reason if exc.status != 413 else "request body is too large"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        log.info("request refused", code=code, status=exc.status)
        return web.json_response(error_body(code, message), status=exc.status, headers=headers)
    except Exception:
        metrics.errors.labels("http").inc()
        log.exception("unexpected error while answering a request")
        return web.json_response(error_body("internal", "internal server error"), status=500)
