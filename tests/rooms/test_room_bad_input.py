"""Bad input on chat events gets an error ack in the standard shape and changes nothing; a flooding device is
stopped without slowing anyone else down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import Muster, make_settings, running_muster
from tests.rooms.conftest import make_room, new_client, send


@pytest.mark.parametrize(
    ("event", "payload", "code"),
    [
        ("message.send", {"client_id": "a", "text": "x" * 4001}, "message.too_long"),
        ("message.send", {"client_id": "a", "text": "x" * 20001}, "request.invalid"),
        ("message.send", {"client_id": "a", "text": "   "}, "message.empty"),
        ("message.send", {"client_id": "中文", "text": "x"}, "request.invalid"),
        ("message.send", {"client_id": "a", "text": 5}, "request.invalid"),
        ("message.send", {"client_id": "a", "text": "x", "extra": True}, "request.invalid"),
        ("message.send", {"client_id": "a", "text": "x", "mentions": ["u"] * 101}, "request.invalid"),
        ("message.send", {"client_id": "a", "text": "x", "attachments": [{"file_id": "f1"}]},
         "message.bad_attachment"),
        ("room.history", {"after_seq": -1}, "request.invalid"),
        ("room.history", {"after_seq": 999}, "room.bad_seq"),
        ("room.history", {"after_seq": 1, "before_seq": 3}, "request.invalid"),
        ("room.history", {"limit": 0}, "request.invalid"),
        ("room.history", {"limit": 100000}, "request.invalid"),
        ("room.read", {"seq": "1"}, "request.invalid"),
        ("room.update", {"name": ""}, "request.invalid"),
        ("room.update", {"topic": "t" * 1001}, "request.invalid"),
        ("typing", {"typing": "yes"}, "request.invalid"),
    ],
)
async def test_bad_chat_payloads(muster: Muster, event: str, payload: dict[str, object], code: str) -> None:
    a = await new_client(muster, "commander")
    room = await make_room(a)
    before = (await muster.kernel.storage.get_room(room)).last_seq  # type: ignore[union-attr]
    ack = await a.call(event, {"room_id": room, **payload})
    assert set(ack) == {"error"} and ack["error"]["code"] == code, ack
    assert isinstance(ack["error"]["message"], str)
    assert (await muster.kernel.storage.get_room(room)).last_seq == before  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [None, [], "text", 5, {"rooms": {"r": -1}}, {"rooms": ["r"]},
                                     {"rooms": {"x" * 65: 1}}])
async def test_bad_sync_payloads(muster: Muster, payload: object) -> None:
    a = await new_client(muster)
    ack = await a.sio.call("sync", payload, timeout=5)
    assert ack["error"]["code"] == "request.invalid"


async def test_a_flooding_device_is_limited_and_others_are_not(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, gateway={"events_per_second": 5.0, "event_burst": 10})
    async with running_muster(settings) as muster:
        flooder = await new_client(muster, "commander")
        calm = await new_client(muster)
        room = await make_room(flooder, calm)
        answers = [await flooder.call("message.send", {"room_id": room, "client_id": f"f{i}", "text": "刷屏"})
                   for i in range(40)]
        limited = [a for a in answers if "error" in a]
        assert limited and all(a["error"]["code"] == "rate_limited" for a in limited)
        assert sum("data" in a for a in answers) <= 12  # the burst, plus what refilled meanwhile
        # someone else in the same room is not slowed down
        event = await send(calm, room, "我这边正常")
        assert event["seq"] > 0
        stored = [e for e in await muster.kernel.storage.list_events(room, limit=100) if e.kind == "message"]
        assert len(stored) == sum("data" in a for a in answers) + 1
