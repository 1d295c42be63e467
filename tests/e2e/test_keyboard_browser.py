"""The responder's and the consultation's main flows without a mouse: Tab to reach, Enter or Space to act,
typing into labelled fields. (The console's flows are driven by keyboard in test_console_browser.py.)"""

from __future__ import annotations

import re

from playwright.async_api import Browser, BrowserContext, expect

from tests.e2e.conftest import Artifacts, County, csp_violations, new_face, press_until_focused, sign_in


async def test_responder_accepts_and_reports_progress_with_the_keyboard(
        county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]) -> None:
    responder = await county.muster.login("responder", county.password, device_kind="mobile")
    status, data = await county.muster.request("GET", "/api/tasks?mine=true", responder)
    assert status == 200
    task = next(t for t in data["tasks"] if t["state"] == "assigned")
    ctx = await new_face(chromium, artifacts, phone=True)
    faces.append(ctx)
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/m", "responder")

    await press_until_focused(page, page.get_by_role("link", name=re.compile(re.escape(task["title"]))))
    await page.keyboard.press("Enter")
    await press_until_focused(page, page.get_by_role("button", name="签收"))
    await page.keyboard.press("Enter")
    await expect(page.locator(".flags").get_by_text("已签收")).to_be_visible()
    await press_until_focused(page, page.get_by_role("button", name="反馈进展"))
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="反馈进展")
    await press_until_focused(page, dialog.get_by_label("进展情况"))
    await page.keyboard.type("已封控现场，正在疏散")
    await press_until_focused(page, dialog.get_by_label("完成百分比"))
    await page.keyboard.type("30")
    await press_until_focused(page, dialog.get_by_role("button", name="提交"))
    await page.keyboard.press("Enter")
    await expect(dialog).to_have_count(0)

    async def progress() -> list[tuple[str, int | None]]:
        status, data = await county.muster.request("GET", f"/api/tasks/{task['id']}", responder)
        assert status == 200
        return [(p["text"], p["percent"]) for p in data["progress"]]

    await expect(page.get_by_text("已封控现场，正在疏散")).to_be_visible()
    assert await progress() == [("已封控现场，正在疏散", 30)]
    assert csp_violations(artifacts) == []


async def test_consultation_joined_and_muted_with_the_keyboard(
        county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]) -> None:
    [incident] = [i for i in await county.muster.kernel.storage.list_incidents() if i.room_id]
    ctx = await new_face(chromium, artifacts)
    faces.append(ctx)
    page = await ctx.new_page()
    await sign_in(page, f"{county.url}/call?room={incident.room_id}", "commander")

    await press_until_focused(page, page.get_by_role("button", name="发起并加入会商"))
    await page.keyboard.press("Enter")
    controls = page.get_by_role("region", name="会商控制")
    mic = controls.get_by_role("button", name="麦克风静音")
    await press_until_focused(page, mic)
    await expect(mic).to_have_attribute("aria-pressed", "false")
    await page.keyboard.press("Space")
    await expect(mic).to_have_attribute("aria-pressed", "true")
    await press_until_focused(page, page.get_by_role("button", name="离开会商"))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="你已离开会商")).to_be_visible()
    assert csp_violations(artifacts) == []
