"""The consultation page (/call, 视频会商) in Chromium with fake camera and microphone, on the demo county.

The commander (张伟, desktop) starts the call in the demo incident's room; the department lead (李强) joins
from the same room (he is a member) or a user joins by an invitation link the commander makes in the UI.
Everything is driven through the page as a user would (roles and labels in zh-CN), and checked on the
page (the other's <video> decodes frames, indicators, tiles) and on the server (files, the live call).
"""

from __future__ import annotations

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from media.views import CALLS
from tests.e2e.conftest import Artifacts, County, csp_violations, new_face, sign_in

FRAMES = 10  # frames the remote <video> must have presented: media really flows, not just a poster


async def incident_room(county: County) -> str:
    incidents = await county.muster.kernel.storage.list_incidents()
    assert incidents, "the demo county has an incident"
    room_id = incidents[0].room_id
    assert room_id is not None
    return room_id


async def open_page(
    chromium: Browser,
    artifacts: Artifacts,
    faces: list[BrowserContext],
    url: str,
    username: str,
    *,
    phone: bool = False,
) -> Page:
    ctx = await new_face(chromium, artifacts, phone=phone)
    faces.append(ctx)
    page = await ctx.new_page()
    await sign_in(page, url, username)
    return page


async def join(page: Page, *, start: bool = False) -> None:
    """Press the pre-join screen's button and wait until my own tile is in the grid."""
    name = "发起并加入会商" if start else "加入会商"
    button = page.get_by_role("button", name=name, exact=True)
    await expect(button).to_be_enabled()
    await button.press("Enter")
    await expect(page.get_by_role("region", name="会商控制")).to_be_visible()


async def video_playing(page: Page, who: str) -> dict[str, int]:
    """Wait until the tile of `who` shows video that decodes frames; return what the <video> saw."""
    video: Locator = page.get_by_role("figure", name=who, exact=True).locator("video")
    await expect(video).to_have_count(1)
    handle = await video.element_handle()
    await page.wait_for_function(
        "([v, n]) => v.videoWidth > 0 && !v.paused && v.getVideoPlaybackQuality().totalVideoFrames > n",
        arg=[handle, FRAMES],
    )
    # requestVideoFrameCallback: a frame is presented after the check, with its size.
    seen: dict[str, int] = await video.evaluate(
        """v => new Promise(resolve => v.requestVideoFrameCallback((now, meta) => resolve({
             width: v.videoWidth, height: v.videoHeight, presented: meta.presentedFrames,
             decoded: v.getVideoPlaybackQuality().totalVideoFrames})))"""
    )
    assert seen["width"] > 0 and seen["presented"] > 0 and seen["decoded"] > FRAMES, seen
    return seen


def page_errors(artifacts: Artifacts) -> list[str]:
    return [line for line in artifacts.console if "pageerror" in line]


async def two_in_a_call(
    chromium: Browser,
    artifacts: Artifacts,
    faces: list[BrowserContext],
    county: County,
    *,
    guest_user: str = "lead",
    guest_name: str = "李强",
    phone: bool = False,
) -> tuple[str, Page, Page]:
    """The commander starts the call in the demo incident's room from the desktop; the guest joins from the room
    (on a phone when `phone`); each sees the other's video."""
    room_id = await incident_room(county)
    url = f"{county.url}/call?room={room_id}"
    host = await open_page(chromium, artifacts, faces, url, "commander")
    await join(host, start=True)
    guest = await open_page(chromium, artifacts, faces, url, guest_user, phone=phone)
    await join(guest)
    await video_playing(host, guest_name)
    await video_playing(guest, "张伟")
    return room_id, host, guest


async def test_two_participants_see_each_others_video(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    room_id, host, guest = await two_in_a_call(chromium, artifacts, faces, county)
    # Each sees the other's name on a tile, and its own tile (mirrored) besides.
    await expect(host.get_by_role("figure", name="张伟（我）")).to_be_visible()
    await expect(guest.get_by_role("figure", name="李强（我）")).to_be_visible()
    await expect(host.locator(".tile.own video.mirror")).to_have_count(1)
    live = [c for c in county.muster.app[CALLS].calls.values() if c.room.id == room_id]
    assert len(live) == 1 and len(live[0].participants) == 2, live
    assert len(live[0].publications) == 4  # a camera and a microphone each
    await artifacts.screenshot(host, "call-host")
    await artifacts.screenshot(guest, "call-guest")
    artifacts.write_console()
    assert not page_errors(artifacts), artifacts.console
    assert csp_violations(artifacts) == []


async def test_recording_is_shown_to_everyone_and_stored(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    room_id, host, guest = await two_in_a_call(chromium, artifacts, faces, county)
    record = host.get_by_role("button", name="录制会商")
    await expect(record).to_have_attribute("aria-pressed", "false")
    await record.press("Enter")
    await expect(guest.get_by_role("status").filter(has_text="正在录制")).to_be_visible()
    await expect(host.get_by_role("status").filter(has_text="正在录制")).to_be_visible()
    await expect(record).to_have_attribute("aria-pressed", "true")
    # Some media into the file (counted in frames the pages present, not seconds).
    await video_playing(host, "李强")
    await artifacts.screenshot(guest, "recording-guest")
    await record.press("Enter")
    # call.recording reaches the pages after the file is stored.
    await expect(guest.get_by_role("status").filter(has_text="正在录制")).to_have_count(0)
    session = await county.muster.login("commander", county.password)
    status, body = await county.muster.request("GET", f"/api/rooms/{room_id}/files", session)
    assert status == 200, body
    recordings = [f for f in body["files"] if f["name"].endswith(".webm")]
    assert len(recordings) == 1 and recordings[0]["size"] > 0, body
    await artifacts.screenshot(host, "recording-stopped-host")
    assert not page_errors(artifacts), artifacts.console
    assert csp_violations(artifacts) == []


async def test_host_mutes_guest_guest_leaves_host_ends(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    # The guest is the field responder (王磊) on a phone.
    room_id, host, guest = await two_in_a_call(
        chromium, artifacts, faces, county, guest_user="responder", guest_name="王磊", phone=True
    )
    # Low bandwidth on the phone: audio only drops the video both ways, and brings it back.
    audio_only = guest.get_by_role("button", name="仅音频（低带宽）")
    await audio_only.press("Enter")
    await expect(audio_only).to_have_attribute("aria-pressed", "true")
    await expect(guest.get_by_role("figure", name="张伟", exact=True).locator("video")).to_have_count(0)
    await expect(host.get_by_role("figure", name="王磊", exact=True).get_by_text("摄像头已关闭")).to_be_visible()
    await artifacts.screenshot(guest, "audio-only-guest")
    await audio_only.press("Enter")
    await expect(audio_only).to_have_attribute("aria-pressed", "false")
    await video_playing(guest, "张伟")
    await video_playing(host, "王磊")

    await host.get_by_role("button", name="将 王磊 静音").press("Enter")
    await expect(guest.get_by_role("status").filter(has_text="你已被主持人静音")).to_be_visible()
    await expect(guest.get_by_role("button", name="麦克风静音")).to_have_attribute("aria-pressed", "true")
    await expect(host.get_by_role("figure", name="王磊", exact=True).get_by_text("已被主持人静音")).to_be_visible()
    await artifacts.screenshot(guest, "muted-guest")

    await guest.get_by_role("button", name="离开会商").press("Enter")
    await expect(guest.get_by_role("heading", name="你已离开会商")).to_be_visible()
    await expect(host.get_by_role("figure", name="王磊", exact=True)).to_have_count(0)

    await host.get_by_role("button", name="结束会商").press("Enter")
    dialog = host.get_by_role("dialog", name="结束会商")
    await dialog.get_by_role("button", name="结束会商（所有人）").press("Enter")
    await expect(host.get_by_role("heading", name="会商已结束")).to_be_visible()
    session = await county.muster.login("commander", county.password)
    status, body = await county.muster.request("GET", f"/api/rooms/{room_id}/call", session)
    assert status == 200 and body["call"] is None, body
    await artifacts.screenshot(host, "ended-host")
    assert not page_errors(artifacts), artifacts.console
    assert csp_violations(artifacts) == []


async def test_non_member_refused_and_tampered_invitation_refused(
    county: County, chromium: Browser, artifacts: Artifacts, faces: list[BrowserContext]
) -> None:
    room_id = await incident_room(county)
    url = f"{county.url}/call?room={room_id}"
    # The inspector (赵敏) is not a member of the incident's room.
    outsider = await open_page(chromium, artifacts, faces, url, "inspector")
    await expect(outsider.get_by_role("alert")).to_contain_text("你不是该群组的成员")
    await expect(outsider.get_by_role("button", name="加入会商", exact=True)).to_have_count(0)
    await artifacts.screenshot(outsider, "not-member")

    # The commander starts the call and makes an invitation link for her in the UI.
    host = await open_page(chromium, artifacts, faces, url, "commander")
    await join(host, start=True)
    await host.get_by_role("button", name="邀请人员").press("Enter")
    dialog = host.get_by_role("dialog", name="邀请人员")
    await dialog.get_by_label("邀请谁").select_option(await county.user_id("inspector"))
    await dialog.get_by_role("button", name="生成邀请链接").press("Enter")
    link = await dialog.get_by_label("邀请链接").input_value()
    assert link.startswith(f"{county.url}/call?invite="), link
    await artifacts.screenshot(host, "invite-dialog")
    await dialog.press("Escape")

    # An altered token (its signature changed) is refused by the server.
    head, _, signature = link.rpartition(".")
    tampered = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    await outsider.goto(tampered)
    await join_refused(outsider)
    await expect(outsider.get_by_role("alert")).to_contain_text("邀请链接无效")
    await artifacts.screenshot(outsider, "tampered-invitation")
    assert await county.muster.kernel.storage.get_member(room_id, await county.user_id("inspector")) is None

    # The real link lets her in: the host sees her tile with video.
    await outsider.goto(link)
    await join(outsider)
    await video_playing(host, "赵敏")
    assert await county.muster.kernel.storage.get_member(room_id, await county.user_id("inspector")) is not None
    assert not page_errors(artifacts), artifacts.console
    assert csp_violations(artifacts) == []


async def join_refused(page: Page) -> None:
    button = page.get_by_role("button", name="加入会商", exact=True)
    await expect(button).to_be_enabled()
    await button.press("Enter")
