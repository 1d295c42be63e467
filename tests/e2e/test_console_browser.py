"""The commander console (/console) in Debian's Chromium, on the demo county.

Each test signs in through the real page, drives it the way people do (the keyboard for the main
flows, finding things by role and label in zh-CN), checks what the page shows and what the server
stored, and saves screenshots of what it shows in tests/e2e/artifacts/.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.conftest import (
    Artifacts,
    County,
    choose_with_keys,
    csp_violations,
    new_face,
    press_until_focused,
    sign_in,
)

DEMO_INCIDENT = "东沟水库水位超警戒"
DEMO_PROJECT = "城东大桥"


async def open_console(
    chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext], county: County, username: str = "commander"
) -> Page:
    ctx = await new_face(chromium, artifacts)
    faces.append(ctx)
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/console", username)
    return page


def nav(page: Page, name: str = "主导航") -> Locator:
    return page.get_by_role("navigation", name=name)


def no_page_errors(artifacts: Artifacts) -> list[str]:
    return [line for line in artifacts.console if "pageerror" in line]


async def api(county: County, method: str, path: str, username: str, **kw: Any) -> Any:
    session = await county.muster.login(username, county.password, device_name="e2e")
    status, data = await county.muster.request(method, path, session, **kw)
    assert status < 300, (status, data)
    return data


async def test_commander_walks_every_screen_with_the_keyboard(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    page = await open_console(chromium, artifacts, faces, county)
    main = page.get_by_role("main")
    # The overview: the demo county's figures (one open incident, Ⅱ级; the bridge under construction).
    await expect(page.get_by_role("heading", name="指挥总览", level=1)).to_be_visible()
    incidents = page.get_by_role("region", name="未结事件")
    await expect(incidents.locator(".big-number")).to_have_text("1")
    await expect(incidents.get_by_role("listitem").filter(has_text="Ⅱ级")).to_contain_text("1")
    await expect(main.get_by_role("link", name=DEMO_PROJECT)).to_be_visible()
    await expect(page.get_by_role("region", name="部门负责人在线情况")).to_contain_text("李强")
    await expect(nav(page).get_by_role("link", name="总览")).to_have_attribute("aria-current", "page")
    await expect(nav(page).get_by_role("link", name="后台管理")).to_have_count(0)
    await artifacts.screenshot(page, "overview")

    await press_until_focused(page, nav(page).get_by_role("link", name="事件"))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="事件", level=1)).to_be_visible()
    await expect(nav(page).get_by_role("link", name="事件")).to_have_attribute("aria-current", "page")
    row = page.get_by_role("row").filter(has_text=DEMO_INCIDENT)
    await expect(row).to_contain_text("处置中")
    await expect(row).to_contain_text("洪涝灾害")
    await artifacts.screenshot(page, "incidents")

    await press_until_focused(page, main.get_by_role("link", name=DEMO_INCIDENT))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name=DEMO_INCIDENT, level=1)).to_be_visible()
    board = page.get_by_role("region", name="任务看板")
    await expect(board.locator(".task-card").filter(has_text="大坝巡查")).to_contain_text("水利局")
    await expect(board.locator(".task-card").filter(has_text="转移下游群众")).to_contain_text("王磊")
    await expect(page.get_by_role("region", name="处置时间线")).to_contain_text("核实了事件")
    room_id = (await county.muster.kernel.storage.list_incidents())[0].room_id
    await expect(page.get_by_role("link", name="发起视频会商")).to_have_attribute("href", f"/call?room={room_id}")
    await expect(page.get_by_role("region", name="事件群组").locator(".chat .event").first).to_be_visible()
    await artifacts.screenshot(page, "incident")

    await press_until_focused(page, nav(page).get_by_role("link", name="重大项目"), "Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="重大项目", level=1)).to_be_visible()
    await expect(page.get_by_role("region", name="建设 1")).to_contain_text("XM-2026-001")
    await artifacts.screenshot(page, "projects")

    await press_until_focused(page, main.get_by_role("link", name=DEMO_PROJECT))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name=DEMO_PROJECT, level=1)).to_be_visible()
    await expect(page.get_by_role("region", name="存在问题")).to_contain_text("临时占用河道审批")
    await expect(page.get_by_role("region", name="项目进展")).to_contain_text("主墩施工完成")
    await expect(page.get_by_role("button", name="推进到「竣工」")).to_be_visible()
    await artifacts.screenshot(page, "project")

    await press_until_focused(page, nav(page).get_by_role("link", name="人员与设备"), "Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="人员与设备", level=1)).to_be_visible()
    me = page.get_by_role("row").filter(has_text="张伟")
    await expect(me).to_contain_text("在线")
    await expect(me).to_contain_text("控制台")
    await expect(page.get_by_role("region", name="水利局")).to_contain_text("李强")
    await artifacts.screenshot(page, "people")
    assert csp_violations(artifacts) == []
    assert no_page_errors(artifacts) == []


async def test_report_verify_and_assign_with_the_keyboard(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    page = await open_console(chromium, artifacts, faces, county)
    await press_until_focused(page, nav(page).get_by_role("link", name="事件"))
    await page.keyboard.press("Enter")
    await press_until_focused(page, page.get_by_role("button", name="上报事件"))
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="上报事件")
    await expect(dialog.get_by_label("事件标题")).to_be_focused()
    await page.keyboard.type("城西化工厂管道泄漏 <script>alert(1)</script>")
    await choose_with_keys(page, dialog.get_by_label("事件类型"), "危化品泄漏")
    await press_until_focused(page, dialog.get_by_label("事发地点"))
    await page.keyboard.type("示范县城西工业园")
    await press_until_focused(page, dialog.get_by_label("情况描述"))
    await page.keyboard.type("管道接口处有刺激性气味。")
    await press_until_focused(page, dialog.get_by_role("button", name="上报事件"))
    await artifacts.screenshot(page, "report")
    await page.keyboard.press("Enter")

    title = "城西化工厂管道泄漏 <script>alert(1)</script>"
    await expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    await expect(page.locator(".state.big")).to_have_text("已上报")
    await press_until_focused(page, page.get_by_role("button", name="核实"))
    await page.keyboard.press("Enter")
    verify = page.get_by_role("dialog", name=f"核实：{title}")
    await choose_with_keys(page, verify.get_by_label("事件等级"), "Ⅱ级", key="ArrowUp")
    await press_until_focused(page, verify.get_by_role("button", name="核实"))
    await page.keyboard.press("Enter")
    await expect(page.locator(".state.big")).to_have_text("已核实")
    await expect(page.get_by_role("heading", name=title, level=1)).to_contain_text("Ⅱ级")

    await press_until_focused(page, page.get_by_role("button", name="交办任务"))
    await page.keyboard.press("Enter")
    assign = page.get_by_role("dialog", name="交办任务")
    await expect(assign.get_by_label("任务名称")).to_be_focused()
    await page.keyboard.type("关闭下游取水口")
    await press_until_focused(page, assign.get_by_label("办理要求"))
    await page.keyboard.type("立即关闭，完成后回报")
    await choose_with_keys(page, assign.get_by_label("责任部门"), "水利局")
    deadline_value = await assign.get_by_label("办结时限").input_value()
    await choose_with_keys(page, assign.get_by_label("优先级"), "紧急")
    await artifacts.screenshot(page, "assign")
    await press_until_focused(page, assign.get_by_role("button", name="交办任务"))
    await page.keyboard.press("Enter")

    card = page.get_by_role("region", name="任务看板").locator(".task-card").filter(has_text="关闭下游取水口")
    await expect(card).to_contain_text("水利局")
    await expect(card).to_contain_text("紧急")
    await expect(card).to_contain_text("剩余")
    await expect(page.get_by_role("region", name="处置时间线")).to_contain_text("交办任务「关闭下游取水口」给 水利局")
    await artifacts.screenshot(page, "assigned")

    # What the server stored: the incident (verified at level 2) and the task for 水利局 with that deadline.
    storage = county.muster.kernel.storage
    incident = next(i for i in await storage.list_incidents() if i.title == title)
    assert (incident.state, incident.level, incident.type) == ("verified", 2, "chemical")
    assert incident.address == "示范县城西工业园"
    water = next(d for d in await storage.list_departments() if d.name == "水利局")
    tasks = (await api(county, "GET", f"/api/incidents/{incident.id}/tasks", "commander"))["tasks"]
    assert [(tk["title"], tk["department_id"], tk["priority"], tk["state"]) for tk in tasks] == [
        ("关闭下游取水口", water.id, "urgent", "assigned")
    ]
    local = datetime.fromisoformat(deadline_value).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    assert tasks[0]["deadline"] // 60000 == int(local.timestamp()) // 60
    assert csp_violations(artifacts) == []
    assert no_page_errors(artifacts) == []


async def test_urge_from_the_board_and_inspect_only_submitted_tasks(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    incident = (await county.muster.kernel.storage.list_incidents())[0]
    page = await open_console(chromium, artifacts, faces, county)
    await page.goto(f"{county.url}/console#/incidents/{incident.id}")
    card = page.get_by_role("region", name="任务看板").locator(".task-card").filter(has_text="大坝巡查")
    task_id = await card.get_attribute("data-task-id")
    assert task_id
    # The demo's automatic chain may or may not have urged it once before the lead accepted it.
    before = await county.muster.kernel.storage.get_task(task_id)
    assert before is not None
    await expect(card).to_contain_text(f"催办 {before.urge_count} 次")
    await expect(card.get_by_role("button", name="督查通过")).to_have_count(0)
    await expect(card.get_by_role("button", name="督查退回")).to_have_count(0)

    await card.get_by_role("button", name="催办").click()
    urge = page.get_by_role("dialog", name="催办：大坝巡查")
    await urge.get_by_label("催办内容").fill("请半小时内回报渗水情况")
    await urge.get_by_role("button", name="催办").click()
    await expect(card).to_contain_text(f"催办 {before.urge_count + 1} 次")
    stored = await county.muster.kernel.storage.get_task(task_id)
    assert stored is not None and stored.urge_count == before.urge_count + 1

    # The lead submits from the phone (here: the API); the commander's board follows and offers inspection.
    await api(county, "POST", f"/api/tasks/{task_id}/submit", "lead", json={"result": "已巡查，渗水点已封堵"})
    submitted = page.get_by_role("region", name="待督查").locator(".task-card").filter(has_text="大坝巡查")
    await expect(submitted.get_by_role("button", name="督查通过")).to_be_visible()
    await expect(submitted.get_by_role("button", name="督查退回")).to_be_visible()
    await expect(submitted.get_by_role("button", name="催办")).to_have_count(0)
    other = page.get_by_role("region", name="任务看板").locator(".task-card").filter(has_text="转移下游群众")
    await expect(other.get_by_role("button", name="督查通过")).to_have_count(0)
    await artifacts.screenshot(page, "submitted")

    await submitted.get_by_role("button", name="督查退回").click()
    back = page.get_by_role("dialog", name="督查退回：大坝巡查")
    await back.get_by_label("意见").fill("请附现场照片")
    await back.get_by_role("button", name="督查退回").click()
    await expect(page.get_by_role("region", name="已退回").locator(".task-card")).to_contain_text("大坝巡查")
    stored = await county.muster.kernel.storage.get_task(task_id)
    assert stored is not None and (stored.state, stored.review_comment) == ("sent_back", "请附现场照片")
    await page.get_by_role("button", name="详情：大坝巡查").click()
    detail = page.get_by_role("dialog", name="大坝巡查")
    await expect(detail).to_contain_text("已巡查，渗水点已封堵")
    await expect(detail).to_contain_text("请附现场照片")
    await expect(detail).to_contain_text("李强")
    await artifacts.screenshot(page, "detail")
    await page.keyboard.press("Escape")
    await expect(detail).to_have_count(0)

    # The disposal record, fetched with the token and saved as a file named after the incident.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="导出处置记录（HTML）").click()
    download = await download_info.value
    assert download.suggested_filename == f"处置记录-{incident.title}.html"
    saved = await download.path()
    record = saved.read_text(encoding="utf-8")
    assert incident.title in record and "请附现场照片" in record
    assert csp_violations(artifacts) == []
    assert no_page_errors(artifacts) == []


async def test_admin_back_office_and_refusal(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    page = await open_console(chromium, artifacts, faces, county, "admin")
    await nav(page).get_by_role("link", name="后台管理").click()
    await expect(page.get_by_role("heading", name="后台管理", level=1)).to_be_visible()
    await page.get_by_role("button", name="新建部门").click()
    dialog = page.get_by_role("dialog", name="新建部门")
    await dialog.get_by_label("部门名称").fill("交通运输局")
    await dialog.get_by_label("上级部门").select_option(label="示范县")
    await dialog.get_by_role("button", name="保存").click()
    await expect(
        page.get_by_role("region", name="部门").get_by_role("row").filter(has_text="交通运输局")
    ).to_contain_text("示范县")

    await page.get_by_role("button", name="新建用户").click()
    dialog = page.get_by_role("dialog", name="新建用户")
    await dialog.get_by_label("用户名").fill("driver1")
    await dialog.get_by_label("姓名").fill("陈刚")
    await dialog.get_by_label("初始密码").fill("Correct-Horse-42")
    await dialog.get_by_label("所属部门").select_option(label="交通运输局")
    await dialog.get_by_label("一线处置人员").check()
    await dialog.get_by_role("button", name="保存").click()
    row = page.get_by_role("region", name="用户").get_by_role("row").filter(has_text="driver1")
    await expect(row).to_contain_text("陈刚")
    await expect(row).to_contain_text("一线处置人员")
    await expect(row).to_contain_text("交通运输局")
    await artifacts.screenshot(page, "back-office")
    storage = county.muster.kernel.storage
    user = await storage.get_user_by_username("driver1")
    department = next(d for d in await storage.list_departments() if d.name == "交通运输局")
    assert user is not None and list(user.roles) == ["responder"] and user.department_id == department.id

    commander = await open_console(chromium, artifacts, faces, county)
    await expect(nav(commander).get_by_role("link", name="总览")).to_be_visible()
    await expect(nav(commander).get_by_role("link", name="后台管理")).to_have_count(0)
    await commander.goto(f"{county.url}/console#/admin")
    await expect(commander.get_by_role("heading", name="后台管理", level=1)).to_be_visible()
    await expect(commander.get_by_role("alert")).to_have_text("只有管理员可以使用后台管理。")
    await expect(commander.get_by_role("button", name="新建用户")).to_have_count(0)
    await artifacts.screenshot(commander, "admin")
    assert csp_violations(artifacts) == []
    assert no_page_errors(artifacts) == []


async def test_english_and_local_times(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    incident = (await county.muster.kernel.storage.list_incidents())[0]
    page = await open_console(chromium, artifacts, faces, county)
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await page.get_by_role("button", name="界面语言").click()
    english = nav(page, "Main navigation")
    await expect(english.get_by_role("link", name="Incidents")).to_be_visible()
    await expect(english.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    await expect(english.get_by_role("link", name="People and devices")).to_be_visible()
    assert await page.evaluate("document.documentElement.lang") == "en"
    await expect(page.get_by_role("heading", name="Command overview", level=1)).to_be_visible()

    await english.get_by_role("link", name="Incidents").click()
    cell = page.get_by_role("row").filter(has_text=incident.title).locator("time")
    shown = await cell.inner_text()
    local = datetime.fromtimestamp(incident.created_at / 1000, ZoneInfo("Asia/Shanghai"))
    assert shown == local.strftime("%m/%d/%Y, %I:%M %p"), (shown, local)  # en: 12-hour clock
    await expect(page.get_by_role("row").filter(has_text=incident.title)).to_contain_text("Responding")
    await artifacts.screenshot(page, "english")
    assert csp_violations(artifacts) == []
    assert no_page_errors(artifacts) == []
