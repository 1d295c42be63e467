"""Recording a call into the case file: the forwarded packets written to WebM (VP8 + Opus), no re-encoding.

Starting is announced to every participant (`call.recording`) and audited with who is in the
call; stopping stores the WebM like any file (content-addressed, scanned), posts it to the call's
room as a message from the host who stopped it (so the room's members, and whoever may see the
case, can open it) and audits its start, end, participants, size and sha256.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.passthrough import EncodedFrame
from media.recorder import RecordedFrame, WebmRecorder
from media.service import Call
from rooms.files.service import FileService
from rooms.service import RoomService
from server.audit.service import AuditLog
from server.auth.service import Principal
from server.ids import new_id, now_ms
from server.logging import get_logger

log = get_logger("muster.media")


@dataclass
class Recording:
    id: str
    path: Path
    recorder: WebmRecorder
    started_at: int
    started_by: Principal
    remove_sink: Callable[[], None]
    tracks: set[str]
    participants: set[str]
    limit: asyncio.TimerHandle | None = None


class CallRecordings:
    def __init__(self, *, sfu: Any, files: FileService, rooms: RoomService, audit: AuditLog, folder: Path,
                 max_seconds: int) -> None:
        self._sfu = sfu
        self._files = files
        self._rooms = rooms
        self._audit = audit
        self._folder = folder
        self._max_seconds = max_seconds

    async def toggle(self, call: Call, on: bool, actor: Principal | None) -> dict[str, Any]:
        """Start (a host) or stop (a host, or the call ending: then it is kept in the starter's name)."""
        if on:
            assert actor is not None
            return await self._start(call, actor)
        return await self._stop(call, actor)

    async def _start(self, call: Call, actor: Principal) -> dict[str, Any]:
        await asyncio.to_thread(self._folder.mkdir, parents=True, exist_ok=True)
        recording_id = new_id()
        path = self._folder / f"{recording_id}.webm"
        loop = asyncio.get_running_loop()

        def keyframe_needed(publication_id: str) -> None:
            # Called from the recorder's writer thread: hop onto the loop.
            loop.call_soon_threadsafe(self._sfu.request_keyframe, call.id, publication_id)

        recorder = WebmRecorder(path, on_keyframe_needed=keyframe_needed)
        await recorder.start()
        tracks: set[str] = set()
        labels = {p.id: f"{p.user_id}:{p.source}" for p in call.publications.values()}

        def sink(publication_id: str, frame: EncodedFrame) -> None:
            if publication_id not in tracks:
                tracks.add(publication_id)
                recorder.add_track(publication_id, frame.kind, label=labels.get(publication_id, publication_id))
            recorder.write(RecordedFrame(track_id=publication_id, kind=frame.kind, data=frame.data,
                                         timestamp=frame.timestamp, keyframe=frame.keyframe,
                                         arrival_ms=int(time.time() * 1000)))

        remove = self._sfu.add_sink(call.id, sink)
        for publication in call.publications.values():
            if publication.kind == "video":
                self._sfu.request_keyframe(call.id, publication.id)  # the file starts at a key frame
        recording = Recording(id=recording_id, path=path, recorder=recorder, started_at=now_ms(),
                              started_by=actor, remove_sink=remove, tracks=tracks,
                              participants={p.user_id for p in call.participants.values()})
        call.recording = recording
        recording.limit = loop.call_later(self._max_seconds, lambda: asyncio.ensure_future(
            self._stop_if_current(call, recording)))
        await self._audit.record(chain=call.chain, action="recording.start", subject_type="call",
                                 subject_id=call.id, actor_id=actor.user_id, device_id=actor.device_id,
                                 details={"room_id": call.room.id, "recording_id": recording_id,
                                          "participants": sorted(recording.participants)})
        return {"recording": True, "recording_id": recording_id}

    async def _stop_if_current(self, call: Call, recording: Recording) -> None:
        if call.recording is recording:
            await self._stop(call, None)

    async def _stop(self, call: Call, stopped_by: Principal | None) -> dict[str, Any]:
        recording: Recording = call.recording
        actor = stopped_by or recording.started_by
        call.recording = None
        if recording.limit is not None:
            recording.limit.cancel()
        recording.remove_sink()
        summary = await recording.recorder.stop()
        ended = now_ms()
        recording.participants |= {p.user_id for p in call.participants.values()}
        details: dict[str, Any] = {"room_id": call.room.id, "recording_id": recording.id,
                                   "started_at": recording.started_at, "ended_at": ended,
                                   "participants": sorted(recording.participants), "dropped": summary.dropped}
        file_id = None
        if summary.bytes > 0 and await asyncio.to_thread(recording.path.exists):
            stamp = time.strftime("%Y%m%d-%H%M", time.localtime(recording.started_at / 1000))
            file = await self._files.store_local_file(recording.path, name=f"{call.room.name}-会商录像-{stamp}.webm",
                                                      owner_id=actor.user_id, device_id=actor.device_id)
            file_id = file.id
            details.update(file_id=file.id, sha256=file.sha256, size=file.size, duration_ms=summary.duration_ms)
            if call.room.case_type and call.room.case_id:
                await self._files.link([file.id], scope_type=f"case:{call.room.case_type}",
                                       scope_id=call.room.case_id, target_type="recording", target_id=recording.id,
                                       actor=actor)
            await self._rooms.send_message(actor, room_id=call.room.id, client_id=f"recording:{recording.id}",
                                           text="会商录像", attachments=[{"file_id": file.id}])
            await asyncio.to_thread(recording.path.unlink, True)
        await self._audit.record(chain=call.chain, action="recording.stop", subject_type="call", subject_id=call.id,
                                 actor_id=actor.user_id, device_id=actor.device_id, details=details)
        log.info("recording stored", call_id=call.id, file_id=file_id, dropped=summary.dropped)
        return {"recording": False, "recording_id": recording.id, "file_id": file_id}
