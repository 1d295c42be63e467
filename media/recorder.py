"""Recording a consultation's forwarded media into one WebM file (VP8 + Opus), without re-encoding.

The SFU hands the recorder the encoded frames it forwards (`RecordedFrame`: one VP8 frame or one Opus
packet with its RTP timestamp). The recorder remuxes them; nothing is decoded or encoded.

Design, and why:

- **One file with every track, built in two phases.** Matroska declares all tracks, and each video
  track's size, in the header, but participants publish late and a video track's size is known only
  at its first keyframe. So while the call runs, each track is written to its own single-track WebM
  ("part", in ``<name>.parts/`` next to the target); `stop()` then remuxes the parts into the target
  file, interleaved by timestamp (packet copy, no decoding), and deletes them unless ``keep_parts``.
  Parts reach the disk every second (1 s clusters, flushed), so a crash mid-call leaves them readable
  up to about a second before it (without their index). ffmpeg-based tools read every track of the
  result; Chromium 156 plays its first video and first audio track only (checked, with a size change),
  so ``keep_parts=True`` keeps one playable file per publication for a player that shows them side by
  side. Each stream's ``title`` (the label) and ``track_id`` tags, and the summary, map streams back
  to publications.
- **Timeline.** Milliseconds (Matroska's own 1/1000 time base). The first frame accepted on any track
  is 0. A track starts at its first frame's ``arrival_ms`` relative to that (this is what aligns tracks
  that join late), and after that follows its RTP timestamps (90 kHz video, 48 kHz audio), unwrapped
  across the 32-bit wrap, so arrival jitter and bursts do not distort it. If a track's RTP clock and
  its arrival clock disagree by more than `RESYNC_MS`, or its timestamps step back more than
  `REORDER_MS` (a new SSRC after renegotiation), the track is re-anchored at the arrival time.
  Smaller steps back and duplicates are discarded: a muxer refuses timestamps that go backwards.
- **Video.** Frames are dropped until the track's first keyframe; whether a frame is a keyframe, and
  its size, come from the VP8 payload header (RFC 6386 §9.1: a 3-byte frame tag, start code
  ``9d 01 2a``, then 14-bit width and height), which is what a decoder will trust. The VP8 stream is
  added with ``add_mux_stream`` (no codec context), sized from the first keyframe. A later keyframe
  with another size is written as it is: VP8 in WebM may change resolution at a keyframe, and
  decoders follow it (the summary lists the sizes seen).
- **Audio.** Opus in WebM needs CodecPrivate (an OpusHead), which a codec-less PyAV stream cannot
  carry: PyAV 18's ``Stream.__setattr__`` silently ignores codec attributes when there is no codec
  context, and the matroska muxer does not invent the header. So the Opus stream is added with
  ``add_stream("libopus", rate=48000, layout=...)``: PyAV opens that encoder when it writes the header
  (it never encodes anything) and libopus fills in the OpusHead and the stream's initial padding.
  Its pre-skip is 312 samples (6.5 ms), libopus' look-ahead, which is also the delay of the libopus
  encoder in the browser that produced the packets, so the decoder's trim matches the source. The
  layout is stereo unless the caller says otherwise: RTP declares every Opus stream as
  ``opus/48000/2`` (RFC 7587), mono-coded packets decode to two equal channels, and a mono header
  would down-mix stereo packets. The merge copies these parameters with ``add_stream_from_template``.
- **Never block the event loop; bounded memory.** `write()` only checks, counts and enqueues. One
  dedicated thread per recording does all PyAV work (it may hold the thread for hours, so it is not
  taken from the loop's default executor). The queue is bounded by frame count and bytes; when the
  writer falls behind, frames are dropped and counted, and a video track that lost a frame skips
  its delta frames until the next keyframe (they would decode to garbage) and asks, through
  ``on_keyframe_needed``, for one.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import av
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream

from server.ids import now_ms
from server.logging import get_logger

log = get_logger("muster.media.recorder")

Kind = Literal["audio", "video"]

CLOCK_RATE: Final[dict[Kind, int]] = {"video": 90_000, "audio": 48_000}
# A track whose RTP clock and arrival clock disagree by this much has had a timestamp discontinuity.
RESYNC_MS: Final = 10_000
# RTP timestamps that step back more than this are a new timestamp base, not a reordered frame.
REORDER_MS: Final = 1_000
MS: Final = Fraction(1, 1000)
_VP8_START_CODE: Final = b"\x9d\x01\x2a"
# Parts reach the disk at least every second (a cluster, then flushed), so a crash loses little.
_PART_OPTIONS: Final = {"cluster_time_limit": "1000", "flush_packets": "1"}


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One encoded frame as forwarded by the SFU."""

    track_id: str  # a publication id
    kind: Kind
    data: bytes  # one VP8 frame or one Opus packet
    timestamp: int  # RTP timestamp (90 kHz video, 48 kHz audio), may wrap at 2**32
    keyframe: bool = False  # video only; the VP8 header decides (see the module docstring)
    arrival_ms: int = 0  # wall clock at arrival, ms; 0 means "now", when `write()` is called


@dataclass(frozen=True, slots=True)
class TrackSummary:
    """What became of one track. Times are on the recording's timeline (ms from its first frame)."""

    track_id: str
    kind: Kind
    label: str
    frames: int  # written to the file
    dropped: int  # lost because the writer fell behind
    skipped: int  # video waiting for a keyframe (at the start, or after a loss)
    discarded: int  # unusable: empty, wrong kind, duplicate or reordered timestamp, write failure
    resyncs: int  # RTP timestamp discontinuities re-anchored at the arrival time
    start_ms: int | None
    end_ms: int | None
    sizes: tuple[tuple[int, int], ...] = ()  # video: each keyframe size, in order of change
    channels: int = 0  # audio: channels declared in the file
    stream_index: int | None = None  # the track's stream in the recording, if it has one
    part: Path | None = None  # the track's own file, when kept


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """The result of `WebmRecorder.stop()`. ``path`` is None when no file was written (nothing recorded,
    or the final merge failed: then the parts are kept and listed in the tracks)."""

    path: Path | None
    bytes: int
    duration_ms: int
    tracks: tuple[TrackSummary, ...]
    dropped: int  # frames lost because the writer fell behind, all tracks
    errors: int  # write failures; each one is logged


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) of a VP8 keyframe, or None if ``data`` is not a complete keyframe header."""
    # Frame tag bit 0 is 0 for a keyframe; the start code follows the 3-byte tag (RFC 6386 §9.1).
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != _VP8_START_CODE:
        return None
    # The top two bits of each 16-bit field are the upscaling mode, not part of the size.
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    if not width or not height:
        return None
    return width, height


def opus_packet_samples(data: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1); 0 if malformed."""
    if not data:
        return 0
    toc = data[0]
    config = toc >> 3
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        per_frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        per_frame = (480, 960)[config & 1]
    else:  # CELT-only: 2.5, 5, 10, 20 ms
        per_frame = (120, 240, 480, 960)[config & 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = data[1] & 0x3F if len(data) > 1 else 0
    # A packet never holds more than 120 ms.
    return min(count * per_frame, 5760)


class RtpUnwrapper:
    """Extends 32-bit RTP timestamps into a continuous count from the first one seen.

    Each step is taken as the shorter way round the 32-bit circle, so a wrap reads as a small step
    forward and a reordered packet as a small step back.
    """

    __slots__ = ("_extended", "_last")

    def __init__(self, first: int) -> None:
        self._last = first & 0xFFFF_FFFF
        self._extended = 0

    def unwrap(self, timestamp: int) -> int:
        timestamp &= 0xFFFF_FFFF
        step = (timestamp - self._last) & 0xFFFF_FFFF
        if step >= 1 << 31:
            step -= 1 << 32
        self._last = timestamp
        self._extended += step
        return self._extended


# --- what travels through the queue ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TrackAdded:
    track_id: str
    kind: Kind
    label: str
    channels: int


@dataclass(frozen=True, slots=True)
class _QueuedFrame:
    frame: RecordedFrame
    arrival_ms: int
    size: tuple[int, int] | None  # VP8 keyframe size, already parsed by `write()`


_STOP: Final = object()


@dataclass(slots=True)
class _Gate:
    """Loop-side state of one track: what `write()` lets through."""

    kind: Kind
    label: str
    awaiting_keyframe: bool
    keyframe_requested: bool = False
    dropped: int = 0
    skipped: int = 0
    discarded: int = 0


@dataclass(slots=True)
class _TrackFile:
    """Writer-side state of one track: its part file and timeline."""

    track_id: str
    kind: Kind
    label: str
    channels: int
    order: int
    part_path: Path | None = None
    container: OutputContainer | None = None
    stream: Stream | None = None
    failed: bool = False
    need_keyframe: bool = True
    unwrapper: RtpUnwrapper | None = None
    anchor_ext: int = 0  # extended RTP timestamp at the anchor
    anchor_ms: int = 0  # timeline position of the anchor
    anchor_arrival: int = 0  # arrival time of the anchor
    last_ext: int | None = None
    last_pts: int = -1
    last_interval: int = 0
    last_duration: int = 0
    first_pts: int | None = None
    frames: int = 0
    skipped: int = 0
    discarded: int = 0
    resyncs: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)


class WebmRecorder:
    """Records forwarded VP8 and Opus frames of several tracks into one WebM file (see the module doc).

    Use from one event loop: `start()`, `add_track()` for each publication, `write()` for each frame,
    and `stop()` once (later calls return the same summary).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_queue: int = 2000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        keep_parts: bool = False,
        on_keyframe_needed: Callable[[str], None] | None = None,
    ) -> None:
        if max_queue < 1 or max_queue_bytes < 1:
            raise ValueError("max_queue and max_queue_bytes must be positive")
        self.path = Path(path)
        self._parts_dir = self.path.with_name(self.path.name + ".parts")
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._keep_parts = keep_parts
        self._on_keyframe_needed = on_keyframe_needed
        # Unbounded underneath: the bound is enforced in `write()`, so control messages always fit.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Each counter has a single writing thread (loop: enqueued, writer: processed), so no lock.
        self._enqueued_frames = 0
        self._enqueued_bytes = 0
        self._processed_frames = 0
        self._processed_bytes = 0
        self._gates: dict[str, _Gate] = {}
        self._dropped = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[RecordingSummary] | None = None
        self._summary: RecordingSummary | None = None
        # Writer-thread state.
        self._files: dict[str, _TrackFile] = {}
        self._origin_ms: int | None = None
        self._errors = 0

    # --- event-loop side ------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the writer thread. Frames written before this wait in the (bounded) queue."""
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._done = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, self._done), name=f"webm-recorder:{self.path.name}", daemon=True
        )
        self._thread.start()

    def add_track(self, track_id: str, kind: Kind, *, label: str = "", channels: int = 2) -> None:
        """Declares a track (a publication). ``label`` names its stream in the file; ``channels`` (audio,
        1 or 2) is the layout written in the Opus header. Frames of undeclared tracks declare them."""
        if kind not in CLOCK_RATE:
            raise ValueError(f"unknown track kind {kind!r}")
        if kind == "audio" and channels not in (1, 2):
            raise ValueError("an Opus track has 1 or 2 channels")
        existing = self._gates.get(track_id)
        if existing is not None:
            if existing.kind != kind:
                raise ValueError(f"track {track_id!r} is already a {existing.kind} track")
            return
        if self._stopping:
            return
        self._gates[track_id] = _Gate(kind=kind, label=label, awaiting_keyframe=kind == "video")
        self._queue.put(_TrackAdded(track_id, kind, label, channels if kind == "audio" else 0))

    def write(self, frame: RecordedFrame) -> None:
        """Queues one frame for writing; never blocks. Frames are dropped, and counted, when the writer
        is behind; video waits for a keyframe at its start and after a loss."""
        if self._stopping:
            return
        gate = self._gates.get(frame.track_id)
        if gate is None:
            self.add_track(frame.track_id, frame.kind)
            gate = self._gates[frame.track_id]
        if frame.kind != gate.kind or not frame.data:
            gate.discarded += 1
            return
        size: tuple[int, int] | None = None
        if gate.kind == "video":
            size = vp8_keyframe_size(frame.data)
            if gate.awaiting_keyframe:
                if size is None:
                    gate.skipped += 1
                    self._request_keyframe(frame.track_id, gate)
                    return
                gate.awaiting_keyframe = False
                gate.keyframe_requested = False
        length = len(frame.data)
        if (
            self.queued >= self._max_queue
            or self._enqueued_bytes - self._processed_bytes + length > self._max_queue_bytes
        ):
            gate.dropped += 1
            self._dropped += 1
            if gate.kind == "video":
                # Every delta frame until the next keyframe refers to what was just lost.
                gate.awaiting_keyframe = True
                self._request_keyframe(frame.track_id, gate)
            return
        self._enqueued_frames += 1
        self._enqueued_bytes += length
        self._queue.put(_QueuedFrame(frame, frame.arrival_ms or now_ms(), size))

    async def stop(self) -> RecordingSummary:
        """Writes what is queued, closes the file and returns the summary. Safe to call again."""
        if self._summary is not None:
            return self._summary
        if self._done is None:
            await self.start()
        assert self._done is not None
        if not self._stopping:
            self._stopping = True
            self._queue.put(_STOP)
        # Shielded: a cancelled caller must not cancel the writer's result for the next caller.
        summary = await asyncio.shield(self._done)
        self._summary = self._with_gate_counts(summary)
        return self._summary

    @property
    def dropped(self) -> int:
        """Frames dropped so far because the writer fell behind."""
        return self._dropped

    @property
    def queued(self) -> int:
        """Frames waiting for the writer."""
        return self._enqueued_frames - self._processed_frames

    def _request_keyframe(self, track_id: str, gate: _Gate) -> None:
        if gate.keyframe_requested or self._on_keyframe_needed is None:
            return
        gate.keyframe_requested = True
        try:
            self._on_keyframe_needed(track_id)
        except Exception:
            log.exception("recorder.keyframe_request_failed", track_id=track_id)

    def _with_gate_counts(self, summary: RecordingSummary) -> RecordingSummary:
        """Adds what `write()` counted on the loop side to the writer's summary."""
        tracks = []
        for track in summary.tracks:
            gate = self._gates[track.track_id]
            tracks.append(
                replace(
                    track,
                    dropped=gate.dropped,
                    skipped=track.skipped + gate.skipped,
                    discarded=track.discarded + gate.discarded,
                )
            )
        return replace(summary, tracks=tuple(tracks), dropped=self._dropped)

    # --- writer thread --------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[RecordingSummary]) -> None:
        result: RecordingSummary | BaseException
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if isinstance(item, _TrackAdded):
                    self._files[item.track_id] = _TrackFile(
                        item.track_id, item.kind, item.label, item.channels, order=len(self._files)
                    )
                elif isinstance(item, _QueuedFrame):
                    try:
                        self._write_frame(item)
                    except Exception:  # one bad frame must not end the recording
                        log.exception("recorder.frame_failed", track_id=item.frame.track_id)
                        self._errors += 1
                    finally:
                        self._processed_bytes += len(item.frame.data)
                        self._processed_frames += 1
            result = self._finish()
        except BaseException as exc:  # the loop must hear of any failure, or stop() would wait forever
            log.exception("recorder.failed", path=str(self.path))
            result = exc

        def resolve() -> None:
            if done.done():
                return
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)

        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is closed: nobody is waiting
            pass

    def _write_frame(self, item: _QueuedFrame) -> None:
        frame = item.frame
        track = self._files[frame.track_id]
        if track.failed:
            track.discarded += 1
            return
        if track.kind == "video" and track.need_keyframe:
            if item.size is None:
                track.skipped += 1
                return
        if self._origin_ms is None:
            self._origin_ms = item.arrival_ms
        pts = self._place(track, frame.timestamp, item.arrival_ms)
        if pts is None:
            track.discarded += 1
            return
        if track.container is None and not self._open_part(track, item):
            track.discarded += 1
            return
        assert track.container is not None and track.stream is not None
        packet = Packet(frame.data)
        packet.stream = track.stream
        packet.time_base = MS
        packet.pts = pts
        packet.dts = pts
        if track.kind == "video":
            packet.is_keyframe = item.size is not None
        else:
            duration = opus_packet_samples(frame.data) * 1000 // CLOCK_RATE["audio"]
            if duration:
                packet.duration = duration
            track.last_duration = duration
        try:
            track.container.mux(packet)
        except Exception:
            # Timestamps are checked above, so a failure here is I/O: stop writing this track.
            log.exception("recorder.write_failed", track_id=track.track_id, part=str(track.part_path))
            self._errors += 1
            track.failed = True
            track.discarded += 1
            return
        track.frames += 1
        if track.kind == "video":
            track.need_keyframe = False
            if item.size is not None and (not track.sizes or track.sizes[-1] != item.size):
                track.sizes.append(item.size)
        if track.first_pts is None:
            track.first_pts = pts
        elif pts > track.last_pts:
            track.last_interval = pts - track.last_pts
        track.last_pts = pts

    def _place(self, track: _TrackFile, timestamp: int, arrival_ms: int) -> int | None:
        """The frame's timeline position in ms, or None if it must be discarded."""
        assert self._origin_ms is not None
        clock = CLOCK_RATE[track.kind]
        if track.unwrapper is None:
            track.unwrapper = RtpUnwrapper(timestamp)
            track.anchor_ext = 0
            track.anchor_ms = max(0, arrival_ms - self._origin_ms)
            track.anchor_arrival = arrival_ms
            track.last_ext = 0
            return track.anchor_ms
        ext = track.unwrapper.unwrap(timestamp)
        rtp_ms = (ext - track.anchor_ext) * 1000 // clock
        assert track.last_ext is not None
        stepped_back_ms = (track.last_ext - ext) * 1000 // clock
        if abs(rtp_ms - (arrival_ms - track.anchor_arrival)) > RESYNC_MS or stepped_back_ms > REORDER_MS:
            track.resyncs += 1
            track.anchor_ext = ext
            track.anchor_ms = max(arrival_ms - self._origin_ms, track.last_pts + 1)
            track.anchor_arrival = arrival_ms
            track.last_ext = ext
            log.info("recorder.resync", track_id=track.track_id, at_ms=track.anchor_ms)
            return track.anchor_ms
        if ext <= track.last_ext:
            if ext < track.last_ext and track.kind == "video":
                # A frame from the past may be a reference the next frames were predicted from.
                track.need_keyframe = True
                self._ask_keyframe_from_writer(track.track_id)
            return None
        track.last_ext = ext
        return track.anchor_ms + rtp_ms

    def _ask_keyframe_from_writer(self, track_id: str) -> None:
        if self._on_keyframe_needed is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._on_keyframe_needed, track_id)
        except RuntimeError:  # the loop is closed
            pass

    def _open_part(self, track: _TrackFile, item: _QueuedFrame) -> bool:
        part_path = self._parts_dir / f"{track.order:02d}-{track.kind}.webm"
        try:
            self._parts_dir.mkdir(exist_ok=True)
            container = av.open(str(part_path), "w", format="webm", container_options=_PART_OPTIONS)
            try:
                stream = self._add_stream(container, track, first_size=item.size)
            except BaseException:
                container.close()
                raise
        except Exception:
            log.exception("recorder.open_failed", track_id=track.track_id, part=str(part_path))
            self._errors += 1
            track.failed = True
            return False
        track.part_path = part_path
        track.container = container
        track.stream = stream
        return True

    @staticmethod
    def _add_stream(container: OutputContainer, track: _TrackFile, *, first_size: tuple[int, int] | None) -> Stream:
        stream: Stream
        if track.kind == "video":
            assert first_size is not None  # a video part is opened at a keyframe
            stream = container.add_mux_stream("vp8", width=first_size[0], height=first_size[1])
        else:
            # An encoder context only so that PyAV's header writing has libopus produce the OpusHead.
            stream = container.add_stream("libopus", rate=48000, layout="mono" if track.channels == 1 else "stereo")
        stream.time_base = MS
        stream.metadata.update(_stream_tags(track))
        return stream

    def _finish(self) -> RecordingSummary:
        written: list[_TrackFile] = []
        for track in self._files.values():
            if track.container is None:
                continue
            try:
                track.container.close()
            except Exception:
                log.exception("recorder.close_failed", track_id=track.track_id, part=str(track.part_path))
                self._errors += 1
            track.container = None
            track.stream = None
            if track.frames:
                written.append(track)
        path: Path | None = None
        keep_parts = self._keep_parts
        if written:
            try:
                if len(written) == 1 and not keep_parts:
                    # One track: its part already is the recording.
                    assert written[0].part_path is not None
                    os.replace(written[0].part_path, self.path)
                    written[0].part_path = None
                else:
                    self._merge(written)
                path = self.path
            except Exception:
                log.exception("recorder.merge_failed", path=str(self.path))
                self._errors += 1
                keep_parts = True
                self.path.unlink(missing_ok=True)
        if not keep_parts:
            shutil.rmtree(self._parts_dir, ignore_errors=True)
            for track in self._files.values():
                track.part_path = None
        return self._summarize(path, written)

    def _merge(self, tracks: list[_TrackFile]) -> None:
        """Remuxes the parts into the recording, interleaved by timestamp."""
        inputs: list[InputContainer] = []
        output = av.open(str(self.path), "w", format="webm")
        try:
            targets: list[Stream] = []
            for track in tracks:
                assert track.part_path is not None
                source = av.open(str(track.part_path))
                inputs.append(source)
                if track.kind == "video":
                    width, height = track.sizes[0]
                    target = output.add_mux_stream("vp8", width=width, height=height)
                else:
                    # Copies the codec parameters, with the OpusHead and the initial padding.
                    target = output.add_stream_from_template(source.streams[0])
                target.time_base = MS
                target.metadata.update(_stream_tags(track))
                targets.append(target)
            # Each part is in order; merging keeps the muxer's interleaving buffer to a few packets.
            for _, index, packet in heapq.merge(
                *(_timed_packets(index, source) for index, source in enumerate(inputs)),
                key=lambda entry: (entry[0], entry[1]),
            ):
                packet.stream = targets[index]
                output.mux(packet)
        finally:
            try:
                output.close()
            finally:
                for source in inputs:
                    source.close()

    def _summarize(self, path: Path | None, written: list[_TrackFile]) -> RecordingSummary:
        stream_index = {track.track_id: index for index, track in enumerate(written)} if path else {}
        tracks: list[TrackSummary] = []
        duration_ms = 0
        for track in self._files.values():
            end_ms: int | None = None
            if track.first_pts is not None:
                # Video frames carry no duration: count the last one as long as the interval before it.
                end_ms = track.last_pts + (track.last_duration if track.kind == "audio" else track.last_interval)
                duration_ms = max(duration_ms, end_ms)
            tracks.append(
                TrackSummary(
                    track_id=track.track_id,
                    kind=track.kind,
                    label=track.label,
                    frames=track.frames,
                    dropped=0,
                    skipped=track.skipped,
                    discarded=track.discarded,
                    resyncs=track.resyncs,
                    start_ms=track.first_pts,
                    end_ms=end_ms,
                    sizes=tuple(track.sizes),
                    channels=track.channels,
                    stream_index=stream_index.get(track.track_id),
                    part=track.part_path if track.frames else None,
                )
            )
        size = path.stat().st_size if path is not None else 0
        return RecordingSummary(
            path=path, bytes=size, duration_ms=duration_ms, tracks=tuple(tracks), dropped=0, errors=self._errors
        )


def _stream_tags(track: _TrackFile) -> dict[str, str]:
    # "title" becomes the Matroska track name, which players show; track_id maps it back to the publication.
    return {"title": track.label or track.track_id, "track_id": track.track_id}


def _timed_packets(index: int, source: InputContainer) -> Iterator[tuple[int, int, Packet[Stream]]]:
    for packet in source.demux(source.streams[0]):
        # The demuxer ends with an empty flush packet.
        if packet.pts is None or packet.size == 0:
            continue
        yield packet.pts, index, packet
