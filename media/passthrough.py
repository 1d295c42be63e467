"""Encoded media in and out of aiortc, without decoding or encoding: the one module that touches aiortc internals.

aiortc 1.16 has no public API for forwarding: its receiver always decodes and its sender encodes ``av.Frame``s.
This module adapts it, in four small pieces:

- ``tap_receiver`` takes the encoded frames a receiver's jitter buffer reassembles (a whole VP8 frame or Opus
  packet, RTP payload descriptors already stripped) *before* they reach the decoder, and hands them to a callback
  as ``EncodedFrame``s. Nothing is ever queued for the decoder, so the remote ``MediaStreamTrack`` stays empty
  whether or not anyone reads it (it is drained from the start, by construction). The receiver's decoder thread is
  still started by aiortc but stays idle, blocked on its empty queue, until the receiver stops.
- ``EncodedFrameTrack`` is a sender-side track whose ``recv()`` returns ``av.Packet``s, which the sender hands to
  the codec's ``pack()`` (``Vp8Encoder.pack`` / ``OpusEncoder.pack``) instead of encoding: pure packetization.
- ``on_keyframe_request`` calls back when a sender receives a PLI or FIR (aiortc only sets a force-keyframe flag,
  which the pass-through path ignores); ``ReceiverTap.request_keyframe`` makes a receiver send a PLI for the
  publisher's SSRC.
- ``set_stream_id`` sets the msid stream id a sender announces, so a browser groups a publisher's audio and video.

aiortc internals relied on (``check_compatible()`` verifies each and raises ``RuntimeError`` if one is gone):

- ``RTCRtpReceiver._RTCRtpReceiver__jitter_buffer``: the receiver's ``JitterBuffer`` instance; we replace it with
  a proxy. ``RTCRtpReceiver._handle_rtp_packet`` calls ``self.__jitter_buffer.add(packet)`` with the depayloaded
  packet (``packet._data``, RTX already unwrapped) and only passes a frame to the decoder when ``add`` returns one;
  the proxy returns ``(pli_flag, None)``.
- ``JitterBuffer.add(packet) -> (pli_flag, JitterFrame | None)``, ``JitterFrame.data`` / ``.timestamp``.
- ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` (needs the RTCP SSRC the peer connection sets on every receiver).
- ``RTCRtpSender._send_keyframe()``, called by ``RTCRtpSender._handle_rtcp_packet`` for PLI and FIR; we shadow it
  on the instance.
- ``RTCRtpSender._next_encoded_frame``: any object from ``track.recv()`` that is not an ``av.Frame`` goes to the
  codec's ``pack(packet)``, which reads ``bytes(packet)``, ``packet.pts`` and ``packet.time_base``.
- ``RTCRtpSender._stream_id``, written into the SDP msid by ``create_media_description_for_transceiver``.
"""

from __future__ import annotations

import fractions
import inspect
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import aiortc
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket
from av.packet import Packet
from av.stream import Stream

from server.logging import get_logger

__all__ = [
    "CLOCK_RATES",
    "FRAME_STEP",
    "EncodedFrame",
    "EncodedFrameTrack",
    "Kind",
    "ReceiverTap",
    "check_compatible",
    "is_vp8_keyframe",
    "on_keyframe_request",
    "set_stream_id",
    "tap_receiver",
]

log = get_logger("muster.media.passthrough")

Kind = Literal["audio", "video"]

#: RTP clock rates of the forwarded codecs (VP8 90 kHz, Opus 48 kHz): the unit of ``EncodedFrame.timestamp``.
CLOCK_RATES: dict[str, int] = {"video": 90_000, "audio": 48_000}
#: One frame's duration in clock units (30 fps video, 20 ms Opus): how far timestamps move on a rebase.
FRAME_STEP: dict[str, int] = {"video": 3_000, "audio": 960}
#: A tapped receiver follows a new SSRC only after its current one has been silent this long (seconds).
_SSRC_SWITCH_SILENCE = 1.0

_RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_SENDER_SEND_KEYFRAME = "_send_keyframe"


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame as received from a publisher.

    ``data`` is a whole VP8 frame or Opus packet (no RTP headers or payload descriptors); ``timestamp`` is in RTP
    clock units (90 kHz video, 48 kHz audio), increasing and never wrapped: from ``first_timestamp`` (see
    ``tap_receiver``; the SFU makes it 0 at a publication's first frame and keeps it going, with the wall-clock gap,
    across a publisher's reconnection); ``keyframe`` is true for a VP8 key frame and for every audio frame (each
    decodes on its own).
    """

    kind: Kind
    data: bytes
    timestamp: int
    keyframe: bool


def is_vp8_keyframe(data: bytes) -> bool:
    """A VP8 frame is a key frame when bit 0 of its first byte is 0 and its start code follows (RFC 6386 9.1)."""
    return len(data) >= 10 and not data[0] & 0x01 and data[3:6] == b"\x9d\x01\x2a"


class _TimestampUnwrapper:
    """32-bit RTP timestamps to a monotonic count from 0; ``restart()`` continues one frame after the last."""

    def __init__(self, step: int, first: int) -> None:
        self._step = step
        self._last_raw: int | None = None
        self._last_out = first - step

    def restart(self) -> None:
        self._last_raw = None

    def map(self, raw: int) -> int:
        if self._last_raw is None:
            out = self._last_out + self._step
        else:
            # signed 32-bit difference: handles wrap-around and slight reordering
            delta = ((raw - self._last_raw + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            out = self._last_out + delta
        if out >= self._last_out:
            # a late (reordered) frame must not move the reference backwards
            self._last_raw = raw
            self._last_out = out
        return out


class ReceiverTap:
    """Encoded frames out of one ``RTCRtpReceiver`` (see ``tap_receiver``)."""

    def __init__(self, receiver: RTCRtpReceiver, kind: Kind, on_frame: Callable[[EncodedFrame], None],
                 first_timestamp: int) -> None:
        self._receiver = receiver
        self._kind: Kind = kind
        self._on_frame: Callable[[EncodedFrame], None] | None = on_frame
        self._timestamps = _TimestampUnwrapper(FRAME_STEP[kind], first_timestamp)
        self._last_packet_at = 0.0
        #: The publisher's media SSRC, once its first packet arrived.
        self.ssrc: int | None = None
        #: Packets ignored because they came from another SSRC (e.g. a stream aiortc misroutes after a removal).
        self.foreign_packets = 0

    @property
    def kind(self) -> Kind:
        return self._kind

    def detach(self) -> None:
        """Stop delivering frames. The receiver keeps being drained: nothing reaches its decoder afterwards either."""
        self._on_frame = None

    async def request_keyframe(self) -> bool:
        """Send a PLI for the publisher's SSRC; False when no packet has arrived yet (SSRC unknown) or for audio."""
        if self._kind != "video" or self.ssrc is None:
            return False
        await self._receiver._send_rtcp_pli(self.ssrc)
        return True

    def _accept(self, packet: RtpPacket) -> bool:
        now = time.monotonic()
        if packet.ssrc != self.ssrc:
            if self.ssrc is not None and now - self._last_packet_at < _SSRC_SWITCH_SILENCE:
                self.foreign_packets += 1
                return False
            if self.ssrc is not None:
                log.info("media.receiver_ssrc_changed", kind=self._kind, old=self.ssrc, new=packet.ssrc)
                self._timestamps.restart()
            self.ssrc = packet.ssrc
        self._last_packet_at = now
        return True

    def _deliver(self, frame: JitterFrame) -> None:
        on_frame = self._on_frame
        if on_frame is None:
            return
        data = bytes(frame.data)
        keyframe = True if self._kind == "audio" else is_vp8_keyframe(data)
        encoded = EncodedFrame(self._kind, data, self._timestamps.map(frame.timestamp), keyframe)
        try:
            on_frame(encoded)
        except Exception:
            # never let a consumer's bug break aiortc's packet handling
            log.exception("media.frame_callback_failed", kind=self._kind)


class _TappedJitterBuffer:
    """Stands in for the receiver's JitterBuffer: reassembles as before, hands frames to the tap, not the decoder."""

    def __init__(self, inner: JitterBuffer, tap: ReceiverTap) -> None:
        self._inner = inner
        self._tap = tap

    @property
    def capacity(self) -> int:
        return self._inner.capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if not self._tap._accept(packet):
            return False, None
        pli_flag, frame = self._inner.add(packet)
        if frame is not None:
            self._tap._deliver(frame)
        return pli_flag, None


def tap_receiver(receiver: RTCRtpReceiver, kind: Kind, on_frame: Callable[[EncodedFrame], None], *,
                 first_timestamp: int = 0) -> ReceiverTap:
    """Deliver ``receiver``'s encoded frames to ``on_frame`` (called on the event loop) instead of decoding them.

    ``kind`` is the transceiver's kind (``transceiver.kind``); the first frame gets ``first_timestamp``.
    Call it right after creating the transceiver, before negotiation, so no frame ever reaches the decoder. The
    remote track gets no frames (it only ends when the receiver stops); nobody needs to read it.
    """
    inner = getattr(receiver, _RECEIVER_JITTER_BUFFER, None)
    if isinstance(inner, _TappedJitterBuffer):
        raise ValueError("receiver is already tapped")
    if not isinstance(inner, JitterBuffer):
        raise RuntimeError(f"aiortc {aiortc.__version__} changed: RTCRtpReceiver has no {_RECEIVER_JITTER_BUFFER}")
    tap = ReceiverTap(receiver, kind, on_frame, first_timestamp)
    setattr(receiver, _RECEIVER_JITTER_BUFFER, _TappedJitterBuffer(inner, tap))
    return tap


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` whenever ``sender`` receives a PLI or FIR; returns a function that removes the hook.

    aiortc's own handling (setting the force-keyframe flag, used only when the sender encodes) still runs.
    """
    original: Callable[[], None] = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        try:
            callback()
        except Exception:
            log.exception("media.keyframe_callback_failed")

    setattr(sender, _SENDER_SEND_KEYFRAME, send_keyframe)

    def remove() -> None:
        if vars(sender).get(_SENDER_SEND_KEYFRAME) is send_keyframe:
            delattr(sender, _SENDER_SEND_KEYFRAME)

    return remove


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The msid stream id ``sender`` announces in the next offer (browsers group tracks, and sync A/V, by it)."""
    sender._stream_id = stream_id


class EncodedFrameTrack(MediaStreamTrack):
    """A sender-side track of already-encoded frames: the sender packetizes them (codec ``pack()``), never encodes.

    ``next_frame`` is awaited for every frame and may raise ``MediaStreamError`` to end the track. Timestamps are
    passed through in the RTP clock (``time_base`` 1/90000 video, 1/48000 audio); when they go backwards (the
    publisher reconnected and its count restarted) the track rebases them so they keep increasing.
    """

    def __init__(self, kind: Kind, next_frame: Callable[[], Awaitable[EncodedFrame]], *,
                 track_id: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        if track_id is not None:
            self._id = track_id
        self._next_frame = next_frame
        self._time_base = fractions.Fraction(1, CLOCK_RATES[kind])
        self._step = FRAME_STEP[kind]
        self._offset = 0
        self._last_pts: int | None = None

    async def recv(self) -> Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._next_frame()
        pts = frame.timestamp + self._offset
        if self._last_pts is not None and pts <= self._last_pts:
            self._offset = self._last_pts + self._step - frame.timestamp
            pts = self._last_pts + self._step
        self._last_pts = pts
        packet = Packet(frame.data)
        packet.pts = pts
        packet.time_base = self._time_base
        return packet


def _source_has(function: object, needle: str) -> bool | None:
    """Whether ``function``'s source contains ``needle``; None when the source is not available to check."""
    try:
        return needle in inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None


def check_compatible() -> None:
    """Raise ``RuntimeError("aiortc X changed: ...")`` if an aiortc internal this module relies on is gone."""
    version = getattr(aiortc, "__version__", "?")

    def fail(what: str) -> None:
        raise RuntimeError(f"aiortc {version} changed: {what}")

    for cls, name in ((RTCRtpReceiver, "_send_rtcp_pli"), (RTCRtpReceiver, "_handle_rtp_packet"),
                      (RTCRtpSender, "_send_keyframe"), (RTCRtpSender, "_handle_rtcp_packet"),
                      (RTCRtpSender, "_next_encoded_frame"), (JitterBuffer, "add"),
                      (Vp8Encoder, "pack"), (OpusEncoder, "pack")):
        if not callable(getattr(cls, name, None)):
            fail(f"{cls.__name__}.{name} is missing")

    # A receiver needs only a transport whose state is not "closed" to be built.
    probe = RTCRtpReceiver("video", types.SimpleNamespace(state="new"))  # type: ignore[arg-type]
    if not isinstance(getattr(probe, _RECEIVER_JITTER_BUFFER, None), JitterBuffer):
        fail(f"RTCRtpReceiver instances have no {_RECEIVER_JITTER_BUFFER} JitterBuffer")
    frame = JitterFrame(data=b"", timestamp=0)
    if not (hasattr(frame, "data") and hasattr(frame, "timestamp")):
        fail("JitterFrame has no data/timestamp")

    from aiortc import rtcpeerconnection

    expectations = (
        (RTCRtpReceiver._handle_rtp_packet, "self.__jitter_buffer.add(packet)",
         "RTCRtpReceiver._handle_rtp_packet no longer feeds self.__jitter_buffer.add(packet)"),
        (RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()",
         "RTCRtpSender._handle_rtcp_packet no longer calls self._send_keyframe() on PLI/FIR"),
        (RTCRtpSender._next_encoded_frame, ".pack(data)",
         "RTCRtpSender._next_encoded_frame no longer passes non-Frame data to the codec's pack()"),
        (rtcpeerconnection.create_media_description_for_transceiver, "sender._stream_id",
         "the SDP msid no longer comes from RTCRtpSender._stream_id"),
    )
    for function, needle, what in expectations:
        if _source_has(function, needle) is False:
            fail(what)

