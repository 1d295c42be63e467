"""A whole incident, played by two people in two browser contexts of Debian's Chromium.

The commander works at a desktop console, the field responder on a phone. The commander reports an
incident, verifies it and assigns a task to the responder; the responder is urged, chats in the
incident room, uploads a photo and submits; the commander sends the result back, the responder
submits again and the commander passes it. Every step is checked on both screens and in what the
server stored, and the case's timeline shows each of them. A second test shows that chat text with
HTML and script in it is shown as text on both faces.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, BrowserContext, FilePayload, Locator, Page, expect

from tests.e2e.conftest import Artifacts, County, csp_violations, new_face, png, sign_in
from tests.factories import Session

INCIDENT = "北河堤防管涌"
TASK = "封堵管涌并设置警戒"




async def api(county: County, method: str, path: str, session: Session, **kw: Any) -> Any:
    status, data = await county.muster.request(method, path, session, **kw)
    assert status < 300, (method, path, status, data)
    return data


def clean(artifacts: Artifacts) -> None:
    assert csp_violations(artifacts) == []
    assert [line for line in artifacts.console if "pageerror" in line] == []


def phone_tab(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="主导航").get_by_role("link", name=re.compile(f"^{name}"))


def task_card(page: Page, region: str | None = None) -> Locator:
    board = page.get_by_role("region", name="任务看板")
    scope = board.get_by_role("region", name=region) if region else board
    return scope.locator(".task-card").filter(has_text=TASK)


async def responder_in_room(county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext],
                            room_name: str) -> tuple[BrowserContext, Page]:
    """The responder signed in on a phone, with the room named `room_name` open."""
    phone_ctx = await new_face(chromium, artifacts, phone=True)
    faces.append(phone_ctx)
    phone = await phone_ctx.new_page()
    await sign_in(phone, f"{county.url}/m", "responder")
    await phone_tab(phone, "消息").click()
    await phone.get_by_role("link", name=re.compile(re.escape(room_name))).click()
    return phone_ctx, phone


async def open_phone_task(phone: Page) -> None:
    await phone_tab(phone, "任务").click()
    await phone.get_by_role("link", name=re.compile(TASK)).click()
    await expect(phone.get_by_role("heading", name=TASK)).to_be_visible()


async def phone_submit(phone: Page, text: str, photo: FilePayload | None = None) -> None:
    await phone.get_by_role("button", name="提交办理结果").click()
    dialog = phone.get_by_role("dialog", name="提交办理结果")
    await dialog.get_by_label("办理结果").fill(text)
    if photo is not None:
        await dialog.get_by_label("拍照").set_input_files(files=[photo])
        await expect(dialog.get_by_text("已上传")).to_be_visible()
    await dialog.get_by_role("button", name="提交办理结果").click()
    await expect(dialog).to_have_count(0)
    await expect(phone.locator(".flags").get_by_text("待督查")).to_be_visible()


async def inspect(desk: Page, action: str, comment: str) -> None:
    card = task_card(desk, "待督查")
    await card.get_by_role("button", name=action).click()
    dialog = desk.get_by_role("dialog", name=f"{action}：{TASK}")
    await dialog.get_by_label("意见").fill(comment)
    await dialog.get_by_role("button", name=action).click()
    await expect(dialog).to_have_count(0)


async def test_whole_incident_commander_and_responder(county: County, chromium: Browser, artifacts: Artifacts,
                                                      faces: list[BrowserContext]) -> None:
    storage = county.muster.kernel.storage
    desk_ctx = await new_face(chromium, artifacts)
    phone_ctx = await new_face(chromium, artifacts, phone=True)
    faces += [desk_ctx, phone_ctx]
    desk = await desk_ctx.new_page()
    phone = await phone_ctx.new_page()
    requested: list[str] = []
    for ctx in (desk_ctx, phone_ctx):
        ctx.on("request", lambda request: requested.append(request.url))
    await sign_in(desk, f"{county.url}/console", "commander")
    await sign_in(phone, f"{county.url}/m", "responder")

    # 1. The commander reports the incident (上报) and verifies it (核实) at level Ⅲ.
    await desk.get_by_role("navigation", name="主导航").get_by_role("link", name="事件").click()
    await desk.get_by_role("button", name="上报事件").click()
    report = desk.get_by_role("dialog", name="上报事件")
    await report.get_by_label("事件标题").fill(INCIDENT)
    await report.get_by_label("事件类型").select_option(label="洪涝灾害")
    await report.get_by_label("事发地点").fill("北河左岸 3 号堤段")
    await report.get_by_label("情况描述").fill("堤脚出现管涌，直径约 20 厘米。")
    await report.get_by_role("button", name="上报事件").click()
    await expect(desk.get_by_role("heading", name=INCIDENT, level=1)).to_be_visible()
    await desk.get_by_role("button", name="核实").click()
    verify = desk.get_by_role("dialog", name=f"核实：{INCIDENT}")
    await verify.get_by_label("事件等级").select_option(label="Ⅲ级")
    await verify.get_by_role("button", name="核实").click()
    await expect(desk.locator(".state.big")).to_have_text("已核实")
    incident = next(i for i in await storage.list_incidents() if i.title == INCIDENT)
    assert (incident.state, incident.level, incident.type) == ("verified", 3, "flood")
    assert incident.room_id
    await artifacts.screenshot(desk, "verified")

    # 2. The commander assigns the task (交办) to the responder in person.
    await desk.get_by_role("button", name="交办任务").click()
    assign = desk.get_by_role("dialog", name="交办任务")
    await assign.get_by_label("任务名称").fill(TASK)
    await assign.get_by_label("办理要求").fill("沙袋反滤围井，设置警戒线，完成后拍照回报。")
    await assign.get_by_label("责任部门").select_option(label="综合应急救援队")
    await assign.get_by_label("责任人").select_option(label="王磊（综合应急救援队）")
    await assign.get_by_role("button", name="交办任务").click()
    await expect(assign).to_have_count(0)
    await expect(task_card(desk)).to_contain_text("王磊")
    responder_id = await county.user_id("responder")
    [task] = [t for t in await storage.list_tasks(case_type="incident", case_id=incident.id) if t.title == TASK]
    assert (task.assignee_id, task.state) == (responder_id, "assigned")

    # 3. The responder's phone gets the task; the commander urges it and the phone shows the urge.
    await expect(phone.get_by_role("link", name=re.compile(TASK))).to_be_visible()
    await task_card(desk).get_by_role("button", name="催办").click()
    urge = desk.get_by_role("dialog", name=f"催办：{TASK}")
    await urge.get_by_label("催办内容").fill("水位还在涨，请立即签收")
    await urge.get_by_role("button", name="催办").click()
    await expect(urge).to_have_count(0)
    await expect(phone.get_by_role("log", name="通知").get_by_text(f"催办：{TASK}").last).to_be_visible()
    await artifacts.screenshot(phone, "urged")

    # 4. The responder accepts (签收) and writes in the incident room; the commander reads it there.
    await open_phone_task(phone)
    await phone.get_by_role("button", name="签收").click()
    await expect(phone.locator(".flags").get_by_text("已签收")).to_be_visible()
    await expect(task_card(desk, "已签收")).to_be_visible()
    await phone_tab(phone, "消息").click()
    await phone.get_by_role("link", name=re.compile(re.escape(INCIDENT))).click()
    said = "已到达 3 号堤段，正在组织封堵"
    await phone.get_by_label("消息内容").fill(said)
    await phone.get_by_label("消息内容").press("Enter")
    await expect(phone.locator(".timeline .event.message:not(.pending)").filter(has_text=said)).to_be_visible()
    desk_chat = desk.get_by_role("region", name="事件群组")
    await expect(desk_chat.locator(".event.message").filter(has_text=said)).to_be_visible()
    await desk_chat.get_by_label("消息内容").fill("收到，注意安全")
    await desk_chat.get_by_label("消息内容").press("Enter")
    await expect(phone.locator(".event.message").filter(has_text="收到，注意安全")).to_be_visible()
    await artifacts.screenshot(phone, "chat")

    # 5. The responder submits with a photo from the camera; the commander sends it back (督查退回).
    photo: FilePayload = {"name": "管涌封堵.png", "mimeType": "image/png", "buffer": png(16, 12, b"\x20\x60\xc0")}
    await open_phone_task(phone)
    await phone_submit(phone, "已用沙袋围井封堵。", photo)
    await expect(task_card(desk, "待督查")).to_be_visible()
    await artifacts.screenshot(desk, "submitted")
    await inspect(desk, "督查退回", "缺少警戒线照片，请补充")
    await expect(phone.locator(".flags").get_by_text("已退回")).to_be_visible()
    await expect(phone.get_by_text("缺少警戒线照片，请补充")).to_be_visible()
    await artifacts.screenshot(phone, "sent-back")

    # 6. The responder submits again; the commander passes it (督查通过).
    await phone_submit(phone, "已补设警戒线并拍照，管涌已控制。", photo)
    await inspect(desk, "督查通过", "处置到位")
    await expect(task_card(desk, "已办结")).to_be_visible()
    await expect(phone.locator(".flags").get_by_text("已办结")).to_be_visible()
    await artifacts.screenshot(phone, "passed")

    stored = await storage.get_task(task.id)
    assert stored is not None and stored.state == "passed"
    assert stored.result_text == "已补设警戒线并拍照，管涌已控制。"
    [file_id] = stored.result_attachments
    commander = await county.muster.login("commander", county.password)
    assert (await api(county, "GET", f"/api/files/{file_id}", commander))["name"] == "管涌封堵.png"

    # 7. The timeline shows every step, in order, on the console.
    timeline = desk.get_by_role("region", name="处置时间线")
    data = await api(county, "GET", f"/api/incidents/{incident.id}/timeline", commander)
    actions = [e["action"] for e in data["entries"] if e["kind"] == "workflow"]
    expected = ["incident.report", "incident.verify", "task.assign", "task.urge", "task.accept", "task.submit",
                "task.inspect_send_back", "task.submit", "task.inspect_pass"]
    it = iter(actions)
    assert all(a in it for a in expected), actions  # each step present, in this order
    for step in ("上报了事件「" + INCIDENT, "核实了事件", "交办任务「" + TASK, "催办任务「" + TASK, "签收「" + TASK,
                 "提交办理结果「" + TASK, "督查退回「" + TASK, "督查通过「" + TASK, "水位还在涨，请立即签收"):
        await expect(timeline).to_contain_text(step)
    await artifacts.screenshot(desk, "timeline")

    # Everything came from Muster itself (no CDN), and no token sits where page scripts could read it.
    foreign = [u for u in requested if not u.startswith((county.url + "/", "blob:", "data:"))]
    assert foreign == []
    for page in (desk, phone):
        kept = await page.evaluate("""() => [document.cookie, JSON.stringify({...localStorage}),
                                             JSON.stringify({...sessionStorage})].join(" ")""")
        assert "muster_refresh" not in kept and "access_token" not in kept and "eyJ" not in kept, kept
    clean(artifacts)


async def test_reconnects_and_shows_what_it_missed(county: County, chromium: Browser, artifacts: Artifacts,
                                                   faces: list[BrowserContext]) -> None:
    commander = await county.muster.login("commander", county.password)
    [incident] = [i for i in await county.muster.kernel.storage.list_incidents() if i.room_id]
    phone_ctx, phone = await responder_in_room(county, chromium, artifacts, faces, incident.title)
    badge = phone.get_by_role("status", name="连接状态")

    accepted = county.muster.kernel.metrics.socket_connects.labels("accepted")
    connections = accepted._value.get()

    await phone_ctx.set_offline(True)
    await expect(badge).to_have_text("离线")
    missed = [f"离线期间第 {n} 条指令" for n in range(1, 4)]
    for n, text in enumerate(missed):
        await api(county, "POST", f"/api/rooms/{incident.room_id}/messages", commander,
                  json={"client_id": f"missed-{n}", "text": text})
    lines = phone.locator(".timeline .event.message").filter(has_text="离线期间")
    await expect(lines).to_have_count(0)  # nothing reaches a phone without network
    await artifacts.screenshot(phone, "offline")
    await phone_ctx.set_offline(False)
    await expect(badge).to_have_text("已连接")
    await expect(lines).to_have_count(3)
    assert await lines.locator(".text").all_text_contents() == missed  # each once, in order
    assert accepted._value.get() == connections + 1  # a new connection, which synced what it missed
    await artifacts.screenshot(phone, "resynced")
    clean(artifacts)


async def test_urge_raises_a_system_notification_in_the_background(
        county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]) -> None:
    phone_ctx = await new_face(chromium, artifacts, phone=True)
    faces.append(phone_ctx)
    # The browser's Notification API, recorded; the page is in the background (another app in front).
    await phone_ctx.add_init_script("""
        window.__shown = [];
        window.Notification = class {
            static permission = "granted";
            static requestPermission() { return Promise.resolve("granted"); }
            constructor(title, options) { window.__shown.push({title, body: options.body}); }
            close() {}
        };
        document.hasFocus = () => false;
    """)
    phone = await phone_ctx.new_page()
    await sign_in(phone, f"{county.url}/m", "responder")
    commander = await county.muster.login("commander", county.password)
    responder = await county.muster.login("responder", county.password, device_kind="mobile")
    tasks = (await api(county, "GET", "/api/tasks?mine=true", responder))["tasks"]
    task = next(t for t in tasks if t["state"] not in ("passed", "cancelled", "submitted"))
    await api(county, "POST", f"/api/tasks/{task['id']}/urge", commander, json={"message": "请回报"})
    await expect(phone.get_by_role("log", name="通知").get_by_text(f"催办：{task['title']}").last).to_be_visible()
    shown = await phone.evaluate("window.__shown")
    assert {"title": "Muster", "body": f"催办：{task['title']}"} in shown
    clean(artifacts)


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>粗体</b> & 水位'


async def test_chat_html_is_shown_as_text(county: County, chromium: Browser, artifacts: Artifacts,
                                          faces: list[BrowserContext]) -> None:
    commander = await county.muster.login("commander", county.password)
    [incident] = [i for i in await county.muster.kernel.storage.list_incidents() if i.room_id]
    await api(county, "POST", f"/api/rooms/{incident.room_id}/messages", commander,
              json={"client_id": "hostile-1", "text": HOSTILE})

    desk_ctx = await new_face(chromium, artifacts)
    phone_ctx = await new_face(chromium, artifacts, phone=True)
    faces += [desk_ctx, phone_ctx]
    desk = await desk_ctx.new_page()
    phone = await phone_ctx.new_page()
    await sign_in(desk, f"{county.url}/console#/incidents/{incident.id}", "commander")
    await sign_in(phone, f"{county.url}/m", "responder")
    await phone_tab(phone, "消息").click()
    await phone.get_by_role("link", name=re.compile(re.escape(incident.title))).click()

    for page in (desk, phone):
        line = page.locator(".timeline .event.message").filter(has_text="粗体")
        await expect(line).to_be_visible()
        # The exact characters, as text; no element was made from them and no script ran.
        assert await line.locator(".text").text_content() == HOSTILE
        assert await line.locator("img, script, b").count() == 0
        assert await page.evaluate("window.__pwned") is None
    await artifacts.screenshot(desk, "hostile-console")
    await artifacts.screenshot(phone, "hostile-phone")
    clean(artifacts)


async def test_a_missed_live_event_is_fetched_on_a_gap_or_a_sync_hint(
        county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]) -> None:
    """What a node that lost Redis leaves behind: events stored but never pushed. The phone repairs the hole
    when the next live event skips a sequence number, and when the server sends `sync.hint`."""
    from server.ids import new_id
    from server.storage.records import RoomEvent

    storage = county.muster.kernel.storage
    commander = await county.muster.login("commander", county.password)
    commander_id = await county.user_id("commander")
    [incident] = [i for i in await storage.list_incidents() if i.room_id]
    room_id = incident.room_id
    assert room_id is not None
    _, phone = await responder_in_room(county, chromium, artifacts, faces, incident.title)
    lines = phone.locator(".timeline .event.message")

    async def stored_silently(text: str) -> None:
        event = RoomEvent(id=new_id(), room_id=room_id, seq=0, kind="message", sender_id=commander_id,
                          device_id=None, client_id=None, created_at=0, body={"text": text})
        _, created = await storage.append_event(event)
        assert created

    await stored_silently("未推送的第一条")
    await expect(lines.filter(has_text="未推送的第一条")).to_have_count(0)
    await api(county, "POST", f"/api/rooms/{room_id}/messages", commander,
              json={"client_id": "after-gap", "text": "推送的下一条"})
    await expect(lines.filter(has_text="未推送的第一条")).to_have_count(1)  # fetched because of the gap
    await expect(lines.filter(has_text="推送的下一条")).to_have_count(1)

    await stored_silently("未推送的第二条")
    responder_room = f"user:{await county.user_id('responder')}"
    await county.muster.kernel.gateway.sio.emit("sync.hint", {"room_ids": [room_id]}, room=responder_room)
    await expect(lines.filter(has_text="未推送的第二条")).to_have_count(1)
    texts = await lines.locator(".text").all_text_contents()
    assert texts.index("未推送的第一条") < texts.index("推送的下一条") < texts.index("未推送的第二条")
    clean(artifacts)
