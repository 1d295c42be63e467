"""Real aiortc client peers for the SFU tests: they answer the server's offers the way a browser does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import (
    AudioStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from media.passthrough import on_keyframe_request
from media.sfu import Sfu

CALL = "call-1"


class Camera(VideoStreamTrack):
    """A small moving picture (a real encoder makes real key and delta frames of it), 30 fps."""

    def __init__(self, shade: int) -> None:
        super().__init__()
        self._shade = shade
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        width, height = 160, 120
        frame = VideoFrame(width=width, height=height)
        self._count += 1
        bar = (self._count * 4) % width
        row = bytes([self._shade] * bar + [255 - self._shade] * (width - bar))
        frame.planes[0].update(row * height)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class Client:
    """One participant's browser stand-in: one RTCPeerConnection to the SFU, a camera and a microphone."""

    def __init__(self, sfu: Sfu, participant_id: str, *, shade: int = 60, read_tracks: bool = True) -> None:
        self.sfu = sfu
        self.id = participant_id
        # max-bundle: with aiortc's default "balanced" policy, a second m-line of a kind created while answering
        # stays on the first one's transport, which BUNDLE then discards (browsers bundle correctly either way)
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.camera = Camera(shade)
        self.microphone = AudioStreamTrack()
        self.read_tracks = read_tracks
        #: publication id -> decoded frames received
        self.frames: dict[str, int] = {}
        #: publication ids whose track ended
        self.ended: set[str] = set()
        #: PLI/FIR that reached this client's senders (it publishes)
        self.keyframe_requests = 0
        self.mids: dict[str, dict[str, Any]] = {}
        self._readers: dict[RTCRtpTransceiver, asyncio.Task[None]] = {}
        self._hooked: set[RTCRtpTransceiver] = set()

    async def connect(self) -> None:
        await self.sfu.connect(CALL, self.id)

    async def publish_camera_and_microphone(self) -> tuple[str, str]:
        video = await self.sfu.publish(CALL, self.id, kind="video", source="camera")
        audio = await self.sfu.publish(CALL, self.id, kind="audio", source="microphone")
        return video, audio

    async def receive_offer(self) -> None:
        """Apply the server's offer and prepare the answer (not sent): camera/microphone on publish m-lines."""
        offer = await self.sfu.negotiate(CALL, self.id)
        self.mids = offer["mids"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        for transceiver in self.pc.getTransceivers():
            slot = self.mids.get(transceiver.mid or "")
            if slot is None or slot["role"] == "unused":
                transceiver.direction = "inactive"
            elif slot["role"] == "publish":
                if transceiver.sender.track is None:
                    track: MediaStreamTrack = self.camera if slot["kind"] == "video" else self.microphone
                    transceiver.sender.replaceTrack(track)
                if transceiver not in self._hooked:
                    self._hooked.add(transceiver)
                    on_keyframe_request(transceiver.sender, self._count_keyframe_request)
                transceiver.direction = "sendonly"
            else:
                transceiver.direction = "recvonly"
                if self.read_tracks and transceiver not in self._readers:
                    self._readers[transceiver] = asyncio.create_task(
                        self._read(transceiver.receiver.track, slot["publication_id"]))
        await self.pc.setLocalDescription(await self.pc.createAnswer())

    async def send_answer(self) -> None:
        await self.sfu.answer(CALL, self.id, self.pc.localDescription.sdp)

    async def negotiate(self) -> None:
        await self.receive_offer()
        await self.send_answer()

    def _count_keyframe_request(self) -> None:
        self.keyframe_requests += 1

    async def _read(self, track: MediaStreamTrack, publication_id: str) -> None:
        self.frames.setdefault(publication_id, 0)
        try:
            while True:
                await track.recv()
                self.frames[publication_id] += 1
        except MediaStreamError:
            self.ended.add(publication_id)

    def receiving(self, publication_id: str) -> RTCRtpTransceiver:
        return next(t for t in self.pc.getTransceivers()
                    if t.mid is not None and self.mids.get(t.mid, {}).get("publication_id") == publication_id
                    and self.mids[t.mid]["role"] == "subscribe")

    async def close(self) -> None:
        for task in self._readers.values():
            task.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        await self.pc.close()
        self.camera.stop()
        self.microphone.stop()


async def wait_until(condition: Callable[[], bool], describe: Callable[[], object], *, within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail with ``describe()`` after ``within`` seconds (a bound, not a timing
    assertion: on a healthy run each condition holds in well under a second)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached in {within} s: {describe()}")
        await asyncio.sleep(0.05)


class Renegotiations:
    """Records on_negotiation_needed calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, call_id: str, participant_id: str) -> None:
        self.calls.append((call_id, participant_id))


@pytest.fixture
def renegotiations() -> Renegotiations:
    return Renegotiations()


@pytest.fixture
async def sfu_factory(renegotiations: Renegotiations) -> AsyncIterator[Callable[..., Sfu]]:
    made: list[Sfu] = []

    def make(**kwargs: Any) -> Sfu:
        sfu = Sfu(on_negotiation_needed=renegotiations, **kwargs)
        made.append(sfu)
        return sfu

    yield make
    for sfu in made:
        await sfu.close()


@pytest.fixture
async def peers() -> AsyncIterator[list[Client]]:
    """Clients a test creates go in this list; all are closed at the end."""
    made: list[Client] = []
    yield made
    await asyncio.gather(*(client.close() for client in made), return_exceptions=True)
