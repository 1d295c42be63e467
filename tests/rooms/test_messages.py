"""Messages over a real port: delivery to every device, ordering, idempotent resends, sync after a gap,
edits, recalls, pins, read positions, typing, mentions and search."""

from __future__ import annotations

import asyncio

from tests.factories import Muster
from tests.rooms.conftest import connect, make_room, new_client, send, until


async def test_two_devices_of_one_user_both_receive_and_share_the_read_position(muster: Muster) -> None:
    commander = await new_client(muster, "commander")
    user = await muster.create_user()
    console = await connect(muster, await muster.login(user["username"], device_kind="console"))
    phone = await connect(muster, await muster.login(user["username"], device_kind="mobile"))
    room = await make_room(commander, console)
    await until(lambda: phone.got("room.joined") and console.got("room.joined"), what="both devices told")
    event = await send(commander, room, "请立即到东沟水库集合")
    for device in (console, phone):
        await until(lambda d=device: any(e["id"] == event["id"] for e in d.room_events(room)), what="delivery")
    # exactly once per device
    assert [e["seq"] for e in phone.room_events(room) if e["kind"] == "message"] == [event["seq"]]

    read = await console.ok("room.read", {"room_id": room, "seq": event["seq"]})
    assert read == {"room_id": room, "read_seq": event["seq"]}
    await until(lambda: {"room_id": room, "read_seq": event["seq"]} in phone.got("room.read"), what="phone told")
    rooms = (await phone.ok("room.list"))["rooms"]
    mine = next(r for r in rooms if r["room"]["id"] == room)
    assert mine["membership"]["read_seq"] == event["seq"] and mine["unread"] == 0
    # the read position never moves back
    assert (await phone.ok("room.read", {"room_id": room, "seq": 1}))["read_seq"] == event["seq"]


async def test_resend_with_the_same_client_id_returns_the_same_message(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    room = await make_room(a, b)
    first = await a.ok("message.send", {"room_id": room, "client_id": "phone-42", "text": "收到请回复"})
    again = await a.ok("message.send", {"room_id": room, "client_id": "phone-42", "text": "收到请回复"})
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["event"]["id"] == first["event"]["id"] and again["event"]["seq"] == first["event"]["seq"]
    # over HTTP too, with the same idempotency
    status, body = await muster.request("POST", f"/api/rooms/{room}/messages", a.session,
                                        json={"client_id": "phone-42", "text": "收到请回复"})
    assert status == 200 and body["duplicate"] is True and body["event"]["seq"] == first["event"]["seq"]
    await asyncio.sleep(0.2)
    assert [e["seq"] for e in b.room_events(room) if e["kind"] == "message"] == [first["event"]["seq"]]
    events, _ = await muster.kernel.storage.list_events(room, limit=100), None
    assert [e.client_id for e in events if e.kind == "message"] == ["phone-42"]


async def test_a_client_that_misses_500_messages_gets_all_of_them_in_order(muster: Muster) -> None:
    sender = await new_client(muster, "commander")
    user = await muster.create_user()
    session = await muster.login(user["username"], device_kind="mobile")
    phone = await connect(muster, session)
    room = await make_room(sender, phone)
    await until(lambda: phone.got("room.joined"), what="joined")
    first = await send(sender, room, "第一条")
    await until(lambda: any(e["id"] == first["id"] for e in phone.room_events(room)), what="first delivered")
    last_seen = max(e["seq"] for e in phone.room_events(room))
    await phone.sio.disconnect()  # the phone drops off the network

    sent = [await send(sender, room, f"消息 {i}", client_id=f"m{i}") for i in range(500)]
    # edits, recalls and pins happen while the phone is away: they are events in the same sequence
    await sender.ok("message.edit", {"room_id": room, "message_id": sent[10]["id"], "text": "消息 10（已更正）"})
    await sender.ok("message.recall", {"room_id": room, "message_id": sent[11]["id"]})
    await sender.ok("message.pin", {"room_id": room, "message_id": sent[12]["id"]})
    third = await muster.create_user()
    await sender.ok("room.invite", {"room_id": room, "user_ids": [third["id"]]})

    phone = await connect(muster, session)  # reconnects
    got = []
    known = last_seen
    while True:
        result = await phone.ok("sync", {"rooms": {room: known}, "limit": 100})
        (entry,) = [r for r in result["rooms"] if r["room"]["id"] == room]
        got += entry["events"]
        if entry["events"]:
            known = entry["events"][-1]["seq"]
        if not entry["has_more"]:
            break
    seqs = [e["seq"] for e in got]
    assert seqs == list(range(last_seen + 1, last_seen + 1 + len(seqs)))  # in order, no holes
    assert len(seqs) == len(set(seqs)) == 500 + 4  # 500 messages, edit, recall, pin, member
    messages = [e for e in got if e["kind"] == "message"]
    assert [e["client_id"] for e in messages] == [f"m{i}" for i in range(500)]
    assert messages[10]["body"]["text"] == "消息 10（已更正）" and messages[10]["edited_at"]
    assert messages[11]["recalled_at"] and messages[11]["body"] == {}
    assert messages[12]["pinned"] is True
    assert [e["kind"] for e in got[-4:]] == ["edit", "recall", "pin", "member"]
    assert entry["unread"] == 500 + 1  # everything since it never read, the first one included


async def test_sync_reports_unknown_rooms_newest_first_page_and_rooms_left(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    kept = await make_room(a, b, name="保留")
    gone = await make_room(a, b, name="离开")
    for i in range(30):
        await send(a, kept, f"m{i}", client_id=f"k{i}")
    await b.ok("room.leave", {"room_id": gone})
    result = await b.ok("sync", {"rooms": {gone: 1}, "limit": 10})
    assert result["left"] == [gone]
    (entry,) = result["rooms"]
    assert entry["room"]["id"] == kept and entry["has_more"] is True
    assert [e["seq"] for e in entry["events"]] == list(range(22, 32))  # the newest page
    page = await b.ok("room.history", {"room_id": kept, "before_seq": 22, "limit": 100})
    assert [e["seq"] for e in page["events"]] == list(range(1, 22)) and page["has_more"] is False


async def test_history_pages_both_ways(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    room = await make_room(a)
    for i in range(25):
        await send(a, room, f"m{i}", client_id=f"h{i}")
    forward = await a.ok("room.history", {"room_id": room, "after_seq": 0, "limit": 10})
    assert [e["seq"] for e in forward["events"]] == list(range(1, 11)) and forward["has_more"]
    back = await a.ok("room.history", {"room_id": room, "before_seq": 11, "limit": 5})
    assert [e["seq"] for e in back["events"]] == list(range(6, 11)) and back["has_more"]
    tail = await a.ok("room.history", {"room_id": room, "after_seq": 20, "limit": 10})
    assert [e["seq"] for e in tail["events"]] == list(range(21, 27)) and not tail["has_more"]
    status, page = await muster.request("GET", f"/api/rooms/{room}/events?before_seq=3", a.session)
    assert status == 200 and [e["seq"] for e in page["events"]] == [1, 2] and page["has_more"] is False


async def test_edit_recall_and_pin(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    room = await make_room(a, b)
    message = await send(a, room, "水位 3.2 米")
    edit = (await a.ok("message.edit", {"room_id": room, "message_id": message["id"], "text": "水位 3.4 米"}))["event"]
    assert edit["kind"] == "edit" and edit["target_id"] == message["id"] and edit["body"]["text"] == "水位 3.4 米"
    # only the sender edits or recalls
    ack = await b.call("message.edit", {"room_id": room, "message_id": message["id"], "text": "改"})
    assert ack["error"]["code"] == "message.not_sender"
    ack = await b.call("message.recall", {"room_id": room, "message_id": message["id"]})
    assert ack["error"]["code"] == "message.not_sender"
    # only room admins pin
    ack = await b.call("message.pin", {"room_id": room, "message_id": message["id"]})
    assert ack["error"]["code"] == "room.forbidden"
    pin = (await a.ok("message.pin", {"room_id": room, "message_id": message["id"]}))["event"]
    assert pin["kind"] == "pin"
    stored = await muster.kernel.storage.get_event(room, message["id"])
    assert stored is not None and stored.pinned and stored.body["text"] == "水位 3.4 米"
    recall = (await a.ok("message.recall", {"room_id": room, "message_id": message["id"]}))["event"]
    assert recall["kind"] == "recall" and recall["target_id"] == message["id"]
    await until(lambda: [e["kind"] for e in b.room_events(room)][-4:] == ["message", "edit", "pin", "recall"],
                what="b saw every change in order")
    # the original is gone from history and search, and kept in the audit log
    history = (await b.ok("room.history", {"room_id": room, "after_seq": 0}))["events"]
    original = next(e for e in history if e["id"] == message["id"])
    assert original["body"] == {} and original["recalled_at"]
    assert "3.2" not in str(history) and "3.4" not in str([e for e in history if e["kind"] == "message"])
    assert (await b.ok("search", {"query": "水位"}))["events"] == []
    records = await muster.kernel.storage.list_audit_records(chain=f"room:{room}")
    by_action = {r.action: r for r in records}
    assert by_action["message.edit"].details["original"] == "水位 3.2 米"
    assert by_action["message.recall"].details["original"]["text"] == "水位 3.4 米"
    ack = await a.call("message.edit", {"room_id": room, "message_id": message["id"], "text": "again"})
    assert ack["error"]["code"] == "message.recalled"


async def test_edit_and_recall_windows(tmp_path: object) -> None:
    from tests.factories import make_settings, running_muster

    settings = make_settings(tmp_path, rooms={"edit_window": 0, "recall_window": 0})  # type: ignore[arg-type]
    async with running_muster(settings) as muster:
        a = await new_client(muster, "commander")
        room = await make_room(a)
        message = await send(a, room, "过期")
        await asyncio.sleep(0.01)
        for event in ("message.edit", "message.recall"):
            ack = await a.call(event, {"room_id": room, "message_id": message["id"], "text": "x"} if event ==
                               "message.edit" else {"room_id": room, "message_id": message["id"]})
            assert ack["error"]["code"] == "message.window_passed"


async def test_typing_reaches_others_not_the_typist(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    room = await make_room(a, b)
    await a.ok("typing", {"room_id": room, "typing": True})
    await until(lambda: b.got("typing"), what="b sees typing")
    assert b.got("typing") == [{"room_id": room, "user_id": a.user_id, "typing": True}]
    await asyncio.sleep(0.1)
    assert a.got("typing") == []


async def test_mentions_replies_and_all(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    c = await new_client(muster)
    room = await make_room(a, b, c)
    first = await send(a, room, "现场情况如何")
    reply = await send(a, room, "@王磊 请回复", mentions=[b.user_id], reply_to=first["id"])
    assert reply["body"]["mentions"] == [b.user_id] and reply["body"]["reply_to"] == first["id"]
    await until(lambda: b.got("mention"), what="b is told of the mention")
    assert b.got("mention")[0]["event_id"] == reply["id"] and c.got("mention") == []
    everyone = await send(a, room, "@所有人 注意", mention_all=True)
    assert everyone["body"]["mention_all"] is True
    outsider = await muster.create_user()
    ack = await a.call("message.send", {"room_id": room, "client_id": "x1", "text": "hi", "mentions": [outsider["id"]]})
    assert ack["error"]["code"] == "message.bad_mention"
    ack = await a.call("message.send", {"room_id": room, "client_id": "x2", "text": "hi", "reply_to": "nope"})
    assert ack["error"]["code"] == "message.bad_reply"


async def test_search_finds_chinese_and_latin_in_my_rooms_only(muster: Muster) -> None:
    a = await new_client(muster, "commander")
    b = await new_client(muster)
    outsider = await new_client(muster)
    room = await make_room(a, b, name="防汛")
    other = await make_room(outsider, name="别的群")
    await send(a, room, "东沟水库大坝出现渗漏，请水利局立即核查")
    await send(a, room, "Route G105 closed near km 37")
    await send(outsider, other, "水库渗漏是别人的事")
    found = (await b.ok("search", {"query": "水库渗漏"}))["events"]
    assert found == []  # 水库 and 渗漏 are both there, but not 库渗: every bigram of the query must match
    found = (await b.ok("search", {"query": "大坝 渗漏"}))["events"]
    assert [e["body"]["text"] for e in found] == ["东沟水库大坝出现渗漏，请水利局立即核查"]
    found = (await b.ok("search", {"query": "g105"}))["events"]
    assert len(found) == 1 and found[0]["room_id"] == room
    assert (await outsider.ok("search", {"query": "大坝"}))["events"] == []
    status, body = await muster.request("GET", "/api/search?q=%E6%B0%B4%E5%88%A9%E5%B1%80", b.session)
    assert status == 200 and len(body["events"]) == 1
    ack = await b.call("search", {"query": "!!!"})
    assert ack["error"]["code"] == "search.empty"
    ack = await outsider.call("search", {"query": "大坝", "room_id": room})
    assert ack["error"]["code"] == "room.not_member"


async def test_system_messages_from_muster_are_delivered_and_searchable(muster: Muster) -> None:
    from rooms.views import ROOMS

    a = await new_client(muster, "commander")
    b = await new_client(muster)
    room = await make_room(a, b)
    event = await muster.app[ROOMS].post_system_message(room, "任务已交办：水利局核查大坝", {"task_id": "t1"})
    assert event.kind == "system" and event.sender_id is None
    await until(lambda: any(e["id"] == event.id for e in b.room_events(room)), what="delivered")
    found = (await b.ok("search", {"query": "交办"}))["events"]
    assert [e["id"] for e in found] == [event.id]
    assert (await b.ok("room.list"))["rooms"][0]["unread"] == 1
