"""A consultation over the real socket and the real SFU: aiortc client peers answer the server's offers the way a
browser does; the recording becomes a file of the room, opened with PyAV."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

from tests.factories import Muster
from tests.media.conftest import Camera
from tests.rooms.conftest import Client, make_room, new_client, until


class SocketPeer:
    """A participant: a Socket.IO client of Muster and one RTCPeerConnection, answering every offer."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.camera = Camera(80)
        self.microphone = AudioStreamTrack()
        self.frames: dict[str, int] = {}
        self.events: dict[str, list[Any]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._reading: set[str] = set()
        self.call_id = ""
        for name in ("call.offer", "call.published", "call.joined", "call.left", "call.recording", "call.ended"):
            client.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.events.setdefault(name, []).append(data)
            if name == "call.offer":
                await self.apply(data)

        return record

    async def ok(self, event: str, data: dict[str, Any]) -> Any:
        return await self.client.ok(event, {"call_id": self.call_id, **data} if self.call_id else data)

    async def apply(self, offer: dict[str, Any] | None) -> None:
        if offer is None:
            return
        mids = offer["mids"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        for transceiver in self.pc.getTransceivers():
            slot = mids.get(transceiver.mid or "")
            if slot is None or slot["role"] == "unused":
                transceiver.direction = "inactive"
            elif slot["role"] == "publish":
                if transceiver.sender.track is None:
                    track: MediaStreamTrack = self.camera if slot["kind"] == "video" else self.microphone
                    transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendonly"
            else:
                transceiver.direction = "recvonly"
                publication = slot["publication_id"]
                if publication not in self._reading:
                    self._reading.add(publication)
                    self._readers.append(asyncio.create_task(self._read(transceiver.receiver.track, publication)))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.ok("call.answer", {"sdp": self.pc.localDescription.sdp})

    async def _read(self, track: MediaStreamTrack, publication_id: str) -> None:
        self.frames.setdefault(publication_id, 0)
        try:
            while True:
                await track.recv()
                self.frames[publication_id] += 1
        except MediaStreamError:
            return

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.pc.close()
        self.camera.stop()
        self.microphone.stop()


async def test_a_recorded_consultation_over_the_socket(muster: Muster) -> None:
    host_client = await new_client(muster, "commander")
    guest_client = await new_client(muster)
    room = await make_room(host_client, guest_client, name="防汛会商")
    host, guest = SocketPeer(host_client), SocketPeer(guest_client)
    try:
        started = await host.ok("call.start", {"room_id": room})
        host.call_id = guest.call_id = started["call"]["id"]
        joined = await host.ok("call.join", {})
        assert joined["ice_servers"] == [] and joined["participant_id"]
        await guest.ok("call.join", {})
        published = {}
        for kind, source in (("video", "camera"), ("audio", "microphone")):
            answer = await host.ok("call.publish", {"kind": kind, "source": source})
            published[kind] = answer["publication"]["id"]
            await host.apply(answer["offer"])
        await until(lambda: len(guest.events.get("call.published", [])) == 2, what="the guest hears of both")
        for publication_id in published.values():
            await guest.apply((await guest.ok("call.subscribe", {"publication_id": publication_id}))["offer"])
        await until(lambda: all(guest.frames.get(p, 0) > 5 for p in published.values()), within=20,
                    what="the guest decodes the host's audio and video")

        # Recording: everyone is told; stopping stores a WebM file in the room.
        await host.ok("call.record", {"on": True})
        await until(lambda: bool(guest.events.get("call.recording")), what="the guest is told of the recording")
        before = dict(guest.frames)
        await until(lambda: all(guest.frames[p] > before[p] + 30 for p in published.values()), within=20,
                    what="a second or two of media")
        stopped = await host.ok("call.record", {"on": False})
        file_id = stopped["file_id"]
        assert file_id
        async with muster.http.get(f"{muster.url}/api/files/{file_id}/content",
                                   headers=guest_client.session.headers) as resp:
            assert resp.status == 200 and resp.content_type == "video/webm"
            data = await resp.read()
        with av.open(io.BytesIO(data)) as container:
            kinds = {s.type for s in container.streams}
            assert kinds == {"video", "audio"}
            video = sum(1 for _ in container.decode(video=0))
        with av.open(io.BytesIO(data)) as container:
            audio = sum(1 for _ in container.decode(audio=0))
        assert video > 10 and audio > 10
        actions = [r.action for r in await muster.kernel.storage.list_audit_records(chain=f"room:{room}")]
        assert {"call.start", "call.join", "recording.start", "recording.stop"} <= set(actions)

        # The guest leaves: the host is told; the last one out ends the call.
        await guest.ok("call.leave", {})
        await until(lambda: bool(host.events.get("call.left")), what="the host hears the guest left")
        await host.ok("call.leave", {})
        status, body = await muster.request("GET", f"/api/rooms/{room}/call", host_client.session)
        assert status == 200 and body["call"] is None
    finally:
        await host.close()
        await guest.close()


async def test_a_device_that_changes_network_keeps_its_place_in_the_call(muster: Muster) -> None:
    """Wi-Fi to cellular: the phone asks `call.reconnect`, gets a fresh connection and goes on receiving, without
    leaving the call (nobody hears it leave or join again)."""
    host_client = await new_client(muster, "commander")
    phone_client = await new_client(muster)
    room = await make_room(host_client, phone_client)
    host, phone = SocketPeer(host_client), SocketPeer(phone_client)
    replacement: SocketPeer | None = None
    try:
        host.call_id = phone.call_id = (await host.ok("call.start", {"room_id": room}))["call"]["id"]
        await host.ok("call.join", {})
        await phone.ok("call.join", {})
        answer = await host.ok("call.publish", {"kind": "video", "source": "camera"})
        video = answer["publication"]["id"]
        await host.apply(answer["offer"])
        await phone.apply((await phone.ok("call.subscribe", {"publication_id": video}))["offer"])
        await until(lambda: phone.frames.get(video, 0) > 5, within=20, what="video before the change")
        # The old connection is gone with the old network; the same socket asks for a fresh one.
        await phone.pc.close()
        replacement = SocketPeer(phone_client)
        replacement.call_id = phone.call_id
        offer = (await replacement.ok("call.reconnect", {}))["offer"]
        await replacement.apply(offer)
        await until(lambda: replacement is not None and replacement.frames.get(video, 0) > 5, within=20,
                    what="video after the change")
        assert not host.events.get("call.left") and len(host.events.get("call.joined", [])) == 1
        actions = [r.action for r in await muster.kernel.storage.list_audit_records(chain=f"room:{room}")]
        assert "call.reconnect" in actions
    finally:
        await host.close()
        await phone.close()
        if replacement is not None:
            await replacement.close()
