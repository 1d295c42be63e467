"""WebmRecorder: real VP8 and Opus frames from PyAV's encoders in, a WebM file out, decoded back with PyAV."""

from __future__ import annotations

import asyncio
import functools
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media.recorder import (
    RecordedFrame,
    RecordingSummary,
    RtpUnwrapper,
    TrackSummary,
    WebmRecorder,
    opus_packet_samples,
    vp8_keyframe_size,
)

T0 = 1_700_000_000_000  # arrival clock (wall ms) of the first frame
NEAR_WRAP_VIDEO = 2**32 - 3000 * 10  # wraps after 10 frames at 30 fps
NEAR_WRAP_AUDIO = 2**32 - 960 * 20  # wraps after 20 packets of 20 ms


# --- encoded samples --------------------------------------------------------------------------------


@functools.cache
def vp8(count: int, width: int = 320, height: int = 240, gop: int = 15) -> tuple[tuple[bytes, bool], ...]:
    """``count`` VP8 frames (data, keyframe) of a moving bar, one per input frame, keyframe every ``gop``."""
    ctx = av.CodecContext.create("libvpx", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.framerate = Fraction(30)
    ctx.gop_size = gop
    # Real time, no look-ahead: one packet out per frame in, as from a browser.
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    chroma = bytes([128]) * (width * height // 4)
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        luma = bytearray([(i * 7) % 256]) * (width * height)
        x = (i * 6) % (width - 24)
        for row in range(height // 4, height // 2):
            luma[row * width + x : row * width + x + 24] = b"\xff" * 24
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = i
        out.extend((bytes(p), p.is_keyframe) for p in ctx.encode(frame))
    out.extend((bytes(p), p.is_keyframe) for p in ctx.encode(None))
    assert len(out) == count
    return tuple(out)


@functools.cache
def opus(count: int, layout: str = "mono") -> tuple[bytes, ...]:
    """``count`` Opus packets of 20 ms of a 440 Hz tone."""
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate = 48000
    ctx.layout = layout
    ctx.format = "s16"
    ctx.bit_rate = 32000
    channels = 1 if layout == "mono" else 2
    out: list[bytes] = []
    for i in range(count + 1):
        samples = array(
            "h",
            (
                int(8000 * math.sin(2 * math.pi * 440 * (k + i * 960) / 48000))
                for k in range(960)
                for _ in range(channels)
            ),
        )
        frame = av.AudioFrame(format="s16", layout=layout, samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = 48000
        frame.pts = i * 960
        out.extend(bytes(p) for p in ctx.encode(frame))
    out.extend(bytes(p) for p in ctx.encode(None))
    assert len(out) >= count
    return tuple(out[:count])


def video_frames(
    track_id: str, samples: Iterable[tuple[bytes, bool]], *, start_ms: float, ts0: int, first: int = 0
) -> list[RecordedFrame]:
    """RTP-style frames at 30 fps: 3000 ticks of 90 kHz and 33.3 ms of arrival apart."""
    return [
        RecordedFrame(
            track_id,
            "video",
            data,
            (ts0 + 3000 * (first + i)) % 2**32,
            keyframe=key,
            arrival_ms=T0 + round(start_ms + (first + i) * 1000 / 30),
        )
        for i, (data, key) in enumerate(samples)
    ]


def audio_frames(track_id: str, packets: Iterable[bytes], *, start_ms: int, ts0: int) -> list[RecordedFrame]:
    """RTP-style frames of 20 ms: 960 ticks of 48 kHz apart."""
    return [
        RecordedFrame(track_id, "audio", data, (ts0 + 960 * i) % 2**32, arrival_ms=T0 + start_ms + 20 * i)
        for i, data in enumerate(packets)
    ]


def by_arrival(*tracks: list[RecordedFrame]) -> list[RecordedFrame]:
    # Stable: on equal arrival, earlier arguments (audio first) go first.
    return sorted((f for track in tracks for f in track), key=lambda f: f.arrival_ms)


@dataclass
class Decoded:
    kind: str
    title: str
    track_id: str
    frames: int
    pts_ms: list[int]
    sizes: list[tuple[int, int]]
    channels: int
    codec_private: bytes


def decode(path: Path) -> list[Decoded]:
    """Decodes every stream of a file on its own; PyAV raises on data a decoder rejects."""
    with av.open(str(path)) as probe:
        count = len(probe.streams)
    result = []
    for index in range(count):
        with av.open(str(path)) as container:
            stream = container.streams[index]
            assert stream.time_base == Fraction(1, 1000)
            pts: list[int] = []
            sizes: list[tuple[int, int]] = []
            channels = 0
            for frame in container.decode(stream):
                assert frame.pts is not None
                pts.append(frame.pts)
                if isinstance(frame, av.VideoFrame):
                    if not sizes or sizes[-1] != (frame.width, frame.height):
                        sizes.append((frame.width, frame.height))
                elif isinstance(frame, av.AudioFrame):
                    channels = frame.layout.nb_channels
            result.append(
                Decoded(
                    stream.type,
                    stream.metadata.get("title", ""),
                    stream.metadata.get("track_id", stream.metadata.get("TRACK_ID", "")),
                    len(pts),
                    pts,
                    sizes,
                    channels,
                    stream.codec_context.extradata or b"",
                )
            )
    return result


def container_duration_ms(path: Path) -> int:
    with av.open(str(path)) as container:
        assert container.duration is not None
        return container.duration // 1000


def names_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def track(summary: RecordingSummary, track_id: str) -> TrackSummary:
    return next(t for t in summary.tracks if t.track_id == track_id)


async def drained(recorder: WebmRecorder) -> None:
    for _ in range(500):
        if recorder.queued == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the writer did not catch up")


async def record(recorder: WebmRecorder, frames: Iterable[RecordedFrame]) -> RecordingSummary:
    await recorder.start()
    for frame in frames:
        recorder.write(frame)
    return await recorder.stop()


# --- pure helpers -----------------------------------------------------------------------------------


def test_vp8_keyframe_size_reads_the_keyframe_header() -> None:
    key, _ = vp8(2)[0]
    delta, _ = vp8(2)[1]
    assert vp8_keyframe_size(key) == (320, 240)
    assert vp8_keyframe_size(vp8(1, 640, 480)[0][0]) == (640, 480)
    assert vp8_keyframe_size(delta) is None
    assert vp8_keyframe_size(key[:9]) is None
    assert vp8_keyframe_size(b"") is None
    # The upscaling bits above the 14-bit size are not part of it.
    scaled = key[:7] + bytes([key[7] | 0xC0]) + key[8:9] + bytes([key[9] | 0x40]) + key[10:]
    assert vp8_keyframe_size(scaled) == (320, 240)


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (b"", 0),
        (bytes([31 << 3]), 960),  # CELT 20 ms, one frame
        (bytes([16 << 3]), 120),  # CELT 2.5 ms
        (bytes([(1 << 3) | 1]), 1920),  # SILK 20 ms, two frames
        (bytes([(3 << 3) | 2, 0]), 5760),  # SILK 60 ms, two frames of different sizes
        (bytes([(13 << 3) | 3, 3]), 2880),  # hybrid 20 ms, code 3 with three frames
        (bytes([(31 << 3) | 3, 0x3F]), 5760),  # capped at 120 ms
        (bytes([(31 << 3) | 3]), 0),  # code 3 without its frame count
    ],
)
def test_opus_packet_samples(packet: bytes, samples: int) -> None:
    assert opus_packet_samples(packet) == samples


def test_opus_packet_samples_of_a_real_packet() -> None:
    assert opus_packet_samples(opus(3)[2]) == 960


@pytest.mark.parametrize(
    ("timestamps", "extended"),
    [
        ([0, 3000, 6000], [0, 3000, 6000]),
        ([2**32 - 3000, 0, 3000], [0, 3000, 6000]),  # wrap
        ([2**32 - 960, 2**32 - 1920, 0], [0, -960, 960]),  # reordered across the wrap
        ([5, 2**31 + 5], [0, -(2**31)]),  # half the circle reads as backwards
        ([100, 100], [0, 0]),
    ],
)
def test_rtp_unwrapper(timestamps: list[int], extended: list[int]) -> None:
    unwrapper = RtpUnwrapper(timestamps[0])
    assert [unwrapper.unwrap(t) for t in timestamps] == extended


# --- recordings -------------------------------------------------------------------------------------


async def test_audio_first_video_from_first_keyframe_with_wrap_and_size_change(tmp_path: Path) -> None:
    path = tmp_path / "call.webm"
    audio = audio_frames("mic", opus(100), start_ms=0, ts0=NEAR_WRAP_AUDIO)
    lead_in = vp8(4)[1:4]  # delta frames: the recording joined the stream mid-GOP
    assert not any(key for _, key in lead_in)
    pictures = vp8(45) + vp8(30, 640, 480)
    video = video_frames("cam", lead_in + pictures, start_ms=150, ts0=NEAR_WRAP_VIDEO)
    recorder = WebmRecorder(path)
    recorder.add_track("mic", "audio", label="Dispatcher mic", channels=1)
    recorder.add_track("cam", "video", label="Dispatcher camera")

    summary = await record(recorder, by_arrival(audio, video))

    assert summary.path == path and path.exists()
    assert summary.bytes == path.stat().st_size > 0
    assert summary.errors == 0 and summary.dropped == 0
    cam, mic = track(summary, "cam"), track(summary, "mic")
    assert (cam.frames, cam.skipped, cam.discarded) == (75, 3, 0)
    assert cam.sizes == ((320, 240), (640, 480))
    assert (mic.frames, mic.skipped, mic.discarded, mic.channels) == (100, 0, 0, 1)
    # The first keyframe arrived 3 frames (100 ms) after the video's first frame at 150 ms.
    assert cam.start_ms == 250 and mic.start_ms == 0
    assert mic.end_ms == 2000
    assert cam.end_ms is not None and abs(cam.end_ms - (250 + 75 * 1000 / 30)) <= 2
    assert summary.duration_ms == cam.end_ms
    assert not (tmp_path / "call.webm.parts").exists()

    decoded = decode(path)
    # Streams in the order the tracks were added.
    assert [d.kind for d in decoded] == ["audio", "video"]
    assert [d.title for d in decoded] == ["Dispatcher mic", "Dispatcher camera"]
    assert [mic.stream_index, cam.stream_index] == [0, 1]
    sound, picture = decoded
    assert picture.frames == 75
    assert picture.sizes == [(320, 240), (640, 480)]
    # Across the RTP wrap the frames stay 33 or 34 ms apart.
    assert {b - a for a, b in zip(picture.pts_ms, picture.pts_ms[1:], strict=False)} <= {33, 34}
    assert picture.pts_ms[0] == 250
    assert sound.frames == 100 and sound.channels == 1
    assert sound.codec_private[:10] == b"OpusHead\x01\x01"
    assert abs(container_duration_ms(path) - summary.duration_ms) <= 40


async def test_two_participants_one_joining_late_one_leaving_early(tmp_path: Path) -> None:
    path = tmp_path / "consultation.webm"
    a_mic = audio_frames("a-mic", opus(150), start_ms=0, ts0=123_456)
    a_cam = video_frames("a-cam", vp8(45), start_ms=10, ts0=987_654)  # leaves after 1.5 s
    b_mic = audio_frames("b-mic", opus(100, "stereo"), start_ms=1000, ts0=NEAR_WRAP_AUDIO)
    b_cam = video_frames("b-cam", vp8(45, 640, 480), start_ms=1005, ts0=NEAR_WRAP_VIDEO)
    recorder = WebmRecorder(path, keep_parts=True)
    await recorder.start()
    recorder.add_track("a-mic", "audio", label="A mic")
    recorder.add_track("a-cam", "video", label="A camera")
    for frame in by_arrival(a_mic, a_cam):
        if frame.arrival_ms >= T0 + 1000:
            break
        recorder.write(frame)
    # B publishes after the file's first frames were written.
    recorder.add_track("b-mic", "audio", label="B mic")
    recorder.add_track("b-cam", "video", label="B camera")
    for frame in by_arrival(a_mic, a_cam, b_mic, b_cam):
        if frame.arrival_ms >= T0 + 1000:
            recorder.write(frame)
    summary = await recorder.stop()

    assert summary.errors == 0 and summary.dropped == 0
    decoded = {d.track_id: d for d in decode(path)}
    assert set(decoded) == {"a-mic", "a-cam", "b-mic", "b-cam"}
    assert {d.title for d in decoded.values()} == {"A mic", "A camera", "B mic", "B camera"}
    assert decoded["a-mic"].frames == 150 and decoded["b-mic"].frames == 100
    assert decoded["a-cam"].frames == 45 and decoded["b-cam"].frames == 45
    assert decoded["b-cam"].sizes == [(640, 480)]
    assert decoded["b-mic"].channels == 2
    # WebM's Opus CodecPrivate: an OpusHead with the channel count declared for the track.
    assert decoded["a-mic"].codec_private[:10] == b"OpusHead\x01\x02"
    assert decoded["b-mic"].codec_private[:10] == b"OpusHead\x01\x02"
    # B is placed where it joined, not at the start of the file.
    assert abs(decoded["b-cam"].pts_ms[0] - 1005) <= 1
    assert abs(decoded["b-mic"].pts_ms[0] - 1000) <= 10  # Opus pre-skip shifts the first output
    assert decoded["a-cam"].pts_ms[-1] < 1500
    assert abs(summary.duration_ms - 3000) <= 40
    for t in summary.tracks:
        assert t.stream_index is not None
        assert t.part is not None and t.part.exists()
        # Each kept part is a playable file of its own.
        (own,) = decode(t.part)
        assert own.frames == decoded[t.track_id].frames


async def test_writer_behind_drops_counts_and_resumes_video_at_a_keyframe(tmp_path: Path) -> None:
    path = tmp_path / "behind.webm"
    frames = video_frames("cam", vp8(60), start_ms=0, ts0=5_000)  # keyframes at 0, 15, 30, 45
    asked: list[str] = []
    recorder = WebmRecorder(path, max_queue=10, on_keyframe_needed=asked.append)
    # Before start() nothing drains the queue: a burst of 20 overflows it.
    for frame in frames[:20]:
        recorder.write(frame)
    assert recorder.queued == 10
    assert recorder.dropped == 2  # frame 10, and keyframe 15; the deltas after each are skipped
    assert asked == ["cam", "cam"]  # once per loss, not per skipped frame: keyframe 15 was lost too
    await recorder.start()
    # Then at a pace the writer keeps up with.
    for start in range(20, 60, 5):
        await drained(recorder)
        for frame in frames[start : start + 5]:
            recorder.write(frame)
    summary = await recorder.stop()

    cam = track(summary, "cam")
    assert (cam.frames, cam.dropped, cam.skipped) == (40, 2, 18)
    assert summary.dropped == 2 and summary.errors == 0
    (picture,) = decode(path)
    assert picture.frames == 40
    # Frames 0-9, then from the keyframe at 30: nothing that refers to a lost frame.
    assert picture.pts_ms[9] == 300 and picture.pts_ms[10] == 1000


async def test_reordered_video_frame_waits_for_the_next_keyframe(tmp_path: Path) -> None:
    path = tmp_path / "reordered.webm"
    frames = video_frames("cam", vp8(30), start_ms=0, ts0=NEAR_WRAP_VIDEO)  # keyframes at 0 and 15
    asked: list[str] = []
    recorder = WebmRecorder(path, on_keyframe_needed=asked.append)
    # Frame 7 comes again after frame 9: frames 8 and 9 may have been predicted from a frame now lost.
    summary = await record(recorder, [*frames[:10], frames[7], *frames[10:]])

    cam = track(summary, "cam")
    assert (cam.frames, cam.discarded, cam.skipped) == (25, 1, 5)
    assert asked == ["cam"]
    (picture,) = decode(path)
    assert picture.frames == 25
    assert picture.pts_ms[9:11] == [300, 500]


async def test_burst_larger_than_the_queue_still_gives_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "burst.webm"
    packets = opus(50) * 6
    recorder = WebmRecorder(path, max_queue=4)
    summary = await record(recorder, audio_frames("mic", packets, start_ms=0, ts0=1))

    mic = track(summary, "mic")
    # How many the writer kept up with depends on thread scheduling; none may go unaccounted.
    assert mic.frames + mic.dropped == len(packets)
    assert summary.dropped == mic.dropped
    (sound,) = decode(path)
    assert sound.frames == mic.frames


async def test_timestamp_jump_is_reanchored_and_duplicates_discarded(tmp_path: Path) -> None:
    path = tmp_path / "jump.webm"
    packets = opus(80)
    frames = audio_frames("mic", packets, start_ms=0, ts0=2**32 - 960 * 5)
    # At 800 ms the sender's timestamps restart from an unrelated base (a new SSRC).
    jumped = [
        RecordedFrame(f.track_id, f.kind, f.data, (f.timestamp + 1_234_567_890) % 2**32, arrival_ms=f.arrival_ms)
        for f in frames[40:]
    ]
    duplicate, reordered = frames[10], frames[20]
    recorder = WebmRecorder(path)
    summary = await record(recorder, [*frames[:30], duplicate, reordered, *frames[30:40], *jumped])

    mic = track(summary, "mic")
    assert (mic.frames, mic.discarded, mic.resyncs) == (80, 2, 1)
    (sound,) = decode(path)
    assert sound.frames == 80
    steps = {b - a for a, b in zip(sound.pts_ms[1:], sound.pts_ms[2:], strict=False)}
    assert steps == {20}  # still 20 ms apart across the jump
    assert summary.path == path and not (tmp_path / "jump.webm.parts").exists()


async def test_empty_recording_writes_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.webm"
    recorder = WebmRecorder(path)
    recorder.add_track("cam", "video", label="camera")
    recorder.add_track("mic", "audio")
    # Only delta frames: nothing can be decoded, so nothing is written.
    summary = await record(recorder, video_frames("cam", vp8(5)[1:], start_ms=0, ts0=0))

    assert summary.path is None and summary.bytes == 0 and summary.duration_ms == 0
    assert [(t.track_id, t.frames, t.skipped) for t in summary.tracks] == [("cam", 0, 4), ("mic", 0, 0)]
    assert not path.exists() and names_in(tmp_path) == []
    assert await recorder.stop() is summary


async def test_stop_without_start_and_writes_after_stop(tmp_path: Path) -> None:
    path = tmp_path / "late.webm"
    recorder = WebmRecorder(path)
    frames = audio_frames("mic", opus(10), start_ms=0, ts0=0)
    for frame in frames[:5]:
        recorder.write(frame)
    summary = await recorder.stop()
    recorder.write(frames[5])
    recorder.add_track("cam", "video")

    assert track(summary, "mic").frames == 5
    assert [t.track_id for t in summary.tracks] == ["mic"]
    (sound,) = decode(path)
    assert sound.frames == 5


async def test_wrong_kind_and_empty_frames_are_discarded(tmp_path: Path) -> None:
    path = tmp_path / "odd.webm"
    recorder = WebmRecorder(path)
    recorder.add_track("mic", "audio")
    with pytest.raises(ValueError, match="already a audio track"):
        recorder.add_track("mic", "video")
    frames = audio_frames("mic", opus(10), start_ms=0, ts0=0)
    odd = [
        RecordedFrame("mic", "video", vp8(1)[0][0], 0, keyframe=True, arrival_ms=T0),
        RecordedFrame("mic", "audio", b"", 960, arrival_ms=T0 + 20),
    ]
    summary = await record(recorder, [*odd, *frames])

    mic = track(summary, "mic")
    assert (mic.frames, mic.discarded) == (10, 2)
