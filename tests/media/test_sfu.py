"""The SFU forwards encoded media between real aiortc peers, relays keyframe requests and keeps its queues bounded."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from media.passthrough import EncodedFrame, EncodedFrameTrack, _TimestampUnwrapper, check_compatible, is_vp8_keyframe
from media.sfu import Sfu
from tests.media.conftest import CALL, Client, Renegotiations, wait_until


def subscription(sfu: Sfu, subscriber_id: str, publication_id: str) -> dict[str, Any]:
    for stats in sfu.stats(CALL)["subscriptions"]:
        if stats["subscriber_id"] == subscriber_id and stats["publication_id"] == publication_id:
            return dict(stats)
    raise AssertionError(f"{subscriber_id} is not subscribed to {publication_id}")


def test_aiortc_internals_are_still_there() -> None:
    check_compatible()


def test_rtp_timestamps_unwrap_across_the_32_bit_boundary() -> None:
    unwrapper = _TimestampUnwrapper(step=3000, first=0)
    raw = [0xFFFFF000, 0xFFFFFBB8, 0x00000770, 0x00000770 + 3000, 0x00000770 + 1500]  # wraps, then one late frame
    assert [unwrapper.map(value) for value in raw] == [0, 3000, 6000, 9000, 7500]
    unwrapper.restart()  # a new SSRC: carry on one frame later
    assert unwrapper.map(12345) == 12000


async def test_encoded_frames_are_packed_by_the_codecs_without_encoding() -> None:
    frames = [EncodedFrame("video", b"\x10\x02\x00\x9d\x01\x2a" + bytes(2000), 0, True),
              EncodedFrame("video", b"\x31" + bytes(50), 3000, False),
              EncodedFrame("video", b"\x31" + bytes(50), 0, False)]  # the publisher's count restarted
    assert [is_vp8_keyframe(frame.data) for frame in frames] == [True, False, False]
    source = iter(frames)

    async def next_frame() -> EncodedFrame:
        return next(source)

    track = EncodedFrameTrack("video", next_frame)
    encoder = Vp8Encoder()
    packed = [encoder.pack(await track.recv()) for _ in frames]
    assert [timestamp for _, timestamp in packed] == [0, 3000, 6000]  # rebased, still increasing
    assert len(packed[0][0]) == 2  # 2006 bytes: two RTP payloads
    assert b"".join(payload[4:] for payload in packed[0][0]) == frames[0].data  # 4-byte VP8 descriptors

    opus = EncodedFrame("audio", b"\xfc" + bytes(30), 960, True)

    async def next_opus() -> EncodedFrame:
        return opus

    payloads, timestamp = OpusEncoder().pack(await EncodedFrameTrack("audio", next_opus).recv())
    assert (payloads, timestamp) == ([opus.data], 960)


async def test_three_participants_each_receive_the_other_two(
        sfu_factory: Callable[..., Sfu], peers: list[Client]) -> None:
    sfu = sfu_factory()
    recorded: dict[str, int] = {}

    def sink(publication_id: str, frame: EncodedFrame) -> None:
        recorded[publication_id] = recorded.get(publication_id, 0) + 1

    sfu.add_sink(CALL, sink)
    peers.extend(Client(sfu, name, shade=shade) for name, shade in (("a", 40), ("b", 120), ("c", 200)))
    published: dict[str, tuple[str, str]] = {}
    for client in peers:
        await client.connect()
        published[client.id] = await client.publish_camera_and_microphone()
    for client in peers:
        for other, publications in published.items():
            if other != client.id:
                for publication_id in publications:
                    await sfu.subscribe(CALL, client.id, publication_id)
    await asyncio.gather(*(client.negotiate() for client in peers))

    expected = {client.id: [p for other, pubs in published.items() if other != client.id for p in pubs]
                for client in peers}

    def everyone_decodes() -> bool:
        return all(client.frames.get(p, 0) >= 10 for client in peers for p in expected[client.id])

    await wait_until(everyone_decodes, lambda: {client.id: client.frames for client in peers})
    for client in peers:
        assert sorted(client.frames) == sorted(expected[client.id])
    snapshots = {p.id: p for p in sfu.publications(CALL)}
    assert len(snapshots) == 6
    for publication in snapshots.values():
        assert publication.ssrc is not None and publication.frames_received > 0
        assert publication.subscribers == 2
        assert recorded.get(publication.id, 0) > 0  # the recorder's sink sees every publication
        if publication.kind == "video":
            assert publication.keyframes_received >= 1
    subscriptions = sfu.stats(CALL)["subscriptions"]
    assert len(subscriptions) == 12
    for stats in subscriptions:
        assert stats["forwarded"] > 0
        assert stats["queued"] <= stats["queue_size"]
        if stats["kind"] == "video":
            assert stats["keyframes_forwarded"] >= 1  # each subscriber started at a key frame


async def test_a_subscribers_keyframe_request_reaches_the_publisher(
        sfu_factory: Callable[..., Sfu], peers: list[Client]) -> None:
    sfu = sfu_factory(keyframe_interval=0.2)
    publisher, subscriber = Client(sfu, "pub"), Client(sfu, "sub")
    peers.extend([publisher, subscriber])
    await publisher.connect()
    await subscriber.connect()
    video = await sfu.publish(CALL, "pub", kind="video", source="camera")
    await sfu.subscribe(CALL, "sub", video)
    await publisher.negotiate()
    await subscriber.negotiate()
    await wait_until(lambda: subscriber.frames.get(video, 0) >= 10, lambda: subscriber.frames)

    requests_at_publisher = publisher.keyframe_requests
    before = subscription(sfu, "sub", video)
    # The subscriber reports picture loss for the stream it receives, as a browser's decoder would.
    receiver = subscriber.receiving(video).receiver
    ssrc = receiver.getSynchronizationSources()[0].source
    await receiver._send_rtcp_pli(ssrc)

    await wait_until(lambda: subscription(sfu, "sub", video)["keyframe_requests_relayed"] > before[
        "keyframe_requests_relayed"], lambda: subscription(sfu, "sub", video))
    await wait_until(lambda: publisher.keyframe_requests > requests_at_publisher,
                     lambda: (publisher.keyframe_requests, sfu.publications(CALL)))
    # the publisher's encoder made a key frame, which was forwarded (and decoded: frames keep coming)
    await wait_until(lambda: subscription(sfu, "sub", video)["keyframes_forwarded"] > before["keyframes_forwarded"],
                     lambda: subscription(sfu, "sub", video))
    decoded = subscriber.frames[video]
    await wait_until(lambda: subscriber.frames[video] >= decoded + 10, lambda: subscriber.frames)
    assert sfu.publications(CALL)[0].keyframe_requests_sent >= 1


async def test_a_participant_who_leaves_is_no_longer_forwarded(
        sfu_factory: Callable[..., Sfu], peers: list[Client], renegotiations: Renegotiations) -> None:
    sfu = sfu_factory()
    a, b, c = Client(sfu, "a"), Client(sfu, "b"), Client(sfu, "c")
    peers.extend([a, b, c])
    video: dict[str, str] = {}
    for client in peers:
        await client.connect()
        video[client.id] = await sfu.publish(CALL, client.id, kind="video", source="camera")
    for client in peers:
        for other in peers:
            if other is not client:
                await sfu.subscribe(CALL, client.id, video[other.id])
    await asyncio.gather(*(client.negotiate() for client in peers))
    await wait_until(lambda: all(client.frames.get(video[other.id], 0) >= 5
                                 for client in peers for other in peers if other is not client),
                     lambda: {client.id: client.frames for client in peers})

    await sfu.leave(CALL, "a")
    await a.pc.close()
    assert sorted(renegotiations.calls) == [(CALL, "b"), (CALL, "c")]
    assert [p.participant_id for p in sfu.publications(CALL)] == ["b", "c"]
    assert all(s["publication_id"] != video["a"] for s in sfu.stats(CALL)["subscriptions"])
    await asyncio.gather(b.negotiate(), c.negotiate())

    # a's stream ends at its subscribers ...
    await wait_until(lambda: video["a"] in b.ended and video["a"] in c.ended, lambda: (b.ended, c.ended))
    # ... while b and c keep receiving each other
    b_from_c, c_from_b = b.frames[video["c"]], c.frames[video["b"]]
    await wait_until(lambda: b.frames[video["c"]] >= b_from_c + 10 and c.frames[video["b"]] >= c_from_b + 10,
                     lambda: (b.frames, c.frames))
    assert video["b"] not in c.ended and video["c"] not in b.ended


async def test_a_stalled_subscriber_loses_frames_not_memory(
        sfu_factory: Callable[..., Sfu], peers: list[Client]) -> None:
    queue_size = 8
    sfu = sfu_factory(queue_size=queue_size)
    publisher = Client(sfu, "pub")
    # "stalled" asked for media but its network never delivers an answer: its senders never read their queues;
    # "idle" is connected but its application never reads the tracks it receives.
    stalled, idle = Client(sfu, "stalled"), Client(sfu, "idle", read_tracks=False)
    peers.extend([publisher, stalled, idle])
    for client in peers:
        await client.connect()
    video, audio = await publisher.publish_camera_and_microphone()
    for client in (stalled, idle):
        await sfu.subscribe(CALL, client.id, video)
        await sfu.subscribe(CALL, client.id, audio)
    await stalled.receive_offer()  # its answer never arrives
    await idle.negotiate()
    await publisher.negotiate()

    def overflowing(twice: bool) -> bool:
        return all(subscription(sfu, "stalled", p)["dropped"] >= (3 if twice else 1) * queue_size
                   for p in (video, audio))

    await wait_until(lambda: overflowing(False), lambda: sfu.stats(CALL))
    first = {p: subscription(sfu, "stalled", p) for p in (video, audio)}
    await wait_until(lambda: overflowing(True), lambda: sfu.stats(CALL))
    later = {p: subscription(sfu, "stalled", p) for p in (video, audio)}
    for stats in (*first.values(), *later.values()):
        assert stats["forwarded"] == 0
        assert stats["queued"] <= queue_size
        assert stats["queued_bytes"] <= queue_size * 2000
        assert stats["keyframe_requests_own"] == 0  # nobody reads: no key frames are asked for on its behalf
    assert later[audio]["queued"] == queue_size  # audio keeps the newest frames
    assert later[audio]["dropped"] > first[audio]["dropped"]
    assert later[video]["dropped"] > first[video]["dropped"]

    for publication_id in (video, audio):
        stats = subscription(sfu, "idle", publication_id)
        assert stats["forwarded"] > 0 and stats["queued"] <= queue_size


async def test_a_fresh_connection_keeps_publications_and_subscriptions(
        sfu_factory: Callable[..., Sfu], peers: list[Client]) -> None:
    sfu = sfu_factory()
    timestamps: dict[str, list[int]] = {}
    sfu.add_sink(CALL, lambda publication_id, frame: timestamps.setdefault(publication_id, []).append(frame.timestamp))
    publisher, subscriber = Client(sfu, "pub"), Client(sfu, "sub")
    peers.extend([publisher, subscriber])
    await publisher.connect()
    await subscriber.connect()
    video, audio = await publisher.publish_camera_and_microphone()
    await sfu.subscribe(CALL, "sub", video)
    await sfu.subscribe(CALL, "sub", audio)
    await publisher.negotiate()
    await subscriber.negotiate()
    await wait_until(lambda: subscriber.frames.get(video, 0) >= 5 and subscriber.frames.get(audio, 0) >= 5,
                     lambda: subscriber.frames)

    # The publisher's network changed: a new peer connection, same publications (its stream restarts).
    moved = Client(sfu, "pub", shade=220)
    peers.append(moved)
    await publisher.pc.close()
    await sfu.connect(CALL, "pub")
    await moved.negotiate()
    assert {slot["publication_id"] for slot in moved.mids.values()} == {video, audio}
    frames = dict(subscriber.frames)
    await wait_until(lambda: all(subscriber.frames[p] >= frames[p] + 10 for p in (video, audio)),
                     lambda: (subscriber.frames, sfu.stats(CALL)))

    # Then the subscriber's: it receives both again on its new connection.
    again = Client(sfu, "sub")
    peers.append(again)
    await subscriber.pc.close()
    await sfu.connect(CALL, "sub")
    await again.negotiate()
    await wait_until(lambda: again.frames.get(video, 0) >= 10 and again.frames.get(audio, 0) >= 10,
                     lambda: (again.frames, sfu.stats(CALL)))
    assert [p.id for p in sfu.publications(CALL)] == [video, audio]
    for publication_id in (video, audio):  # the recorder's timeline went on across the publisher's reconnection
        seen = timestamps[publication_id]
        assert seen[0] == 0 and all(a < b for a, b in itertools.pairwise(seen))


async def test_host_mute_unsubscribe_and_draining(
        sfu_factory: Callable[..., Sfu], peers: list[Client]) -> None:
    sfu = sfu_factory()
    recorded: list[str] = []
    remove_sink = sfu.add_sink(CALL, lambda publication_id, frame: recorded.append(publication_id))
    publisher, subscriber = Client(sfu, "pub"), Client(sfu, "sub")
    peers.extend([publisher, subscriber])
    await publisher.connect()
    await subscriber.connect()
    video, audio = await publisher.publish_camera_and_microphone()
    await sfu.subscribe(CALL, "sub", video)  # nobody subscribes to the audio
    await publisher.negotiate()
    await subscriber.negotiate()
    await wait_until(lambda: subscriber.frames.get(video, 0) >= 5, lambda: subscriber.frames)

    def publication(publication_id: str) -> Any:
        return next(p for p in sfu.publications(CALL) if p.id == publication_id)

    # The unread audio is drained from the start: received, never decoded, nothing waits in its remote track.
    await wait_until(lambda: publication(audio).frames_received >= 20, lambda: sfu.publications(CALL))
    server_transceiver = sfu._calls[CALL].publications[audio].transceiver
    assert server_transceiver is not None
    remote_track: Any = server_transceiver.receiver.track
    assert remote_track._queue.qsize() == 0

    # Host mute: the stream is still received, but neither forwarded nor recorded.
    sfu.set_forwarding(CALL, video, False)
    muted = subscription(sfu, "sub", video)
    received, recorded_before = publication(video).frames_received, recorded.count(video)
    await wait_until(lambda: publication(video).frames_received >= received + 15, lambda: sfu.publications(CALL))
    assert subscription(sfu, "sub", video)["forwarded"] <= muted["forwarded"] + muted["queued"]
    assert recorded.count(video) == recorded_before
    assert not publication(video).forwarding
    # Unmuted, the subscriber resumes at a key frame the server asked for.
    sfu.set_forwarding(CALL, video, True)
    await wait_until(lambda: subscription(sfu, "sub", video)["keyframes_forwarded"] > muted["keyframes_forwarded"],
                     lambda: (subscription(sfu, "sub", video), sfu.publications(CALL)))
    decoded = subscriber.frames[video]
    await wait_until(lambda: subscriber.frames[video] >= decoded + 5, lambda: subscriber.frames)
    assert recorded.count(video) > recorded_before

    remove_sink()
    await sfu.unsubscribe(CALL, "sub", video)
    assert sfu.stats(CALL)["subscriptions"] == []
    await subscriber.negotiate()
    assert [slot["role"] for slot in subscriber.mids.values()] == ["unused"]
    await wait_until(lambda: video in subscriber.ended, lambda: subscriber.ended)
