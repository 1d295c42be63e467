"""The forwarding core of video consultations (视频会商): a selective forwarding unit on aiortc, without transcoding.

Each participant has one ``RTCPeerConnection`` to the server. A publication is a recvonly transceiver on its
publisher's connection; its encoded frames (``media.passthrough``) fan out to one bounded queue per subscription,
and each subscription is a sendonly transceiver on the subscriber's connection whose track packetizes those frames
as they are (VP8 video, Opus audio). Nothing is decoded or encoded on the server.

Negotiation: the server is always the offerer. After ``publish``/``subscribe``/``unsubscribe``/``unpublish``
(or after another participant's ``unpublish``/``leave`` removed one of its subscriptions, which is reported through
``on_negotiation_needed``), the signalling layer calls ``negotiate`` and sends the offer; the client answers and
the signalling layer passes the answer to ``answer``. The offer's ``"mids"`` maps each m-line to what it carries:
on a ``"publish"`` m-line the client attaches its camera or microphone (per ``kind``/``source``) and answers
sendonly; on a ``"subscribe"`` m-line it receives the publication named there; ``"unused"`` m-lines are inactive.
Operations on one participant run one at a time (a lock per participant). ``negotiate`` while an offer awaits its
answer returns that same offer again; if anything changed meanwhile, ``on_negotiation_needed`` fires after the
answer, so the change goes into the next offer.

Queues: each subscription holds at most ``queue_size`` frames. Audio drops the oldest frame. Video drops the whole
queue and then every delta frame until the next key frame (a delta frame after a gap cannot be decoded anyway); the
key frame is asked for as soon as the subscriber's sender is reading again, so a stalled subscriber neither grows
memory nor makes the publisher send key frames for nobody. Keyframe requests towards a publisher (a subscriber's
PLI/FIR, a new subscriber, recovery after drops) are coalesced to at most one PLI per ``keyframe_interval``.

Removed transceivers are set inactive and stopped once an answer confirmed it. aiortc does not recycle m-lines, so a
participant's SDP grows by one m-line per publication or subscription ever made; ``connect`` (a fresh connection)
starts again from the live ones.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media.passthrough import (
    CLOCK_RATES,
    FRAME_STEP,
    EncodedFrame,
    EncodedFrameTrack,
    Kind,
    ReceiverTap,
    check_compatible,
    on_keyframe_request,
    set_stream_id,
    tap_receiver,
)
from server.errors import BadRequest, Conflict, NotFound
from server.ids import new_id
from server.logging import get_logger

__all__ = [
    "CallStats",
    "EncodedFrame",
    "Kind",
    "MediaSlot",
    "Publication",
    "Sfu",
    "Sink",
    "SubscriptionStats",
]

log = get_logger("muster.media")

#: Receives every forwarded frame of a call with its publication id (for the recorder); called on the event loop.
Sink = Callable[[str, EncodedFrame], None]

#: The codecs forwarded as they are: everything else is left out of the offers.
_FORWARDED_CODECS: dict[str, tuple[str, ...]] = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}
#: A subscription asks for a key frame at most this often on its own (join, recovery after drops).
_OWN_KEYFRAME_REQUEST_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Publication:
    """A snapshot of one published track with its counters."""

    id: str
    participant_id: str
    kind: Kind
    source: str
    #: The publisher's media SSRC, once its first packet arrived.
    ssrc: int | None
    #: False while a host has muted it (``set_forwarding``): frames are still received and drained, not forwarded.
    forwarding: bool
    subscribers: int
    frames_received: int
    bytes_received: int
    keyframes_received: int
    #: PLIs the server sent to the publisher (after coalescing).
    keyframe_requests_sent: int


class MediaSlot(TypedDict):
    """What one m-line of an offer carries."""

    role: Literal["publish", "subscribe", "unused"]
    kind: Kind
    publication_id: str | None
    #: The publisher (the participant itself on a "publish" m-line).
    participant_id: str | None
    source: str | None


class SubscriptionStats(TypedDict):
    subscriber_id: str
    publication_id: str
    kind: Kind
    #: Frames handed to the subscriber's sender, and how many of them were (video) key frames.
    forwarded: int
    keyframes_forwarded: int
    #: Frames lost to the queue bound (for video also the delta frames discarded until the next key frame).
    dropped: int
    #: Video delta frames discarded while waiting for a first key frame (join, publisher restart, host unmute).
    skipped: int
    queued: int
    queued_bytes: int
    queue_size: int
    #: PLI/FIR from the subscriber passed on to the publisher.
    keyframe_requests_relayed: int
    #: Key frames the server asked for on the subscriber's behalf (join, recovery after drops).
    keyframe_requests_own: int


class CallStats(TypedDict):
    call_id: str
    publications: list[dict[str, Any]]
    subscriptions: list[SubscriptionStats]


def _codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpSender.getCapabilities(kind)
    wanted = _FORWARDED_CODECS[kind]
    return [codec for codec in capabilities.codecs if codec.mimeType.lower() in wanted]


class _Subscription:
    """One subscriber's bounded queue of one publication's frames, read by the subscriber's sender."""

    def __init__(self, subscriber_id: str, publication: _Publication, queue_size: int) -> None:
        self.subscriber_id = subscriber_id
        self.publication = publication
        self.kind: Kind = publication.kind
        self.queue_size = queue_size
        self.queue: deque[EncodedFrame] = deque()
        self.transceiver: RTCRtpTransceiver | None = None
        self.closed = False
        self._wakeup = asyncio.Event()
        self._waiting_keyframe = self.kind == "video"
        self._waiting_after_overflow = False
        self._reader_waiting = False
        self._last_own_request = float("-inf")
        self._remove_hook: Callable[[], None] | None = None
        self.forwarded = 0
        self.keyframes_forwarded = 0
        self.dropped = 0
        self.skipped = 0
        self.keyframe_requests_relayed = 0
        self.keyframe_requests_own = 0

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """Start over on a new sender: stale frames go, video waits for a key frame."""
        self.detach()
        self.transceiver = transceiver
        self.queue.clear()
        self.restart_video()
        self._remove_hook = on_keyframe_request(transceiver.sender, self._on_keyframe_request)

    def detach(self) -> None:
        if self._remove_hook is not None:
            self._remove_hook()
            self._remove_hook = None
        track = self.transceiver.sender.track if self.transceiver is not None else None
        if track is not None:
            track.stop()
        self.transceiver = None
        self._wakeup.set()  # the old track's reader, if any, finds its track ended

    def close(self) -> None:
        self.closed = True
        self.detach()
        self.queue.clear()

    def restart_video(self) -> None:
        """Discard delta frames until the next key frame (a decoder cannot start on one)."""
        if self.kind == "video":
            self._waiting_keyframe = True
            self._waiting_after_overflow = False

    def push(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        if self._waiting_keyframe:
            if not frame.keyframe:
                if self._waiting_after_overflow:
                    self.dropped += 1
                else:
                    self.skipped += 1
                if self._reader_waiting:
                    self._request_own_keyframe()
                return
            self._waiting_keyframe = False
        if len(self.queue) >= self.queue_size:
            if self.kind == "audio":
                self.queue.popleft()
                self.dropped += 1
            else:
                self.dropped += len(self.queue)
                self.queue.clear()
                if not frame.keyframe:
                    self.dropped += 1
                    self._waiting_keyframe = True
                    self._waiting_after_overflow = True
                    return
        self.queue.append(frame)
        self._wakeup.set()

    async def next_frame(self, track: EncodedFrameTrack) -> EncodedFrame:
        """The sender's next frame; ends ``track`` (MediaStreamError) once unsubscribed or moved to a new sender."""
        while True:
            if self.closed or self.transceiver is None or self.transceiver.sender.track is not track:
                raise MediaStreamError
            if self.queue:
                frame = self.queue.popleft()
                self.forwarded += 1
                if frame.keyframe and self.kind == "video":
                    self.keyframes_forwarded += 1
                return frame
            self._wakeup.clear()
            self._reader_waiting = True
            try:
                await self._wakeup.wait()
            finally:
                self._reader_waiting = False

    def _request_own_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_own_request >= _OWN_KEYFRAME_REQUEST_INTERVAL:
            self._last_own_request = now
            self.keyframe_requests_own += 1
            self.publication.request_keyframe()

    def _on_keyframe_request(self) -> None:
        if self.closed:
            return
        self.keyframe_requests_relayed += 1
        self.publication.request_keyframe()

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            subscriber_id=self.subscriber_id, publication_id=self.publication.id, kind=self.kind,
            forwarded=self.forwarded, keyframes_forwarded=self.keyframes_forwarded, dropped=self.dropped,
            skipped=self.skipped, queued=len(self.queue),
            queued_bytes=sum(len(frame.data) for frame in self.queue), queue_size=self.queue_size,
            keyframe_requests_relayed=self.keyframe_requests_relayed,
            keyframe_requests_own=self.keyframe_requests_own,
        )


class _Publication:
    """One publisher track: its receiver tap, its subscribers, keyframe-request coalescing."""

    def __init__(self, call: _Call, participant_id: str, kind: Kind, source: str, keyframe_interval: float) -> None:
        self.id = new_id()
        self.call = call
        self.participant_id = participant_id
        self.kind: Kind = kind
        self.source = source
        self.tap: ReceiverTap | None = None
        self.transceiver: RTCRtpTransceiver | None = None
        self.subscribers: dict[str, _Subscription] = {}
        self.forwarding = True
        self.closed = False
        self._keyframe_interval = keyframe_interval
        self._last_pli = float("-inf")
        self._pli_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames_received = 0
        self.bytes_received = 0
        self.keyframes_received = 0
        self.keyframe_requests_sent = 0
        self._last_timestamp: int | None = None
        self._last_frame_at = 0.0

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        if self.tap is not None:
            self.tap.detach()
        self.transceiver = transceiver
        first_timestamp = 0
        if self._last_timestamp is not None:
            # the publisher reconnected: timestamps go on from where they were, plus the time it was away
            gap = int((time.monotonic() - self._last_frame_at) * CLOCK_RATES[self.kind])
            first_timestamp = self._last_timestamp + max(FRAME_STEP[self.kind], gap)
        self.tap = tap_receiver(transceiver.receiver, self.kind, self.on_frame, first_timestamp=first_timestamp)
        # a new connection restarts the stream: subscribers resume at its first key frame
        for subscription in self.subscribers.values():
            subscription.restart_video()

    def on_frame(self, frame: EncodedFrame) -> None:
        self._last_timestamp = frame.timestamp
        self._last_frame_at = time.monotonic()
        self.frames_received += 1
        self.bytes_received += len(frame.data)
        if frame.keyframe and self.kind == "video":
            self.keyframes_received += 1
        if not self.forwarding or self.closed:
            return
        for subscription in list(self.subscribers.values()):
            subscription.push(frame)
        for sink in list(self.call.sinks):
            try:
                sink(self.id, frame)
            except Exception:
                log.exception("media.sink_failed", call_id=self.call.id, publication_id=self.id)

    def set_forwarding(self, enabled: bool) -> None:
        if enabled == self.forwarding:
            return
        self.forwarding = enabled
        if enabled:
            for subscription in self.subscribers.values():
                subscription.restart_video()
            self.request_keyframe()

    def request_keyframe(self) -> None:
        """Ask the publisher for a key frame: at once, or at the end of the current coalescing interval."""
        if self.kind != "video" or self.closed:
            return
        wait = self._last_pli + self._keyframe_interval - time.monotonic()
        if wait <= 0:
            self._send_pli()
        elif self._pli_timer is None:
            self._pli_timer = asyncio.get_running_loop().call_later(wait, self._send_pli)

    def _send_pli(self) -> None:
        self._pli_timer = None
        if self.closed or self.tap is None:
            return
        self._last_pli = time.monotonic()
        task = asyncio.ensure_future(self._pli(self.tap))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pli(self, tap: ReceiverTap) -> None:
        try:
            if await tap.request_keyframe():
                self.keyframe_requests_sent += 1
        except Exception:
            log.exception("media.pli_failed", call_id=self.call.id, publication_id=self.id)

    def close(self) -> None:
        self.closed = True
        if self.tap is not None:
            self.tap.detach()
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for task in self._tasks:
            task.cancel()

    def snapshot(self) -> Publication:
        return Publication(
            id=self.id, participant_id=self.participant_id, kind=self.kind, source=self.source,
            ssrc=self.tap.ssrc if self.tap is not None else None, forwarding=self.forwarding,
            subscribers=len(self.subscribers), frames_received=self.frames_received,
            bytes_received=self.bytes_received, keyframes_received=self.keyframes_received,
            keyframe_requests_sent=self.keyframe_requests_sent,
        )


class _Participant:
    def __init__(self, call_id: str, participant_id: str) -> None:
        self.call_id = call_id
        self.id = participant_id
        self.lock = asyncio.Lock()
        self.pc: RTCPeerConnection | None = None
        self.publications: dict[str, _Publication] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        #: transceiver -> what it carries, for the offer's "mids"
        self.slots: dict[RTCRtpTransceiver, MediaSlot] = {}
        #: removed transceivers, stopped once an answer has made them inactive
        self.retiring: list[RTCRtpTransceiver] = []
        self.pending_offer: dict[str, Any] | None = None
        #: transceivers changed since the last offer
        self.dirty = False


@dataclass(eq=False)
class _Call:
    id: str
    participants: dict[str, _Participant]
    publications: dict[str, _Publication]
    sinks: list[Sink]


class Sfu:
    """Forwards encoded media between the participants of each call (see the module docstring)."""

    def __init__(
        self,
        *,
        queue_size: int = 64,
        ice_servers: list[RTCIceServer] | None = None,
        on_negotiation_needed: Callable[[str, str], None] | None = None,
        keyframe_interval: float = 0.5,
    ) -> None:
        """``on_negotiation_needed(call_id, participant_id)`` is called when a participant needs a new offer that
        it did not ask for itself (another participant unpublished or left, or changes arrived while an offer was
        pending). ``keyframe_interval`` (seconds) coalesces keyframe requests towards each publisher."""
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        check_compatible()
        # aiortc logs whole SDP bodies at DEBUG when descriptions are set; Muster never logs SDP.
        sdp_logger = logging.getLogger("aiortc.rtcpeerconnection")
        if sdp_logger.getEffectiveLevel() < logging.INFO:
            sdp_logger.setLevel(logging.INFO)
        self._queue_size = queue_size
        self._ice_servers = list(ice_servers or [])
        self._on_negotiation_needed = on_negotiation_needed
        self._keyframe_interval = keyframe_interval
        self._calls: dict[str, _Call] = {}

    # --- connections -------------------------------------------------------------------------------------------

    async def connect(self, call_id: str, participant_id: str) -> None:
        """Create the participant's peer connection, or replace it (after a network change) with a fresh one that
        carries the same publications and subscriptions; either way a ``negotiate`` must follow."""
        call = self._call(call_id, create=True)
        participant = call.participants.get(participant_id)
        if participant is None:
            participant = call.participants[participant_id] = _Participant(call_id, participant_id)
        async with participant.lock:
            old = participant.pc
            participant.pc = None
            participant.slots.clear()
            participant.retiring.clear()
            participant.pending_offer = None
            for subscription in participant.subscriptions.values():
                subscription.detach()
            if old is not None:
                for publication in participant.publications.values():
                    if publication.tap is not None:
                        publication.tap.detach()
                await old.close()
            pc = participant.pc = RTCPeerConnection(RTCConfiguration(
                iceServers=self._ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
            pc.on("connectionstatechange", lambda: self._log_state(participant, pc))
            for publication in participant.publications.values():
                self._add_publish_transceiver(participant, publication)
            for subscription in participant.subscriptions.values():
                self._add_subscribe_transceiver(participant, subscription)
            participant.dirty = True
        log.info("media.connected", call_id=call_id, participant_id=participant_id, replaced=old is not None)

    def _log_state(self, participant: _Participant, pc: RTCPeerConnection) -> None:
        log.info("media.connection_state", call_id=participant.call_id, participant_id=participant.id,
                 state=pc.connectionState)

    async def leave(self, call_id: str, participant_id: str) -> None:
        """Stop forwarding to and from the participant and close its connection. Its subscribers lose those
        subscriptions (``on_negotiation_needed`` tells them to renegotiate). Unknown participants are ignored."""
        call = self._calls.get(call_id)
        participant = call.participants.pop(participant_id, None) if call is not None else None
        if call is None or participant is None:
            return
        async with participant.lock:
            for subscription in participant.subscriptions.values():
                subscription.close()
                subscription.publication.subscribers.pop(participant_id, None)
            participant.subscriptions.clear()
            orphaned: list[_Subscription] = []
            for publication in participant.publications.values():
                call.publications.pop(publication.id, None)
                publication.close()
                orphaned.extend(publication.subscribers.values())
                publication.subscribers.clear()
            participant.publications.clear()
            pc, participant.pc = participant.pc, None
            if pc is not None:
                await pc.close()
        await self._drop_subscriptions(call, orphaned)
        log.info("media.left", call_id=call_id, participant_id=participant_id)

    async def close_call(self, call_id: str) -> None:
        """Everyone leaves; the call and its sinks are forgotten."""
        call = self._calls.get(call_id)
        if call is None:
            return
        for participant_id in list(call.participants):
            await self.leave(call_id, participant_id)
        self._calls.pop(call_id, None)

    async def close(self) -> None:
        for call_id in list(self._calls):
            await self.close_call(call_id)

    # --- publications and subscriptions ------------------------------------------------------------------------

    async def publish(self, call_id: str, participant_id: str, *, kind: Literal["audio", "video"],
                      source: str) -> str:
        """Add a track the participant will send (``source`` e.g. "camera", "microphone", "screen"): the next offer
        has a recvonly m-line for it. Returns the publication id."""
        if kind not in ("audio", "video"):
            raise BadRequest(f"unknown media kind {kind!r}", code="media.bad_kind")
        call, participant = self._participant(call_id, participant_id)
        async with participant.lock:
            self._require_pc(participant)
            publication = _Publication(call, participant_id, kind, source, self._keyframe_interval)
            call.publications[publication.id] = publication
            participant.publications[publication.id] = publication
            self._add_publish_transceiver(participant, publication)
            participant.dirty = True
        log.info("media.published", call_id=call_id, participant_id=participant_id, publication_id=publication.id,
                 kind=kind, source=source)
        return publication.id

    async def unpublish(self, call_id: str, participant_id: str, publication_id: str) -> None:
        """Stop receiving the track; its subscribers lose it (``on_negotiation_needed`` tells them)."""
        call, participant = self._participant(call_id, participant_id)
        async with participant.lock:
            publication = participant.publications.pop(publication_id, None)
            if publication is None:
                raise NotFound("no such publication", code="media.publication_not_found")
            call.publications.pop(publication_id, None)
            publication.close()
            if publication.transceiver is not None:
                self._retire(participant, publication.transceiver)
            orphaned = list(publication.subscribers.values())
            publication.subscribers.clear()
        await self._drop_subscriptions(call, orphaned)
        log.info("media.unpublished", call_id=call_id, participant_id=participant_id, publication_id=publication_id)

    async def subscribe(self, call_id: str, subscriber_id: str, publication_id: str) -> None:
        """Forward the publication to the subscriber: the next offer has a sendonly m-line for it. Idempotent."""
        call, participant = self._participant(call_id, subscriber_id)
        publication = call.publications.get(publication_id)
        if publication is None:
            raise NotFound("no such publication", code="media.publication_not_found")
        if publication.participant_id == subscriber_id:
            raise BadRequest("a participant does not subscribe to its own publication", code="media.own_publication")
        async with participant.lock:
            self._require_pc(participant)
            if publication.closed or publication_id in participant.subscriptions:
                return
            subscription = _Subscription(subscriber_id, publication, self._queue_size)
            participant.subscriptions[publication_id] = subscription
            publication.subscribers[subscriber_id] = subscription
            self._add_subscribe_transceiver(participant, subscription)
            participant.dirty = True

    async def unsubscribe(self, call_id: str, subscriber_id: str, publication_id: str) -> None:
        """Stop forwarding the publication to the subscriber (its m-line becomes inactive in the next offer)."""
        _, participant = self._participant(call_id, subscriber_id)
        async with participant.lock:
            subscription = participant.subscriptions.pop(publication_id, None)
            if subscription is None:
                raise NotFound("not subscribed to that publication", code="media.subscription_not_found")
            self._remove_subscription(participant, subscription)

    def set_forwarding(self, call_id: str, publication_id: str, enabled: bool) -> None:
        """Host mute: stop (or resume) forwarding a publication to its subscribers and sinks. The publisher's
        stream is still received and drained; on resume video subscribers restart at the next key frame."""
        publication = self._call(call_id).publications.get(publication_id)
        if publication is None:
            raise NotFound("no such publication", code="media.publication_not_found")
        publication.set_forwarding(enabled)

    def request_keyframe(self, call_id: str, publication_id: str) -> None:
        """Ask a video publisher for a key frame (a recording starting mid-stream needs one); coalesced like the
        subscribers' requests. Unknown calls and publications are ignored: the caller may be late."""
        call = self._calls.get(call_id)
        publication = call.publications.get(publication_id) if call is not None else None
        if publication is not None:
            publication.request_keyframe()

    def add_sink(self, call_id: str, sink: Sink) -> Callable[[], None]:
        """Call ``sink(publication_id, frame)`` for every frame forwarded in the call (the call is created if
        needed); returns a function that removes the sink. A sink must not block: it runs on the event loop."""
        call = self._call(call_id, create=True)
        call.sinks.append(sink)

        def remove() -> None:
            if sink in call.sinks:
                call.sinks.remove(sink)

        return remove

    # --- negotiation -------------------------------------------------------------------------------------------

    async def negotiate(self, call_id: str, participant_id: str) -> dict[str, Any]:
        """An offer reflecting the participant's current transceivers, ICE gathering complete (no trickle):
        ``{"sdp": str, "type": "offer", "mids": {mid: MediaSlot}}``. ``sdp``/``type`` form the session description;
        ``mids`` says what each m-line carries. While an offer awaits its answer, that offer is returned again."""
        _, participant = self._participant(call_id, participant_id)
        async with participant.lock:
            pc = self._require_pc(participant)
            if pc.signalingState == "have-local-offer" and participant.pending_offer is not None:
                return participant.pending_offer
            if not pc.getTransceivers():
                raise Conflict("nothing to negotiate: publish or subscribe first", code="media.nothing_to_negotiate")
            participant.dirty = False
            await pc.setLocalDescription(await pc.createOffer())
            description = pc.localDescription
            mids: dict[str, MediaSlot] = {}
            for transceiver in pc.getTransceivers():
                if transceiver.mid is not None:
                    mids[transceiver.mid] = participant.slots.get(transceiver) or MediaSlot(
                        role="unused", kind="audio" if transceiver.kind == "audio" else "video",
                        publication_id=None, participant_id=None, source=None)
            participant.pending_offer = {"sdp": description.sdp, "type": "offer", "mids": mids}
            return participant.pending_offer

    async def answer(self, call_id: str, participant_id: str, sdp: str) -> None:
        """Apply the client's answer to the pending offer."""
        _, participant = self._participant(call_id, participant_id)
        async with participant.lock:
            pc = self._require_pc(participant)
            if pc.signalingState != "have-local-offer":
                raise Conflict("no offer is waiting for an answer", code="media.no_offer_pending")
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except Exception as exc:  # malformed or mismatching SDP: ValueError, aiortc's OperationError, ...
                # the SDP body itself is never logged
                log.warning("media.bad_answer", call_id=call_id, participant_id=participant_id,
                            error=type(exc).__name__)
                raise BadRequest("the answer could not be applied", code="media.bad_answer") from exc
            participant.pending_offer = None
            retired = [t for t in participant.retiring if t.currentDirection == "inactive"]
            participant.retiring = [t for t in participant.retiring if t not in retired]
            for transceiver in retired:
                await transceiver.stop()
            renegotiate = participant.dirty
        if renegotiate:
            self._negotiation_needed(participant)

    # --- views -------------------------------------------------------------------------------------------------

    def publications(self, call_id: str) -> list[Publication]:
        call = self._calls.get(call_id)
        return [publication.snapshot() for publication in call.publications.values()] if call else []

    def stats(self, call_id: str) -> CallStats:
        """Per publication its counters, per subscription forwarded/dropped/queued and keyframe requests."""
        call = self._calls.get(call_id)
        if call is None:
            return CallStats(call_id=call_id, publications=[], subscriptions=[])
        return CallStats(
            call_id=call_id,
            publications=[asdict(publication.snapshot()) for publication in call.publications.values()],
            subscriptions=[subscription.stats() for participant in call.participants.values()
                           for subscription in participant.subscriptions.values()],
        )

    # --- internals ---------------------------------------------------------------------------------------------

    def _call(self, call_id: str, *, create: bool = False) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            if not create:
                raise NotFound("no such call", code="media.call_not_found")
            call = self._calls[call_id] = _Call(call_id, {}, {}, [])
        return call

    def _participant(self, call_id: str, participant_id: str) -> tuple[_Call, _Participant]:
        call = self._call(call_id)
        participant = call.participants.get(participant_id)
        if participant is None:
            raise NotFound("participant is not connected", code="media.not_connected")
        return call, participant

    @staticmethod
    def _require_pc(participant: _Participant) -> RTCPeerConnection:
        if participant.pc is None:
            raise NotFound("participant is not connected", code="media.not_connected")
        return participant.pc

    @staticmethod
    def _add_publish_transceiver(participant: _Participant, publication: _Publication) -> None:
        pc = Sfu._require_pc(participant)
        transceiver = pc.addTransceiver(publication.kind, direction="recvonly")
        transceiver.setCodecPreferences(_codec_preferences(publication.kind))
        publication.attach(transceiver)
        participant.slots[transceiver] = MediaSlot(
            role="publish", kind=publication.kind, publication_id=publication.id,
            participant_id=participant.id, source=publication.source)

    @staticmethod
    def _add_subscribe_transceiver(participant: _Participant, subscription: _Subscription) -> None:
        pc = Sfu._require_pc(participant)
        publication = subscription.publication
        holder: list[EncodedFrameTrack] = []
        track = EncodedFrameTrack(publication.kind, lambda: subscription.next_frame(holder[0]))
        holder.append(track)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(_codec_preferences(publication.kind))
        # one msid stream per publisher, so a browser keeps its audio and video together (msid ids are SDP tokens)
        set_stream_id(transceiver.sender, re.sub(r"[^A-Za-z0-9_.-]", "_", publication.participant_id)[:64] or "-")
        subscription.attach(transceiver)
        participant.slots[transceiver] = MediaSlot(
            role="subscribe", kind=publication.kind, publication_id=publication.id,
            participant_id=publication.participant_id, source=publication.source)

    def _retire(self, participant: _Participant, transceiver: RTCRtpTransceiver) -> None:
        """Make the m-line inactive in the next offer; stop the transceiver once an answer confirmed that (stopping
        earlier could let aiortc start it again on a late answer, or route its packets to another receiver)."""
        participant.slots.pop(transceiver, None)
        if participant.pc is None:
            return
        transceiver.direction = "inactive"
        participant.retiring.append(transceiver)
        participant.dirty = True

    def _remove_subscription(self, participant: _Participant, subscription: _Subscription) -> None:
        transceiver = subscription.transceiver
        subscription.publication.subscribers.pop(participant.id, None)
        subscription.close()
        if transceiver is not None:
            self._retire(participant, transceiver)

    async def _drop_subscriptions(self, call: _Call, subscriptions: list[_Subscription]) -> None:
        """Remove subscriptions whose publication went away, and ask their subscribers to renegotiate."""
        affected: dict[str, _Participant] = {}
        for subscription in subscriptions:
            participant = call.participants.get(subscription.subscriber_id)
            if participant is None:
                subscription.close()
                continue
            async with participant.lock:
                if participant.subscriptions.get(subscription.publication.id) is subscription:
                    del participant.subscriptions[subscription.publication.id]
                self._remove_subscription(participant, subscription)
            affected[participant.id] = participant
        for participant in affected.values():
            self._negotiation_needed(participant)

    def _negotiation_needed(self, participant: _Participant) -> None:
        if self._on_negotiation_needed is None or participant.pc is None:
            return
        try:
            self._on_negotiation_needed(participant.call_id, participant.id)
        except Exception:
            log.exception("media.negotiation_callback_failed", call_id=participant.call_id,
                          participant_id=participant.id)

