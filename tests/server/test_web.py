"""The web clients' pages, modules and vendor files: served with the security headers, nothing else leaks out.

Most tests point web.dir at a small folder of their own (pages, app files and a fake node_modules); one serves the
real clients/web vendor files, installed with `npm ci` when missing (tests/web_assets.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from yarl import URL

from server.app import create_app
from server.web import CSP, VENDOR
from tests.factories import FAST_PASSWORDS, Muster, make_settings, running_muster
from tests.web_assets import ensure_web_assets

PAGES = {"/": "index.html", "/console": "console.html", "/m": "mobile.html", "/call": "call.html"}
SECRET = "TOP-SECRET-NOT-FOR-BROWSERS"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(self), display-capture=(self), "
                          "fullscreen=(self)",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
JS = "text/javascript; charset=utf-8"
APP_FILES = {
    "lib/api.js": ("export const api = 1;\n", JS),
    "console/main.mjs": ("export default 2;\n", JS),
    "styles/app.css": ("body { color: black; }\n", "text/css; charset=utf-8"),
    "icons/logo.svg": ("<svg xmlns='http://www.w3.org/2000/svg'></svg>\n", "image/svg+xml"),
    "strings/zh-CN.json": ('{"assign": "交办"}\n', "application/json"),
    "sw.js": ("self.addEventListener('fetch', () => {});\n", JS),
}


def make_web_dir(root: Path, *, vendor: bool = True) -> Path:
    """A small stand-in for clients/web: the four pages, a few app files, and the vendor files' layout."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PAGES.values():
        (root / name).write_text(f"<!doctype html><title>{name}</title>\n", encoding="utf-8")
    for rel, (text, _) in APP_FILES.items():
        path = root / "app" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    # Things that must never be served.
    (root / "package.json").write_text(json.dumps({"name": SECRET}), encoding="utf-8")
    (root / "secret.js").write_text(f"// {SECRET}\n", encoding="utf-8")
    (root / "app" / ".hidden").write_text(SECRET, encoding="utf-8")
    (root / "app" / "lib" / ".hidden.js").write_text(SECRET, encoding="utf-8")
    (root / "app" / "lib" / "notes.txt").write_text(SECRET, encoding="utf-8")
    (root / "app" / "lib" / "page.html").write_text(SECRET, encoding="utf-8")
    os.symlink(root / "secret.js", root / "app" / "lib" / "escape.js")
    if vendor:
        for name, target in VENDOR.items():
            path = root / "node_modules" / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"export const vendor = {name!r};\n", encoding="utf-8")
        (root / "node_modules" / "htm" / "package.json").write_text(SECRET, encoding="utf-8")
    return root


@pytest.fixture
async def site(tmp_path: Path) -> Any:
    web_dir = make_web_dir(tmp_path / "web")
    async with running_muster(make_settings(tmp_path / "data", web={"dir": str(web_dir)})) as muster:
        yield muster, web_dir


async def fetch(muster: Muster, path: str, *, method: str = "GET",
                headers: dict[str, str] | None = None) -> tuple[aiohttp.ClientResponse, bytes]:
    """One request with the path sent exactly as written (no normalising of `..` or percent escapes)."""
    async with muster.http.request(method, URL(f"{muster.url}{path}", encoded=True), headers=headers,
                                   allow_redirects=False) as resp:
        return resp, await resp.read()


def assert_web_headers(resp: aiohttp.ClientResponse) -> None:
    for name, value in HEADERS.items():
        assert resp.headers.get(name) == value, (name, resp.headers.get(name))


def assert_error(resp: aiohttp.ClientResponse, body: bytes, status: int, code: str) -> None:
    assert resp.status == status, (resp.status, body[:200])
    assert resp.content_type == "application/json"
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}, data
    assert data["error"]["code"] == code, data


async def test_pages_are_served_with_the_security_headers(site: tuple[Muster, Path]) -> None:
    muster, web_dir = site
    for path, name in PAGES.items():
        for query in ("", "?room=01abc&lang=zh-CN"):
            resp, body = await fetch(muster, path + query)
            assert resp.status == 200, (path, resp.status)
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            assert body == (web_dir / name).read_bytes()
            assert_web_headers(resp)
            assert resp.headers.get("ETag") and resp.headers.get("Last-Modified")
        resp, body = await fetch(muster, path, method="HEAD")
        assert resp.status == 200 and body == b""
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert_web_headers(resp)


async def test_a_trailing_slash_redirects_to_the_page_keeping_the_query(site: tuple[Muster, Path]) -> None:
    muster, _ = site
    for path in ("/console", "/m", "/call"):
        resp, _ = await fetch(muster, f"{path}/?invite=abc&x=1")
        assert resp.status == 308
        assert resp.headers["Location"] == f"{path}?invite=abc&x=1"
        assert_web_headers(resp)
        resp, _ = await fetch(muster, f"{path}/")
        assert resp.status == 308 and resp.headers["Location"] == path


async def test_app_files_are_served_with_their_content_types(site: tuple[Muster, Path]) -> None:
    muster, web_dir = site
    for rel, (text, content_type) in APP_FILES.items():
        resp, body = await fetch(muster, f"/app/{rel}")
        assert resp.status == 200, rel
        assert resp.headers["Content-Type"] == content_type, rel
        assert body.decode() == text
        assert_web_headers(resp)
    resp, body = await fetch(muster, "/app/lib/api.js", method="HEAD")
    assert resp.status == 200 and body == b"" and resp.headers["Content-Type"] == JS


async def test_vendor_files_come_from_the_allowlist(site: tuple[Muster, Path]) -> None:
    muster, web_dir = site
    for name, target in VENDOR.items():
        resp, body = await fetch(muster, f"/vendor/{name}")
        assert resp.status == 200, name
        assert resp.headers["Content-Type"] == JS
        assert body == (web_dir / "node_modules" / target).read_bytes()
        assert_web_headers(resp)


async def test_service_worker_and_manifest_at_the_root(site: tuple[Muster, Path]) -> None:
    muster, web_dir = site
    resp, body = await fetch(muster, "/sw.js")
    assert resp.status == 200 and resp.headers["Content-Type"] == JS
    assert body == (web_dir / "app" / "sw.js").read_bytes()
    assert_web_headers(resp)
    # No manifest yet: 404 in the error shape, with the headers all the same.
    resp, body = await fetch(muster, "/manifest.webmanifest")
    assert_error(resp, body, 404, "not_found")
    assert_web_headers(resp)
    (web_dir / "app" / "manifest.webmanifest").write_text('{"name": "Muster"}', encoding="utf-8")
    resp, body = await fetch(muster, "/manifest.webmanifest")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/manifest+json"
    assert json.loads(body) == {"name": "Muster"}


@pytest.mark.parametrize("path", [
    "/app/../server/app.py",
    "/app/%2e%2e/%2e%2e/pyproject.toml",
    "/app/%2E%2E/secret.js",
    "/app/..%2fsecret.js",
    "/app/..%2Fpackage.json",
    "/app/lib/..%2f..%2f..%2fsecret.js",
    "/app/lib/%2e%2e/%2e%2e/secret.js",
    "/app/..%5csecret.js",
    "/app/%2fetc%2fpasswd",
    "/app//etc/passwd",
    "/app/%00secret.js",
    "/app/lib/api.js%00.png",
    "/app/.hidden",
    "/app/lib/.hidden.js",
    "/app/lib/%2ehidden.js",
    "/app/lib/notes.txt",
    "/app/lib/page.html",
    "/app/lib/escape.js",
    "/app/lib",
    "/app/lib/",
    "/app/LIB/API.JS",
    "/app/",
    "/vendor/../package.json",
    "/vendor/%2e%2e/package.json",
    "/vendor/..%2fpackage.json",
    "/vendor/unknown.js",
    "/vendor/htm",
    "/vendor/preact-htm.js/",
    "/vendor/",
    "/node_modules/htm/package.json",
    "/package.json",
    "/secret.js",
    "/index.html",
    "/console.html",
])
async def test_anything_else_is_refused_without_leaking_files(site: tuple[Muster, Path], path: str) -> None:
    muster, _ = site
    for method in ("GET", "HEAD"):
        resp, body = await fetch(muster, path, method=method)
        assert resp.status == 404, (path, method, resp.status, body[:200])
        if method == "GET":
            assert_error(resp, body, 404, "not_found")
            for leak in (SECRET.encode(), b"create_app", b"[project]", b"root:"):
                assert leak not in body, (path, body[:200])


async def test_unchanged_files_answer_304(site: tuple[Muster, Path]) -> None:
    muster, _ = site
    for path in ("/console", "/app/lib/api.js", "/vendor/tus.min.js", "/sw.js"):
        resp, _ = await fetch(muster, path)
        etag, modified = resp.headers["ETag"], resp.headers["Last-Modified"]
        resp, body = await fetch(muster, path, headers={"If-None-Match": etag})
        assert resp.status == 304 and body == b"", path
        assert_web_headers(resp)
        resp, body = await fetch(muster, path, headers={"If-Modified-Since": modified})
        assert resp.status == 304 and body == b"", path
        resp, body = await fetch(muster, path, headers={"If-None-Match": '"something-else"'})
        assert resp.status == 200 and body, path


async def test_disabled_mounts_nothing(tmp_path: Path) -> None:
    web_dir = make_web_dir(tmp_path / "web")
    settings = make_settings(tmp_path / "data", web={"dir": str(web_dir), "enabled": False})
    async with running_muster(settings) as muster:
        names = {route.name or "" for route in muster.app.router.routes()}
        assert not any(name.startswith("web.") for name in names)
        for path in ("/", "/console", "/m", "/call", "/console/", "/app/lib/api.js", "/vendor/tus.min.js",
                     "/sw.js"):
            resp, body = await fetch(muster, path)
            assert_error(resp, body, 404, "not_found")
            assert "Content-Security-Policy" not in resp.headers


async def test_missing_vendor_files_answer_503_not_built(tmp_path: Path) -> None:
    web_dir = make_web_dir(tmp_path / "web", vendor=False)
    settings = make_settings(tmp_path / "data", web={"dir": str(web_dir)})
    with capture_logs() as logs:
        create_app(settings, passwords=FAST_PASSWORDS)
    warnings = [e for e in logs if e.get("log_level") == "warning" and "not built" in e.get("event", "")]
    assert len(warnings) == 1 and sorted(warnings[0]["missing"]) == sorted(VENDOR)
    async with running_muster(settings) as muster:
        for name in VENDOR:
            resp, body = await fetch(muster, f"/vendor/{name}")
            assert_error(resp, body, 503, "web.not_built")
            assert "make web" in json.loads(body)["error"]["message"]
            assert_web_headers(resp)
        resp, _ = await fetch(muster, "/console")  # the pages themselves are still there
        assert resp.status == 200
        resp, body = await fetch(muster, "/vendor/unknown.js")
        assert_error(resp, body, 404, "not_found")


async def test_the_real_vendor_files_are_served(tmp_path: Path) -> None:
    web_dir = ensure_web_assets()
    async with running_muster(make_settings(tmp_path)) as muster:  # web.dir empty: the repository's clients/web
        for name, target in VENDOR.items():
            resp, body = await fetch(muster, f"/vendor/{name}")
            assert resp.status == 200, name
            assert resp.headers["Content-Type"] == JS
            assert body == (web_dir / "node_modules" / target).read_bytes()
            assert len(body) > 1000 and b"export" in body, name
            assert_web_headers(resp)
