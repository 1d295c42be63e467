"""What forwarding one camera to a few viewers costs the media server: Muster's SFU against transcoding.

One publisher (a generated 640x480 moving picture, 30 fps, aiortc's VP8 encoder, plus Opus audio) and
`--subscribers` N viewers (default 2), all aiortc clients in this process on loopback, talk to a media server
in its own process (`bench/servers/sfu_server.py`), one mode after the other in the same run:

- muster:               `media.sfu.Sfu`, encoded frames forwarded as they are (no decode, no encode),
- transcode (baseline): plain aiortc the usual way: the server receives (decodes) the publisher's tracks and
                        sends each subscriber `MediaRelay().subscribe(track)` (encodes again per subscriber).

After everyone connected and every viewer decoded its first video frames, plus a warm-up, it measures over
`--seconds` of steady state the server process's CPU time (user + system, all threads, from /proc) and the
video frames each viewer decoded. It prints per mode the server's cores used (CPU s / wall s), frames
delivered per viewer per second, CPU ms per delivered frame (server CPU / all viewers' frames), and the ratio
muster / transcode of CPU per delivered frame, measured in the same run because these machines are noisy.
The server process stops with the bench (also when the bench is killed, on Linux). SDP is never printed.

    .venv/bin/python bench/sfu.py [--subscribers 2] [--seconds 15] [--warmup 3] [--modes muster,transcode]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fractions
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """Run in the child before exec: the kernel sends it SIGTERM when the bench dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Camera(VideoStreamTrack):
    """A 640x480 picture that pans sideways with a bright bar crossing it: smooth shapes a camera might see, so
    the encoder makes ordinary key and delta frames (30 fps, aiortc's pacing)."""

    def __init__(self) -> None:
        super().__init__()
        wide = 2 * WIDTH
        rows = []
        for y in range(HEIGHT):
            rows.append(bytes(int(128 + 60 * math.sin(x / 23.0) * math.cos(y / 31.0) + 40 * math.sin((x + y) / 97.0))
                              for x in range(wide)))
        self._rows = rows
        self._chroma = [bytes([128]) * (WIDTH // 2 * HEIGHT // 2), bytes([128]) * (WIDTH // 2 * HEIGHT // 2)]
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._count += 1
        shift = (self._count * 6) % WIDTH
        bar = (self._count * 5) % HEIGHT
        white = bytes([235]) * WIDTH
        luma = b"".join(white if bar <= y < bar + 24 else row[shift:shift + WIDTH] for y, row in enumerate(self._rows))
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        frame.planes[0].update(luma)
        frame.planes[1].update(self._chroma[0])
        frame.planes[2].update(self._chroma[1])
        frame.pts = pts
        frame.time_base = time_base if isinstance(time_base, fractions.Fraction) else fractions.Fraction(time_base)
        return frame


class Signalling:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, route: str, **data: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/{route}", json=data) as resp:
            if resp.status != 200:
                raise RuntimeError(f"POST /{route} answered {resp.status}: {(await resp.text())[:200]}")
            result: dict[str, Any] = await resp.json()
            return result

    async def stats(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/stats") as resp:
            result: dict[str, Any] = await resp.json()
            return result


class Client:
    """One participant: one RTCPeerConnection answering the server's offers (camera and microphone on publish
    m-lines, decoded and counted frames on subscribe m-lines)."""

    def __init__(self, signalling: Signalling, participant: str, *, publisher: bool) -> None:
        self.signalling = signalling
        self.id = participant
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.camera: MediaStreamTrack | None = Camera() if publisher else None
        self.microphone: MediaStreamTrack | None = AudioStreamTrack() if publisher else None
        self.frames = {"video": 0, "audio": 0}
        self._readers: list[asyncio.Task[None]] = []
        self._read: set[RTCRtpTransceiver] = set()

    async def negotiate(self) -> None:
        offer = await self.signalling.call("offer", participant=self.id)
        mids: dict[str, dict[str, Any]] = offer["mids"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        for transceiver in self.pc.getTransceivers():
            slot = mids.get(transceiver.mid or "")
            if slot is None or slot["role"] == "unused":
                transceiver.direction = "inactive"
            elif slot["role"] == "publish":
                if transceiver.sender.track is None:
                    transceiver.sender.replaceTrack(self.camera if slot["kind"] == "video" else self.microphone)
                transceiver.direction = "sendonly"
            else:
                transceiver.direction = "recvonly"
                if transceiver not in self._read:
                    self._read.add(transceiver)
                    self._readers.append(asyncio.create_task(self._count(transceiver.receiver.track, slot["kind"])))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.signalling.call("answer", participant=self.id, sdp=self.pc.localDescription.sdp)

    async def bytes_received(self) -> int:
        """Bytes this peer connection's transports received (RTP and RTCP, video and audio)."""
        report = await self.pc.getStats()
        return sum(int(getattr(stat, "bytesReceived", 0)) for stat in report.values() if stat.type == "transport")

    async def _count(self, track: MediaStreamTrack, kind: str) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[kind] += 1

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.pc.close()
        for track in (self.camera, self.microphone):
            if track is not None:
                track.stop()


@dataclass
class Result:
    mode: str
    wall: float
    cpu: float
    video_frames: list[int]
    audio_frames: list[int]
    received_bytes: list[int]
    dropped: int | None

    @property
    def cores(self) -> float:
        return self.cpu / self.wall

    @property
    def fps(self) -> float:
        return sum(self.video_frames) / len(self.video_frames) / self.wall

    @property
    def kbps(self) -> float:
        return 8 * sum(self.received_bytes) / len(self.received_bytes) / self.wall / 1000

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.cpu / max(1, sum(self.video_frames))


async def wait_until(condition: Any, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {within:.0f} s")
        await asyncio.sleep(0.05)


async def run_mode(mode: str, subscribers: int, seconds: float, warmup: float) -> Result:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "servers" / "sfu_server.py"), "--mode", mode,
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
    clients: list[Client] = []
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                if proc.poll() is not None:
                    raise RuntimeError(f"the {mode} server exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            signalling = Signalling(http, base)
            publisher = Client(signalling, "publisher", publisher=True)
            clients.append(publisher)
            await signalling.call("connect", participant=publisher.id)
            publications = await signalling.call("publish", participant=publisher.id)
            await publisher.negotiate()
            viewers = [Client(signalling, f"viewer-{n}", publisher=False) for n in range(1, subscribers + 1)]
            clients.extend(viewers)
            for viewer in viewers:
                await signalling.call("connect", participant=viewer.id)
                for publication in (publications["video"], publications["audio"]):
                    await signalling.call("subscribe", participant=viewer.id, publication=publication)
                await viewer.negotiate()
            await wait_until(lambda: all(v.frames["video"] >= 10 for v in viewers), "10 video frames at every viewer",
                             30)
            await asyncio.sleep(warmup)
            before = [(v.frames["video"], v.frames["audio"], await v.bytes_received()) for v in viewers]
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            stats0 = await signalling.stats()
            await asyncio.sleep(seconds)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            stats1 = await signalling.stats()
            after = [(v.frames["video"], v.frames["audio"], await v.bytes_received()) for v in viewers]
            dropped = stats1["dropped"] - stats0["dropped"] if "dropped" in stats1 else None
            return Result(mode, t1 - t0, cpu1 - cpu0, [a[0] - b[0] for a, b in zip(after, before, strict=True)],
                          [a[1] - b[1] for a, b in zip(after, before, strict=True)],
                          [a[2] - b[2] for a, b in zip(after, before, strict=True)], dropped)
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=2, help="viewers of the one publisher (default 2)")
    parser.add_argument("--seconds", type=float, default=15, help="steady-state window per mode (default 15)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds after the first frames (default 3)")
    parser.add_argument("--modes", default="muster,transcode", help="comma-separated (default muster,transcode)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    print(f"one publisher (640x480 VP8 at 30 fps + Opus) -> {args.subscribers} viewer(s); {args.seconds:g} s of"
          f" steady state per mode after {args.warmup:g} s of warm-up; {os.cpu_count()} CPU(s), not pinned")
    results: dict[str, Result] = {}
    for mode in modes:
        result = results[mode] = await run_mode(mode, args.subscribers, args.seconds, args.warmup)
        per_viewer = " ".join(f"{frames / result.wall:.1f}" for frames in result.video_frames)
        audio = sum(result.audio_frames) / len(result.audio_frames) / result.wall
        dropped = f", {result.dropped} frames dropped by the SFU" if result.dropped is not None else ""
        print(f"{mode:10} server CPU {result.cpu:6.2f} s in {result.wall:5.1f} s = {result.cores:5.3f} cores;"
              f" video {result.fps:5.1f} fps per viewer ({per_viewer}); audio {audio:4.1f} frames/s;"
              f" {result.kbps:5.0f} kbit/s in per viewer;"
              f" {result.ms_per_frame:6.2f} ms CPU per delivered video frame{dropped}")
    if "muster" in results and "transcode" in results:
        muster, transcode = results["muster"], results["transcode"]
        print(f"ratio muster / transcode: CPU per delivered frame {muster.ms_per_frame / transcode.ms_per_frame:.3f},"
              f" cores {muster.cores / transcode.cores:.3f}, fps per viewer {muster.fps / transcode.fps:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
