"""Browser tests: Debian's Chromium driven by Playwright, screenshots kept in tests/e2e/artifacts/.

Fixtures:

- `chromium`: a headless Chromium from /usr/bin/chromium (never Playwright's own download). Missing
  Chromium fails the test with how to install it; it never skips. Function-scoped on purpose: starting
  Playwright and Chromium takes about 0.6 s here (measured: 0.57–0.76 s for start, a page and close), so
  a fresh browser per test costs little and avoids pytest-asyncio loop-scope juggling (a session-scoped
  async fixture would need `loop_scope="session"` on it and on every test that uses it).
- `context`: a fresh browser context (own cookies, localStorage, offline switch) per test. When the test
  fails, every page still open is saved as a PNG and the console log as text in tests/e2e/artifacts/.
- `page`: one page in that context.
- `artifacts`: where a test saves screenshots when it wants them (`await artifacts.screenshot(page, "done")`).

Helpers for tests: `ensure_js_package` (tests/js/node_modules from the lock file, as
tests/rooms/test_js_client.py does) and `open_on_origin` (an empty page served from Muster's origin, so
that the page's requests to Muster are same-origin).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, async_playwright

from tests.factories import Muster, make_settings, running_muster
from tests.web_assets import ensure_web_assets

CHROMIUM = Path("/usr/bin/chromium")
# Headless Debian Chromium on these machines: no sandbox (root, containers), no GPU, and none of the
# background connections to Google's hosts, which this closed network refuses (many at a time).
# The fake media devices let WebRTC tests get a camera and microphone without a permission prompt.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
JS_DIR = Path(__file__).resolve().parents[1] / "js"

_PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                           pytest.TestReport]:
    """Keep each phase's report on the test item, so that fixtures can tell at teardown whether it failed."""
    report = yield
    item.stash.setdefault(_PHASE_REPORTS, {})[report.when] = report
    return report


def _is_file(path: Path) -> bool:
    # One stat, before anything runs: not worth a thread hop in an async fixture.
    return path.is_file()


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


@dataclass
class Artifacts:
    """Files a browser test leaves behind in tests/e2e/artifacts/, named after the test."""

    folder: Path
    stem: str
    console: list[str] = field(default_factory=list)

    def path(self, label: str, suffix: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{self.stem}-{label}{suffix}"

    async def screenshot(self, page: Page, label: str = "screenshot") -> Path:
        """Save the whole page as `<test>-<label>.png` and return its path."""
        path = self.path(label, ".png")
        await page.screenshot(path=path, full_page=True, timeout=10_000)
        return path

    def write_console(self, label: str = "console") -> Path:
        path = self.path(label, ".txt")
        path.write_text("\n".join(self.console) + "\n", encoding="utf-8")
        return path


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Artifacts:
    module = Path(str(request.node.path)).stem
    return Artifacts(ARTIFACTS, re.sub(r"[^\w.-]+", "_", f"{module}.{request.node.name}").strip("_"))


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Headless Debian Chromium, started by Playwright with this machine's flags."""
    if not _is_file(CHROMIUM):
        pytest.fail(f"the browser tests drive Debian's Chromium at {CHROMIUM}, which is missing: install it with "
                    "`apt-get install chromium` (`make test` does). Playwright's own browser download is not used.",
                    pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                   timeout=60_000)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def context(chromium: Browser, artifacts: Artifacts, request: pytest.FixtureRequest
                  ) -> AsyncIterator[BrowserContext]:
    """A fresh browser context; on failure its pages are screenshotted and its console log is saved."""
    ctx = await chromium.new_context(viewport={"width": 1024, "height": 768})
    ctx.set_default_timeout(30_000)

    def on_console(message: ConsoleMessage) -> None:
        artifacts.console.append(f"[{message.type}] {message.text}")

    def on_page_error(error: Exception) -> None:
        artifacts.console.append(f"[pageerror] {error}")

    ctx.on("console", on_console)
    ctx.on("weberror", lambda web_error: on_page_error(web_error.error))
    try:
        yield ctx
    finally:
        if _failed(request.node):
            for number, open_page in enumerate(ctx.pages):
                # The page may have crashed or hung: a missing screenshot must not hide the real failure.
                with contextlib.suppress(Exception):
                    await artifacts.screenshot(open_page, f"failure-{number}")
            artifacts.write_console("failure-console")
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def open_on_origin(page: Page, origin: str, html: str, *, path: str = "/healthz") -> None:
    """Show `html` in a page whose origin is `origin` (e.g. Muster's URL), so its requests are same-origin.

    Navigates to a cheap page of that origin first; `set_content` then replaces the document but keeps
    its origin (and therefore its localStorage and same-origin access to the API).
    """
    response = await page.goto(origin.rstrip("/") + path)
    assert response is not None and response.ok, f"{origin}{path} answered {response and response.status}"
    await page.set_content(html)


async def ensure_js_package(name: str) -> Path:
    """tests/js/node_modules/<name>, installed from tests/js/package-lock.json with `npm ci` when missing.

    Fails (does not skip) without npm, like tests/rooms/test_js_client.py.
    """
    folder = JS_DIR / "node_modules" / name
    if _is_file(folder / "package.json"):
        return folder
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"this test needs the npm package {name} from tests/js/package-lock.json, and npm is not on "
                    "PATH (e.g. `apt-get install nodejs npm`)", pytrace=False)
    proc = await asyncio.create_subprocess_exec(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error",
                                                cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), 300)
    if proc.returncode != 0 or not _is_file(folder / "package.json"):
        pytest.fail(f"`npm ci` in {JS_DIR} failed ({proc.returncode}) or did not install {name}:\n"
                    f"{output.decode()}", pytrace=False)
    return folder


# -- the web clients (clients/web) on a demo county -------------------------------------------------

DEMO_PASSWORD = "muster-demo-1"
DESKTOP = {"width": 1366, "height": 850}
PHONE = {"width": 390, "height": 800}  # the responder view must work from 360 px wide


@dataclass
class County:
    """Muster with the demo county (`make run`'s data) on a real port, serving clients/web."""

    muster: Muster
    password: str = DEMO_PASSWORD

    @property
    def url(self) -> str:
        return self.muster.url

    async def user_id(self, username: str) -> str:
        user = await self.muster.kernel.storage.get_user_by_username(username)
        assert user is not None, username
        return user.id


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[County]:
    """The demo county: admin, commander, lead (水利局), responder (救援队), inspector; a demo incident
    being handled and a project under construction, exactly as `make run` seeds them."""
    from server.demo import seed_demo
    from workflows.demo import seed_workflow_demo
    from workflows.views import INCIDENTS, PROJECT_SERVICE, TASK_SERVICE

    ensure_web_assets()
    settings = make_settings(tmp_path, demo={"password": DEMO_PASSWORD})
    async with running_muster(settings) as muster:
        k = muster.kernel
        await seed_demo(k.storage, k.org, password=DEMO_PASSWORD)
        app = muster.app
        await seed_workflow_demo(k.storage, app[INCIDENTS], app[TASK_SERVICE], app[PROJECT_SERVICE])
        yield County(muster)


async def new_face(chromium: Browser, artifacts: Artifacts, *, phone: bool = False,
                   locale: str = "zh-CN") -> BrowserContext:
    """A browser context sized as a desktop console or a phone (touch, mobile viewport), logging its
    console into `artifacts` like the `context` fixture. Close it yourself (or use `faces`)."""
    options: dict[str, Any] = {"viewport": PHONE if phone else DESKTOP, "locale": locale,
                               "timezone_id": "Asia/Shanghai"}
    if phone:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    ctx = await chromium.new_context(**options)
    ctx.set_default_timeout(15_000)
    label = "phone" if phone else "desk"
    ctx.on("console", lambda m: artifacts.console.append(f"[{label}:{m.type}] {m.text}"))
    ctx.on("weberror", lambda e: artifacts.console.append(f"[{label}:pageerror] {e.error}"))
    return ctx


@pytest.fixture
async def faces(chromium: Browser, artifacts: Artifacts, request: pytest.FixtureRequest
                ) -> AsyncIterator[list[BrowserContext]]:
    """Contexts made with `new_face` and appended to this list are screenshotted on failure and closed."""
    made: list[BrowserContext] = []
    try:
        yield made
    finally:
        if _failed(request.node):
            for i, ctx in enumerate(made):
                for n, open_page in enumerate(ctx.pages):
                    with contextlib.suppress(Exception):
                        await artifacts.screenshot(open_page, f"failure-{i}-{n}")
            artifacts.write_console("failure-console")
        for ctx in made:
            with contextlib.suppress(Exception):
                await ctx.close()


async def sign_in(page: Page, url: str, username: str, password: str = DEMO_PASSWORD) -> None:
    """Open `url` (a face: /console, /m, /call…) and sign in through its form, with the keyboard."""
    await page.goto(url)
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(password)
    await page.get_by_label("密码").press("Enter")
    await page.get_by_role("status", name="连接状态").filter(has_text="已连接").wait_for()


def csp_violations(artifacts: Artifacts) -> list[str]:
    """Console lines where Chromium reports a Content-Security-Policy refusal."""
    return [line for line in artifacts.console if "Content Security Policy" in line]


# -- the keyboard: reaching things the way a keyboard user does ----------------------------------

async def is_focused(locator: Locator) -> bool:
    result: bool = await locator.evaluate("el => el === document.activeElement")
    return result


async def press_until_focused(page: Page, locator: Locator, key: str = "Tab", limit: int = 60) -> None:
    """Press `key` (Tab or Shift+Tab) until `locator` has the focus: the way a keyboard user gets there."""
    await locator.wait_for()
    for _ in range(limit):
        if await is_focused(locator):
            return
        await page.keyboard.press(key)
    raise AssertionError(f"{locator} never got the focus with {key}")


async def choose_with_keys(page: Page, select: Locator, text: str, key: str = "ArrowDown", limit: int = 30) -> None:
    """Change a focused <select> with the arrow keys until the option showing `text` is chosen."""
    await press_until_focused(page, select)
    for _ in range(limit):
        chosen: str = await select.evaluate(
            "el => el.options[el.selectedIndex] ? el.options[el.selectedIndex].text : ''"
        )
        if text in chosen:
            return
        await page.keyboard.press(key)
    raise AssertionError(f"no option {text!r} reached with {key}")


def png(width: int = 8, height: int = 8, rgb: bytes = b"\xd0\x20\x20") -> bytes:
    """A small PNG of one colour: the "photo from the phone camera" the tests upload."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rgb * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
