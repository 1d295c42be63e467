"""Two headless Chromium pages hold one recorded consultation (视频会商) through Muster's socket and SFU.

Muster is started by the test; a commander (the host) and a responder (the guest) are made in Python,
with a room they are both members of. Each takes part from its own browser context (Debian's Chromium,
fake camera and microphone from `--use-fake-device-for-media-stream --use-fake-ui-for-media-stream`) on
a page served from Muster's origin, with the socket.io browser client (tests/js/package-lock.json) and
tests/e2e/consultation_page.js, which does what the web console does (docs/MEDIA.md): getUserMedia
(640×480 video and audio), `call.start` (host) and `call.join`, one `RTCPeerConnection` with the
answered `ice_servers` and `bundlePolicy: "max-bundle"`, `call.publish` video then audio, and
`call.subscribe` to the other's publications (those in the join answer, and each `call.published`).
The server is the offerer: every offer (and every server-pushed `call.offer`) is applied in one promise
chain, the camera or microphone going onto the m-lines the offer's `mids` names "publish", and answered
with `call.answer` once ICE gathering is complete.

Checked from Python through `pc.getStats()` in each page: an inbound-rtp VP8 video on the m-line that
carries the OTHER participant's camera with more than 30 frames decoded, and an inbound-rtp Opus audio
carrying the other's microphone with more than 50 packets received (bounded wait, no timing
assertion). The host then records (`call.record {on: true}`, ~3 s of media, `{on: false}`); the stored
file (`GET /api/files/{file_id}/content` with the host's token) is opened with PyAV and must hold one
stream per publication (both cameras as VP8 640×480, both microphones as Opus, named by their
`track_id` tag), each decoding more than 10 frames. When the guest leaves, the host's page must answer
the server's `call.offer` that drops the guest's streams; then the host leaves and the call ends.
Screenshots of both pages (each shows the other's video), both pages' final stats and the console log
go to tests/e2e/artifacts/. Needs /usr/bin/chromium, and npm when tests/js/node_modules is missing:
without them it fails.

Seen here (Chromium 156, aiortc 1.16): Chromium answers every offer as is (VP8 + RTX, Opus, one BUNDLE
transport); the selected ICE pair is a host candidate on the machine's own interface (an IPv6 ULA
here), never loopback, since Chromium does not gather on loopback; the fake camera sends ~20 fps.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
from playwright.async_api import Browser, ConsoleMessage, Page

from tests.e2e.conftest import Artifacts, ensure_js_package, open_on_origin
from tests.factories import Muster, make_settings, running_muster
from tests.rooms.conftest import connect, make_room

PAGE_SCRIPT = Path(__file__).resolve().parent / "consultation_page.js"
PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Muster: consultation</title>
<style>body{font:14px sans-serif;margin:1em} video{width:400px;height:300px;background:#222;margin-right:8px}
pre{font-size:11px;white-space:pre-wrap}</style></head>
<body><h1 id="who">consultation</h1><p id="status">loading</p>
<div><figure style="display:inline-block;margin:0"><video id="remote" autoplay playsinline muted></video>
<figcaption>remote (forwarded by Muster)</figcaption></figure>
<figure style="display:inline-block;margin:0"><video id="local" autoplay playsinline muted></video>
<figcaption>local camera</figcaption></figure></div>
<pre id="log"></pre></body></html>"""

MEDIA_WITHIN = 45.0  # bound for media to flow both ways (a healthy run needs a few seconds)
STEP_WITHIN = 60.0  # bound for one page call (join, publish, subscribe: a few negotiations)
RECORD_FRAMES = 60  # frames each page decodes while recording: ~3 s at the fake camera's ~20 fps


class Participant:
    """One browser page in the call, driven through window.consultation (consultation_page.js)."""

    def __init__(self, label: str, page: Page) -> None:
        self.label = label
        self.page = page
        self.participant_id = ""
        self.publications: dict[str, str] = {}

    async def run(self, expression: str, arg: Any = None, within: float = STEP_WITHIN) -> Any:
        return await asyncio.wait_for(self.page.evaluate(expression, arg), within)

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.run("consultation.stats()")
        return result

    async def join(self, call_id: str) -> None:
        joined = await self.run("id => consultation.join(id)", call_id)
        assert joined["iceServers"] == [], joined  # no STUN/TURN configured: host candidates only
        self.participant_id = joined["participantId"]
        self.publications = joined["publications"]
        assert set(self.publications) == {"video", "audio"}, joined


async def open_participant(page: Page, label: str, origin: str, token: str, socket_js: Path) -> Participant:
    await open_on_origin(page, origin, PAGE_HTML)
    await page.evaluate("label => { document.getElementById('who').textContent = label; }", label)
    await page.add_script_tag(path=socket_js)
    await page.add_script_tag(path=PAGE_SCRIPT)
    participant = Participant(label, page)
    await participant.run("c => consultation.connect(c)", {"origin": origin, "token": token})
    camera = await participant.run("consultation.openMedia()")
    assert camera == {"width": 640, "height": 480}, camera
    return participant


@contextlib.asynccontextmanager
async def browser_page(browser: Browser, artifacts: Artifacts, label: str) -> AsyncIterator[Page]:
    """A page in its own browser context (own socket, own fake devices); console lines go to the artifacts'
    log with the label, and a screenshot and the console log are kept if the test fails while the page is open."""
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    context.set_default_timeout(30_000)

    def on_console(message: ConsoleMessage) -> None:
        artifacts.console.append(f"[{label}] [{message.type}] {message.text}")

    context.on("console", on_console)
    context.on("weberror", lambda web_error: artifacts.console.append(f"[{label}] [pageerror] {web_error.error}"))
    try:
        page = await context.new_page()
        try:
            yield page
        except BaseException:
            with contextlib.suppress(Exception):
                await artifacts.screenshot(page, f"failure-{label}")
            artifacts.write_console("failure-console")  # both pages' lines, each labelled
            raise
    finally:
        await context.close()


def _inbound(stats: dict[str, Any], kind: str, publication_id: str) -> dict[str, Any] | None:
    """The inbound-rtp of `kind` on the m-line the server said carries `publication_id`."""
    for entry in stats["inbound"]:
        slot = entry["slot"] or {}
        if entry["kind"] == kind and slot.get("role") == "subscribe" and slot.get("publication_id") == publication_id:
            return dict(entry)
    return None


def _receiving(stats: dict[str, Any], sender: Participant, frames: int = 30, packets: int = 50) -> bool:
    video = _inbound(stats, "video", sender.publications["video"])
    audio = _inbound(stats, "audio", sender.publications["audio"])
    return (video is not None and video["framesDecoded"] > frames
            and audio is not None and audio["packetsReceived"] > packets)


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], within: float, *pages: Participant) -> None:
    """Poll `check` (async, true when done) until it holds; on timeout fail with both pages' stats."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await check():
            return
        errors = [(p.label, e) for p in pages for e in (await p.stats())["errors"]]
        assert not errors, errors
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {within} s: {what}: "
                                 f"{ {p.label: await p.stats() for p in pages} }")
        await asyncio.sleep(0.5)


async def download(muster: Muster, file_id: str, headers: dict[str, str]) -> bytes:
    async with muster.http.get(f"{muster.url}/api/files/{file_id}/content", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "video/webm", resp.content_type
        return await resp.read()


def recorded_streams(data: bytes) -> list[dict[str, Any]]:
    """Per stream of the WebM: its type, codec, tags, how many frames PyAV decodes and (video) their sizes."""
    found: list[dict[str, Any]] = []
    with av.open(io.BytesIO(data), mode="r") as container:
        count = len(container.streams)
    for index in range(count):
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams[index]
            frames = 0
            sizes: set[tuple[int, int]] = set()
            for frame in container.decode(stream):
                frames += 1
                if isinstance(frame, av.VideoFrame):
                    sizes.add((frame.width, frame.height))
            found.append({"type": stream.type, "codec": stream.codec_context.name,
                          "tags": {k.lower(): v for k, v in stream.metadata.items()},
                          "frames": frames, "sizes": sorted(sizes)})
    return found


async def test_two_chromium_pages_hold_a_recorded_consultation_through_the_sfu(
    tmp_path: Path, chromium: Browser, artifacts: Artifacts,
) -> None:
    socket_js = await ensure_js_package("socket.io-client") / "dist" / "socket.io.min.js"
    async with running_muster(make_settings(tmp_path)) as muster:
        host_session = await muster.session("commander")
        guest_session = await muster.session("responder")
        owner = await connect(muster, host_session)
        guest_client = await connect(muster, guest_session)
        room_id = await make_room(owner, guest_client, name="防汛视频会商")

        async with (browser_page(chromium, artifacts, "host") as host_page,
                    browser_page(chromium, artifacts, "guest") as guest_page):
            host = await open_participant(host_page, "host", muster.url, host_session.access_token, socket_js)
            guest = await open_participant(guest_page, "guest", muster.url, guest_session.access_token, socket_js)
            pages = (host, guest)

            # The host starts and publishes; the guest joins (finding the host's publications in the join
            # answer), publishes, and the host subscribes when it hears call.published.
            call = await host.run("room => consultation.start(room)", room_id)
            assert call["kind"] == "consultation" and call["room_id"] == room_id, call
            await host.join(call["id"])
            await guest.join(call["id"])

            async def both_receiving() -> bool:
                host_stats, guest_stats = await host.stats(), await guest.stats()
                return _receiving(host_stats, guest) and _receiving(guest_stats, host)

            await wait_for("each page decodes the other's video and receives its audio", both_receiving,
                           MEDIA_WITHIN, *pages)
            for me, other in ((host, guest), (guest, host)):
                stats = await me.stats()
                video = _inbound(stats, "video", other.publications["video"])
                audio = _inbound(stats, "audio", other.publications["audio"])
                assert video is not None and audio is not None, stats
                assert video["slot"]["participant_id"] == other.participant_id, stats
                assert audio["slot"]["participant_id"] == other.participant_id, stats
                assert video["codec"] == "video/VP8" and audio["codec"] == "audio/opus", stats
                assert (video["frameWidth"], video["frameHeight"]) == (640, 480), stats
                assert stats["pair"] is not None and stats["pair"]["state"] == "succeeded", stats
            # The host subscribed on hearing call.published; the guest from its join answer.
            assert "call.published" in (await host.stats())["events"]

            async def remote_video_playing() -> bool:
                shown = [await p.run("consultation.remoteVideo()") for p in pages]
                return all(v["width"] == 640 and v["time"] > 0 and not v["paused"] for v in shown)

            await wait_for("both pages show the other's video", remote_video_playing, MEDIA_WITHIN, *pages)
            await artifacts.screenshot(host_page, "host")
            await artifacts.screenshot(guest_page, "guest")

            # Recording: the host (a commander, and the call's starter) records a few seconds of both.
            started = await host.run("consultation.record(true)")
            assert started["recording"] is True, started
            before = {p.label: _inbound(await p.stats(), "video", o.publications["video"])
                      for p, o in ((host, guest), (guest, host))}

            async def more_media() -> bool:
                for p, o in ((host, guest), (guest, host)):
                    now = _inbound(await p.stats(), "video", o.publications["video"])
                    seen = before[p.label]
                    if now is None or seen is None or now["framesDecoded"] < seen["framesDecoded"] + RECORD_FRAMES:
                        return False
                return True

            # ~3 s of media into the file, counted in frames the pages decode meanwhile (not in seconds)
            await wait_for("media keeps flowing while recording", more_media, MEDIA_WITHIN, *pages)
            stopped = await host.run("consultation.record(false)")
            assert stopped["recording"] is False and stopped["file_id"], stopped
            data = await download(muster, stopped["file_id"], host_session.headers)
            recorded = await asyncio.to_thread(recorded_streams, data)
            # One stream per publication (both participants' camera and microphone), named after it.
            expected = {p.publications[kind]: (kind, f"{user_id}:{source}")
                        for p, user_id in ((host, host_session.user_id), (guest, guest_session.user_id))
                        for kind, source in (("video", "camera"), ("audio", "microphone"))}
            assert {s["tags"].get("track_id"): (s["type"], s["tags"].get("title")) for s in recorded} == expected, (
                recorded, expected)
            for stream in recorded:
                assert stream["codec"] == {"video": "vp8", "audio": "opus"}[stream["type"]], recorded
                assert stream["frames"] > 10, recorded
                if stream["type"] == "video":
                    assert stream["sizes"] == [(640, 480)], recorded
            # What was seen, for whoever looks at the screenshots: both pages' stats and the recording.
            seen = {p.label: await p.stats() for p in pages}
            artifacts.path("stats", ".json").write_text(json.dumps({**seen, "recording": recorded}, indent=1,
                                                                   ensure_ascii=False), encoding="utf-8")

            # The guest leaves: the server offers the host a connection without the guest's streams,
            # which the host's page answers; then the host leaves and the call ends.
            host_offers = (await host.stats())["offersApplied"]
            await guest.run("consultation.leave()")

            async def host_renegotiated() -> bool:
                await host.run("consultation.settled()")
                stats = await host.stats()
                return bool(stats["offersApplied"] > host_offers and "call.left" in stats["events"])

            await wait_for("the host answers the offer without the guest", host_renegotiated, STEP_WITHIN, host)
            await host.run("consultation.leave()")
            status, body = await muster.request("GET", f"/api/rooms/{room_id}/call", host_session)
            assert status == 200 and body["call"] is None, body
            artifacts.write_console()
