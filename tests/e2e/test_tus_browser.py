"""tus-js-client 4.3.1 (pinned in tests/js/package-lock.json) in headless Chromium resumes an upload to Muster.

The page is served from Muster's own origin (so the tus requests are same-origin, as in the web console)
and builds a 12 MiB file from a seeded PRNG. tus-js-client uploads it in 1 MiB PATCHes to
`/api/uploads` with the user's Bearer token. Before the first PATCH at or past 30 % of the file the
browser context is taken offline (Playwright's `set_offline`, which also turns `navigator.onLine` false,
so tus-js-client stops retrying and reports the error). The test then brings the network back, loads
the page again (nothing survives but localStorage and the server's state), and a new `tus.Upload` finds
the interrupted upload with `findPreviousUploads()` and continues it with `resumeFromPreviousUpload()`:
a HEAD that reports the server's non-zero offset, then PATCHes from exactly that offset.

Checked from Python, on the network traffic Playwright saw and on Muster itself: one upload created,
a PATCH that failed while offline, a HEAD answered with 0 < offset < size, the next PATCH sent from that
offset, and the finished file's bytes (`GET /api/files/{id}/content`) hashing to the sha256 the page
computed with crypto.subtle. Screenshots of the offline and finished states go to tests/e2e/artifacts/.
Needs /usr/bin/chromium, and Node's npm when tests/js/node_modules is missing: without them it fails.

Not covered here: a connection that breaks in the middle of a PATCH body. The cut is made between
PATCHes on purpose, so the test does not depend on timing (on loopback a 1 MiB PATCH takes
milliseconds and cannot be caught half-sent without throttling).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Request, Response

from tests.e2e.conftest import Artifacts, ensure_js_package, open_on_origin
from tests.factories import make_settings, running_muster

SIZE = 12 * 1024 * 1024
CHUNK = 1024 * 1024
SEED = 20_240_601
CUT_AT = 0.3
PAGE_SCRIPT = Path(__file__).resolve().parent / "tus_page.js"
PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Muster: resumable upload (tus-js-client)</title>
<style>body{font:14px sans-serif;margin:2em} progress{width:100%;height:2em} pre{font-size:12px}</style></head>
<body><h1>Resumable upload with tus-js-client</h1>
<p id="status">loading</p><progress id="progress" max="100" value="0"></progress><p id="bytes"></p>
<pre id="log"></pre></body></html>"""


@dataclass(frozen=True)
class Seen:
    """One upload request, response or network failure that Chromium reported."""

    kind: str  # "request", "response" or "failed"
    method: str
    path: str
    offset: int | None = None  # the Upload-Offset header, sent or answered
    status: int | None = None
    failure: str | None = None


def _offset(headers: dict[str, str]) -> int | None:
    value = headers.get("upload-offset")
    return int(value) if value is not None else None


@dataclass
class Traffic:
    """The requests to /api/uploads that Chromium made, in the order Playwright reported them."""

    seen: list[Seen] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        context.on("requestfailed", self._on_failed)

    @staticmethod
    def _path(url: str) -> str | None:
        path = urlsplit(url).path
        return path if path.startswith("/api/uploads") else None

    def _on_request(self, request: Request) -> None:
        if path := self._path(request.url):
            self.seen.append(Seen("request", request.method, path, offset=_offset(request.headers)))

    def _on_response(self, response: Response) -> None:
        if path := self._path(response.url):
            self.seen.append(Seen("response", response.request.method, path, offset=_offset(response.headers),
                                  status=response.status))

    def _on_failed(self, request: Request) -> None:
        if path := self._path(request.url):
            self.seen.append(Seen("failed", request.method, path, failure=request.failure))

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int) -> list[Seen]:
        return self.seen[mark:]


async def load_upload_page(page: Page, origin: str, tus_js: Path) -> None:
    await open_on_origin(page, origin, PAGE_HTML)
    await page.add_script_tag(path=tus_js)
    await page.add_script_tag(path=PAGE_SCRIPT)


async def run_upload(page: Page, **config: Any) -> dict[str, Any]:
    """Run tusTest.upload in the page; its promise always resolves, so a hang is the only other outcome."""
    config = {"size": SIZE, "seed": SEED, "chunkSize": CHUNK, **config}
    result: dict[str, Any] = await asyncio.wait_for(page.evaluate("c => tusTest.upload(c)", config), 90)
    return result


async def test_tus_js_client_in_chromium_resumes_an_upload_after_the_network_drops(
    tmp_path: Path, context: BrowserContext, page: Page, artifacts: Artifacts,
) -> None:
    tus_js = await ensure_js_package("tus-js-client") / "dist" / "tus.min.js"
    async with running_muster(make_settings(tmp_path)) as muster:
        user = await muster.create_user(username="browser_uploader")
        session = await muster.login(user["username"], device_kind="console")
        traffic = Traffic()
        traffic.watch(context)

        async def cut_network() -> None:
            await context.set_offline(True)

        await page.expose_function("cutNetwork", cut_network)
        await load_upload_page(page, muster.url, tus_js)

        # 1. Upload until the network goes away at ~30 %.
        first = await run_upload(page, token=session.access_token, cutAt=CUT_AT)
        assert first["outcome"] == "error", first
        assert first["online"] is False, first  # the failure came from the cut network, not from Muster
        assert 0 < first["accepted"] < SIZE, first
        await artifacts.screenshot(page, "offline")
        before_resume = traffic.since(0)
        assert [s.status for s in before_resume if (s.kind, s.method) == ("response", "POST")] == [201], before_resume
        assert any((s.kind, s.method) == ("failed", "PATCH") for s in before_resume), before_resume
        upload_path = urlsplit(str(first["url"])).path
        assert upload_path.startswith("/api/uploads/"), first

        # 2. Network back, page loaded afresh: only localStorage and the server remember the upload.
        await context.set_offline(False)
        mark = traffic.mark()
        await load_upload_page(page, muster.url, tus_js)
        second = await run_upload(page, token=session.access_token, resume=True)
        await artifacts.screenshot(page, "resumed")

        assert second["outcome"] == "success", (second, traffic.since(mark))
        assert second["previous"] >= 1, second
        assert second["url"] == first["url"], (first, second)
        assert second["sha256"] == first["sha256"]  # the same seeded file on both page loads
        resumed = traffic.since(mark)
        assert not any(s.method == "POST" for s in resumed), resumed  # continued, not started over
        heads = [i for i, s in enumerate(resumed) if (s.kind, s.method, s.path) == ("response", "HEAD", upload_path)]
        assert heads, resumed
        head = resumed[heads[0]]
        assert head.status == 200 and head.offset is not None, resumed
        assert first["accepted"] <= head.offset < SIZE, (first, resumed)
        patches = [s for s in resumed[heads[0]:] if (s.kind, s.method) == ("request", "PATCH")]
        assert patches and patches[0].offset == head.offset, resumed

        # 3. What Muster stored is what the page hashed.
        file_id = second["fileId"]
        assert file_id, second
        status, described = await muster.request("GET", f"/api/files/{file_id}", session)
        assert status == 200, described
        assert described["size"] == SIZE, described
        assert described["sha256"] == second["sha256"], described
        digest = hashlib.sha256()
        received = 0
        async with muster.http.get(f"{muster.url}/api/files/{file_id}/content", headers=session.headers) as resp:
            assert resp.status == 200, await resp.text()
            async for block in resp.content.iter_chunked(1 << 20):
                digest.update(block)
                received += len(block)
        assert received == SIZE
        assert digest.hexdigest() == second["sha256"]
