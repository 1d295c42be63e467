"""Serves the web clients (clients/web): their pages, their ES modules under /app/ and three vendor files.

Nothing is bundled: a page loads its modules from /app/… and the vendor files from /vendor/…, which come from
clients/web/node_modules (installed from its lock file by `make web`, which `make run` and `make test` run). These are
not API routes: they are mounted on the router directly and are not in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from server.errors import AppError, NotFound
from server.logging import get_logger
from server.settings import Settings

log = get_logger("muster.web")

# The pages run only their own scripts and styles; media and images may also be blob:/data: (previews, recordings).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
       "connect-src 'self'; font-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# On every answer of these routes, errors included (the middleware adds nosniff and Referrer-Policy).
WEB_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(self), display-capture=(self), "
                          "fullscreen=(self)",
    # Browsers keep a copy but revalidate it each time (ETag / Last-Modified answer 304), so a deploy shows at once.
    "Cache-Control": "no-cache",
}
# Route names start with this, so that tests listing the API's routes can tell these apart.
ROUTE_PREFIX = "web."
HTML = "text/html; charset=utf-8"
PAGES = {"/": "index.html", "/console": "console.html", "/m": "mobile.html", "/call": "call.html"}
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".ico": "image/vnd.microsoft.icon",
}
# /vendor/<name> -> the file under node_modules; nothing else from node_modules is served.
VENDOR = {
    "preact-htm.js": "htm/preact/standalone.module.js",
    "socket.io.esm.min.js": "socket.io-client/dist/socket.io.esm.min.js",
    "tus.min.js": "tus-js-client/dist/tus.min.js",
}
BUILD_TARGET = "make web"
# One part of a path under /app/: no hidden files, no "." or "..", no separators, no odd characters.
PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_DEPTH = 8

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _not_found() -> AppError:
    return NotFound("no such file", code="not_found", headers=dict(WEB_HEADERS))


def _file(path: Path, content_type: str) -> web.FileResponse:
    # FileResponse reads in a thread and answers If-None-Match / If-Modified-Since with 304 itself.
    return web.FileResponse(path, headers={**WEB_HEADERS, "Content-Type": content_type})


def _existing_file(path: Path, root: Path) -> Path | None:
    """`path` resolved, when it is a regular file inside `root` (a symlink out of it does not count)."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        return None
    return resolved


async def _find(path: Path, root: Path) -> Path | None:
    return await asyncio.to_thread(_existing_file, path, root)


def _missing_vendor_files(node_modules: Path) -> list[str]:
    return [name for name, target in VENDOR.items() if _existing_file(node_modules / target, node_modules) is None]


def mount_web(app: web.Application, settings: Settings) -> None:
    """Mount the web clients' routes (GET, which also answers HEAD) unless web.enabled is false."""
    if not settings.web.enabled:
        return
    root = settings.web_dir.resolve()
    app_dir = root / "app"
    node_modules = root / "node_modules"
    missing = _missing_vendor_files(node_modules)
    if missing:
        log.warning("web clients are not built: their vendor files are missing", missing=missing, folder=str(root),
                    fix=f"run `{BUILD_TARGET}` (or `make run`)")

    def page(name: str) -> Handler:
        async def serve_page(request: web.Request) -> web.StreamResponse:
            found = await _find(root / name, root)
            if found is None:
                raise _not_found()
            return _file(found, HTML)

        return serve_page

    def redirect_to(target: str) -> Handler:
        async def redirect_to_page(request: web.Request) -> web.StreamResponse:
            # /console/ -> /console, keeping the query as sent (a page reads its own query string).
            query = request.rel_url.raw_query_string
            location = f"{target}?{query}" if query else target
            return web.Response(status=308, headers={**WEB_HEADERS, "Location": location})

        return redirect_to_page

    async def serve_app_file(request: web.Request) -> web.StreamResponse:
        parts = request.match_info["path"].split("/")
        if len(parts) > MAX_DEPTH or not all(PATH_PART.fullmatch(part) for part in parts):
            raise _not_found()
        content_type = CONTENT_TYPES.get(Path(parts[-1]).suffix)
        if content_type is None:
            raise _not_found()
        found = await _find(app_dir.joinpath(*parts), app_dir)
        if found is None:
            raise _not_found()
        return _file(found, content_type)

    def root_file(name: str) -> Handler:
        async def serve_root_file(request: web.Request) -> web.StreamResponse:
            found = await _find(app_dir / name, app_dir)
            if found is None:
                raise _not_found()
            return _file(found, CONTENT_TYPES[Path(name).suffix])

        return serve_root_file

    async def serve_vendor_file(request: web.Request) -> web.StreamResponse:
        target = VENDOR.get(request.match_info["name"])
        if target is None:
            raise _not_found()
        found = await _find(node_modules / target, node_modules)
        if found is None:
            raise AppError(f"the web clients are not built: run `{BUILD_TARGET}` (or `make run`) on the server",
                           code="web.not_built", status=503, headers=dict(WEB_HEADERS))
        return _file(found, CONTENT_TYPES[".js"])

    router = app.router
    for path, name in PAGES.items():
        label = name.removesuffix(".html")
        router.add_get(path, page(name), name=f"{ROUTE_PREFIX}{label}")
        if path != "/":
            router.add_get(f"{path}/", redirect_to(path), name=f"{ROUTE_PREFIX}{label}-slash")
    router.add_get("/app/{path:.+}", serve_app_file, name=f"{ROUTE_PREFIX}app")
    router.add_get("/vendor/{name}", serve_vendor_file, name=f"{ROUTE_PREFIX}vendor")
    router.add_get("/sw.js", root_file("sw.js"), name=f"{ROUTE_PREFIX}sw")
    router.add_get("/manifest.webmanifest", root_file("manifest.webmanifest"), name=f"{ROUTE_PREFIX}manifest")
