"""The field responder's view (/m) on a phone: offline queue, incident report with location, task
accept → photo → submit with an urge arriving, and a layout without horizontal scrolling at 360 px.

Each test signs the demo responder (王磊) in through the page's form with the keyboard, drives the
screens by role and label in zh-CN, checks what the server stored through the API, saves screenshots
in tests/e2e/artifacts/ and fails on any Content-Security-Policy refusal or page error.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, BrowserContext, FilePayload, Page, ViewportSize, expect

from tests.e2e.conftest import PHONE, Artifacts, County, csp_violations, png, sign_in
from tests.factories import Session

PNG = png()
DEMO_TASK = "转移下游群众"  # assigned by the demo commander to the responder in person


async def phone(chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext], *,
                viewport: ViewportSize | None = None, **extra: Any) -> BrowserContext:
    """A phone context as `new_face(phone=True)` makes it, with extra options (geolocation, a smaller screen)."""
    size = viewport or ViewportSize(width=PHONE["width"], height=PHONE["height"])
    ctx = await chromium.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai", is_mobile=True,
                                     has_touch=True, device_scale_factor=2, **extra)
    ctx.set_default_timeout(15_000)
    ctx.on("console", lambda m: artifacts.console.append(f"[phone:{m.type}] {m.text}"))
    ctx.on("weberror", lambda e: artifacts.console.append(f"[phone:pageerror] {e.error}"))
    faces.append(ctx)
    return ctx


def clean(artifacts: Artifacts) -> None:
    assert csp_violations(artifacts) == []
    assert [line for line in artifacts.console if "pageerror" in line] == []


async def api(county: County, method: str, path: str, session: Session, **kw: Any) -> Any:
    status, data = await county.muster.request(method, path, session, **kw)
    assert status < 300, (method, path, status, data)
    return data


async def demo_task(county: County, session: Session) -> dict[str, Any]:
    tasks = (await api(county, "GET", "/api/tasks?mine=true", session))["tasks"]
    return next(t for t in tasks if t["title"] == DEMO_TASK)


async def incident_room(county: County, session: Session) -> dict[str, Any]:
    rooms = (await api(county, "GET", "/api/rooms", session))["rooms"]
    return next(r["room"] for r in rooms if r["room"]["kind"] == "incident")


async def messages(county: County, session: Session, room_id: str, text: str) -> list[dict[str, Any]]:
    data = await api(county, "GET", f"/api/rooms/{room_id}/events?after_seq=0&limit=200", session)
    return [e for e in data["events"] if e["kind"] == "message" and e["body"].get("text") == text]


def tab(page: Page, name: str) -> Any:
    return page.get_by_role("navigation", name="主导航").get_by_role("link", name=re.compile(f"^{name}"))


async def test_offline_queue_survives_and_sends_once(county: County, chromium: Browser, artifacts: Artifacts,
        faces: list[BrowserContext]) -> None:
    responder = await county.muster.login("responder", county.password, device_kind="mobile")
    task = await demo_task(county, responder)
    await api(county, "POST", f"/api/tasks/{task['id']}/accept", responder, json={})
    room = await incident_room(county, responder)
    assert room["name"]

    ctx = await phone(chromium, artifacts, faces)
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/m", "responder")
    await page.get_by_role("link", name=re.compile(DEMO_TASK)).click()
    await expect(page.get_by_role("heading", name=DEMO_TASK)).to_be_visible()
    progress_button = page.get_by_role("button", name="反馈进展")
    await expect(progress_button).to_be_visible()

    await ctx.set_offline(True)
    await progress_button.click()
    dialog = page.get_by_role("dialog", name="反馈进展")
    await dialog.get_by_label("进展情况").fill("已转移 30 人，离线上报")
    await dialog.get_by_label("完成百分比").fill("40")
    await dialog.get_by_role("button", name="提交").click()
    await expect(dialog).to_have_count(0)

    await tab(page, "消息").click()
    await page.get_by_role("link", name=re.compile(re.escape(room["name"]))).click()
    text = "<script>alert(1)</script> 离线消息"
    await page.get_by_label("消息内容").fill(text)
    await page.get_by_label("消息内容").press("Enter")
    await expect(page.get_by_role("link", name="待发送 2 项")).to_be_visible()
    await expect(page.locator(".timeline li.pending").filter(has_text=text)).to_be_visible()

    await tab(page, "待发送").click()
    pending = page.get_by_role("list", name="离线待发送").get_by_role("listitem")
    await expect(pending).to_have_count(2)
    await expect(pending.filter(has_text="任务进展")).to_have_count(1)
    await expect(pending.filter(has_text="消息")).to_have_count(1)
    await artifacts.screenshot(page, "pending")

    await ctx.set_offline(False)
    await expect(page.get_by_role("list", name="离线待发送")).to_have_count(0)
    await expect(page.get_by_text("没有待发送的内容")).to_be_visible()
    await expect(page.get_by_role("list", name="本次已送达").get_by_role("listitem")).to_have_count(2)
    await expect(page.get_by_role("link", name=re.compile("待发送 \\d+ 项"))).to_have_count(0)
    await artifacts.screenshot(page, "delivered")

    assert len(await messages(county, responder, room["id"], text)) == 1
    detail = await api(county, "GET", f"/api/tasks/{task['id']}", responder)
    assert [p["text"] for p in detail["progress"]] == ["已转移 30 人，离线上报"]
    assert detail["progress"][0]["percent"] == 40

    # Kept in IndexedDB: queued offline, the tab closed, the network back, the view opened again.
    await tab(page, "消息").click()
    await page.get_by_role("link", name=re.compile(re.escape(room["name"]))).click()
    await ctx.set_offline(True)
    second = "第二条：关掉页面也不丢"
    await page.get_by_label("消息内容").fill(second)
    await page.get_by_label("消息内容").press("Enter")
    await expect(page.get_by_role("link", name="待发送 1 项")).to_be_visible()
    await page.close()
    assert await messages(county, responder, room["id"], second) == []
    await ctx.set_offline(False)
    page = await ctx.new_page()
    await page.goto(f"{county.url}/m#/pending")
    await expect(page.get_by_role("list", name="本次已送达").get_by_role("listitem")).to_have_count(1)
    await expect(page.get_by_text("没有待发送的内容")).to_be_visible()
    await artifacts.screenshot(page, "reopened")
    assert len(await messages(county, responder, room["id"], second)) == 1
    assert len(await messages(county, responder, room["id"], text)) == 1
    clean(artifacts)


async def test_report_incident_with_location(county: County, chromium: Browser, artifacts: Artifacts,
        faces: list[BrowserContext]) -> None:
    ctx = await phone(chromium, artifacts, faces, permissions=["geolocation"],
                      geolocation={"latitude": 30.2873, "longitude": 120.1612, "accuracy": 12})
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/m", "responder")
    await tab(page, "上报").click()
    await expect(page.get_by_role("heading", name="上报事件")).to_be_visible()
    await page.get_by_label("事件标题").fill("西河堤防管涌")
    await page.get_by_label("事件类型").select_option(label="洪涝灾害")
    await page.get_by_label("事件等级").select_option(label="Ⅲ级")
    await page.get_by_label("情况描述").fill("堤脚出现两处管涌，正在抢护。")
    await page.get_by_role("button", name="使用我的位置").click()
    await expect(page.get_by_text("纬度 30.28730，经度 120.16120")).to_be_visible()
    await page.get_by_label("地点").fill("示范县西河村")
    await artifacts.screenshot(page, "report")
    await page.get_by_role("button", name="上报", exact=True).click()

    await tab(page, "待发送").click()
    await expect(page.get_by_role("list", name="本次已送达").get_by_role("listitem")
                 .filter(has_text="事件上报")).to_have_count(1)
    commander = await county.muster.login("commander", county.password)
    incidents = (await api(county, "GET", "/api/incidents", commander))["incidents"]
    found = [i for i in incidents if i["title"] == "西河堤防管涌"]
    assert len(found) == 1
    incident = found[0]
    assert (incident["latitude"], incident["longitude"]) == (30.2873, 120.1612)
    assert (incident["type"], incident["level"], incident["address"]) == ("flood", 3, "示范县西河村")
    assert incident["reporter_id"] == await county.user_id("responder")
    clean(artifacts)


async def test_accept_photo_submit_and_urge(county: County, chromium: Browser, artifacts: Artifacts,
        faces: list[BrowserContext]) -> None:
    ctx = await phone(chromium, artifacts, faces)
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/m", "responder")
    await page.get_by_role("link", name=re.compile(DEMO_TASK)).click()
    await page.get_by_role("button", name="签收").click()
    await expect(page.locator(".flags").get_by_text("已签收")).to_be_visible()

    commander = await county.muster.login("commander", county.password)
    responder = await county.muster.login("responder", county.password)
    task = await demo_task(county, responder)
    await api(county, "POST", f"/api/tasks/{task['id']}/urge", commander, json={"message": "请加快进度"})
    await expect(page.get_by_role("log", name="通知").get_by_text(f"催办：{DEMO_TASK}")).to_be_visible()
    urged = (await demo_task(county, responder))["urge_count"]
    assert urged == task["urge_count"] + 1
    await expect(page.locator(".flags").get_by_text(f"催办 {urged} 次")).to_be_visible()
    await artifacts.screenshot(page, "urged")

    await page.get_by_role("button", name="提交办理结果").click()
    dialog = page.get_by_role("dialog", name="提交办理结果")
    await dialog.get_by_label("办理结果").fill("下游 120 人已全部转移至安置点。")
    photo: FilePayload = {"name": "scene.png", "mimeType": "image/png", "buffer": PNG}
    await dialog.get_by_label("拍照").set_input_files(files=[photo])
    await expect(dialog.get_by_text("已上传")).to_be_visible()
    await artifacts.screenshot(page, "photo")
    await dialog.get_by_role("button", name="提交办理结果").click()
    await expect(dialog).to_have_count(0)
    await expect(page.locator(".flags").get_by_text("待督查")).to_be_visible()
    await artifacts.screenshot(page, "submitted")

    stored = (await api(county, "GET", f"/api/tasks/{task['id']}", responder))["task"]
    assert stored["state"] == "submitted"
    assert stored["result_text"] == "下游 120 人已全部转移至安置点。"
    assert len(stored["result_attachments"]) == 1
    file = await api(county, "GET", f"/api/files/{stored['result_attachments'][0]}", responder)
    assert (file["name"], file["size"]) == ("scene.png", len(PNG))
    clean(artifacts)


async def test_no_horizontal_scroll_at_360(county: County, chromium: Browser, artifacts: Artifacts,
        faces: list[BrowserContext]) -> None:
    ctx = await phone(chromium, artifacts, faces, viewport=ViewportSize(width=360, height=740))
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/m", "responder")
    responder = await county.muster.login("responder", county.password)
    room = await incident_room(county, responder)

    async def fits(label: str) -> None:
        width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (label, width)
        await artifacts.screenshot(page, label)

    await expect(page.get_by_role("link", name=re.compile(DEMO_TASK))).to_be_visible()
    await expect(tab(page, "任务")).to_have_attribute("aria-current", "page")
    await fits("tasks")
    await page.get_by_role("link", name=re.compile(DEMO_TASK)).click()
    await expect(page.get_by_role("button", name="签收")).to_be_visible()
    await fits("task")
    await tab(page, "消息").click()
    await expect(tab(page, "消息")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_role("link", name=re.compile(re.escape(room["name"])))).to_be_visible()
    await fits("chat")
    await page.get_by_role("link", name=re.compile(re.escape(room["name"]))).click()
    await expect(page.get_by_label("消息内容")).to_be_visible()
    await expect(page.get_by_role("link", name=re.compile("加入会商"))).to_have_attribute(
        "href", f"/call?room={room['id']}")
    await fits("room")
    await tab(page, "上报").click()
    await expect(page.get_by_role("button", name="使用我的位置")).to_be_visible()
    await fits("report")
    await tab(page, "待发送").click()
    await expect(page.get_by_text("没有待发送的内容")).to_be_visible()
    await fits("pending")

    # Touch targets: the tab bar's links are at least 44 px tall.
    for name in ("任务", "消息", "上报", "待发送"):
        box = await tab(page, name).bounding_box()
        assert box is not None and box["height"] >= 44, (name, box)

    # The service worker keeps the app shell (and nothing from the API).
    cached = await page.evaluate("""async () => {
        await navigator.serviceWorker.ready;
        const keys = [];
        for (const name of await caches.keys()) {
            for (const req of await (await caches.open(name)).keys()) keys.push(new URL(req.url).pathname);
        }
        return keys;
    }""")
    assert {"/m", "/app/mobile/main.js", "/vendor/preact-htm.js"} <= set(cached)
    assert not [k for k in cached if k.startswith("/api/")]
    # …so the view opens without a network (signing in again waits for it).
    await ctx.set_offline(True)
    await page.reload()
    await expect(page.get_by_role("button", name="登录")).to_be_visible()
    await artifacts.screenshot(page, "offline-shell")
    await ctx.set_offline(False)
    clean(artifacts)
