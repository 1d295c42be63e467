"""The server side of `bench/sfu.py`: one media server on aiohttp, in its own process, so its CPU time is its own.

    .venv/bin/python bench/servers/sfu_server.py --mode muster|transcode --port PORT

Both modes speak the same small signalling protocol (JSON over HTTP, the server is always the offerer, as with
`media.sfu.Sfu`); the bench drives it:

    POST /connect   {"participant": id}                      a fresh peer connection
    POST /publish   {"participant": id}                      a video and an audio publication -> {"video", "audio"}
    POST /subscribe {"participant": id, "publication": id}
    POST /offer     {"participant": id}                      -> {"sdp", "type", "mids"}
    POST /answer    {"participant": id, "sdp": str}
    GET  /stats                                              -> {"cpu": user+system s of this process, ...}

- muster:    `media.sfu.Sfu`, encoded frames forwarded as they are (no decode, no encode);
- transcode: plain aiortc the usual way: the publisher's tracks are received (decoded) and each subscriber gets
             `MediaRelay().subscribe(track)` on a sendonly transceiver (encoded again for every subscriber).

SDP is never printed or logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from media.sfu import Sfu
from server.logging import configure_logging

CALL = "bench"
_CODECS = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}


class MediaServer(Protocol):
    async def connect(self, participant: str) -> None: ...
    async def publish(self, participant: str) -> dict[str, str]: ...
    async def subscribe(self, participant: str, publication: str) -> None: ...
    async def offer(self, participant: str) -> dict[str, Any]: ...
    async def answer(self, participant: str, sdp: str) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class MusterServer:
    """Muster's pass-through SFU."""

    def __init__(self) -> None:
        self.sfu = Sfu()

    async def connect(self, participant: str) -> None:
        await self.sfu.connect(CALL, participant)

    async def publish(self, participant: str) -> dict[str, str]:
        video = await self.sfu.publish(CALL, participant, kind="video", source="camera")
        audio = await self.sfu.publish(CALL, participant, kind="audio", source="microphone")
        return {"video": video, "audio": audio}

    async def subscribe(self, participant: str, publication: str) -> None:
        await self.sfu.subscribe(CALL, participant, publication)

    async def offer(self, participant: str) -> dict[str, Any]:
        return await self.sfu.negotiate(CALL, participant)

    async def answer(self, participant: str, sdp: str) -> None:
        await self.sfu.answer(CALL, participant, sdp)

    def stats(self) -> dict[str, Any]:
        subscriptions = self.sfu.stats(CALL)["subscriptions"]
        return {"dropped": sum(s["dropped"] for s in subscriptions),
                "forwarded": sum(s["forwarded"] for s in subscriptions)}

    async def close(self) -> None:
        await self.sfu.close()


def _prefer(transceiver: RTCRtpTransceiver, kind: str) -> None:
    transceiver.setCodecPreferences([codec for codec in RTCRtpSender.getCapabilities(kind).codecs
                                     if codec.mimeType.lower() in _CODECS[kind]])


class TranscodeServer:
    """Plain aiortc: receive (decode) the publisher's tracks, send each subscriber a MediaRelay of them (encode)."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.pcs: dict[str, RTCPeerConnection] = {}
        #: participant -> mid-less transceivers and what they carry, resolved to mids in each offer
        self.slots: dict[str, dict[RTCRtpTransceiver, dict[str, Any]]] = {}
        #: publication id -> the publisher's recvonly transceiver (its receiver track exists once answered)
        self.publications: dict[str, RTCRtpTransceiver] = {}

    async def connect(self, participant: str) -> None:
        self.pcs[participant] = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.slots[participant] = {}

    async def publish(self, participant: str) -> dict[str, str]:
        ids: dict[str, str] = {}
        for kind in ("video", "audio"):
            transceiver = self.pcs[participant].addTransceiver(kind, direction="recvonly")
            _prefer(transceiver, kind)
            publication = f"{participant}-{kind}"
            self.publications[publication] = transceiver
            self.slots[participant][transceiver] = {"role": "publish", "kind": kind, "publication_id": publication}
            ids[kind] = publication
        return ids

    async def subscribe(self, participant: str, publication: str) -> None:
        source = self.publications[publication]
        track: MediaStreamTrack | None = source.receiver.track
        if track is None:
            raise web.HTTPConflict(text="the publisher has not answered yet")
        transceiver = self.pcs[participant].addTransceiver(self.relay.subscribe(track), direction="sendonly")
        _prefer(transceiver, track.kind)
        self.slots[participant][transceiver] = {"role": "subscribe", "kind": track.kind, "publication_id": publication}

    async def offer(self, participant: str) -> dict[str, Any]:
        pc = self.pcs[participant]
        await pc.setLocalDescription(await pc.createOffer())
        mids = {t.mid: slot for t, slot in self.slots[participant].items() if t.mid is not None}
        return {"sdp": pc.localDescription.sdp, "type": "offer", "mids": mids}

    async def answer(self, participant: str, sdp: str) -> None:
        await self.pcs[participant].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def stats(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        for pc in self.pcs.values():
            await pc.close()


def make_app(server: MediaServer) -> web.Application:
    async def body(request: web.Request) -> dict[str, Any]:
        data = await request.json()
        if not isinstance(data, dict):
            raise web.HTTPBadRequest()
        return data

    async def connect(request: web.Request) -> web.Response:
        await server.connect((await body(request))["participant"])
        return web.json_response({})

    async def publish(request: web.Request) -> web.Response:
        return web.json_response(await server.publish((await body(request))["participant"]))

    async def subscribe(request: web.Request) -> web.Response:
        data = await body(request)
        await server.subscribe(data["participant"], data["publication"])
        return web.json_response({})

    async def offer(request: web.Request) -> web.Response:
        return web.json_response(await server.offer((await body(request))["participant"]))

    async def answer(request: web.Request) -> web.Response:
        data = await body(request)
        await server.answer(data["participant"], data["sdp"])
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        times = os.times()
        return web.json_response({"cpu": times.user + times.system, **server.stats()})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({})

    async def cleanup(app: web.Application) -> None:
        await server.close()

    app = web.Application()
    app.add_routes([web.post("/connect", connect), web.post("/publish", publish), web.post("/subscribe", subscribe),
                    web.post("/offer", offer), web.post("/answer", answer), web.get("/stats", stats),
                    web.get("/ready", ready)])
    app.on_cleanup.append(cleanup)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("muster", "transcode"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_logging(level="error")
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)
    server: MediaServer = MusterServer() if args.mode == "muster" else TranscodeServer()
    web.run_app(make_app(server), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
