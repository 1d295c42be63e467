"""The room, membership and event contract for every storage backend (see conftest)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from server.ids import new_id
from server.storage.ports import Storage, StorageConflict
from server.storage.records import Membership, MessageAck, Room, RoomEvent


def make_room(**kw: object) -> Room:
    base = dict(
        id=new_id(),
        kind="group",
        name="抗洪指挥",
        topic="",
        archived=False,
        created_by="u1",
        created_at=1000,
        updated_at=1000,
    )
    base.update(kw)
    return Room(**base)  # type: ignore[arg-type]


def member(room: Room, user_id: str, **kw: object) -> Membership:
    base = dict(room_id=room.id, user_id=user_id, role="member", joined_at=1000)
    base.update(kw)
    return Membership(**base)  # type: ignore[arg-type]


def make_event(room: Room, **kw: object) -> RoomEvent:
    base = dict(
        id=new_id(),
        room_id=room.id,
        seq=0,
        kind="message",
        sender_id="u1",
        device_id="d1",
        client_id=None,
        created_at=2000,
        body={"text": "水库水位上涨", "mentions": ["u2"]},
    )
    base.update(kw)
    return RoomEvent(**base)  # type: ignore[arg-type]


async def new_room(storage: Storage, *users: str, **kw: object) -> Room:
    room = make_room(**kw)
    await storage.create_room(room, [member(room, user) for user in users])
    return room


async def append(storage: Storage, room: Room, *, tokens: list[str] | None = None, **kw: object) -> RoomEvent:
    event, created = await storage.append_event(make_event(room, **kw), search_tokens=tokens)
    assert created
    return event


# -- rooms ---------------------------------------------------------------------------------------


async def test_room_created_with_its_members(storage: Storage) -> None:
    room = make_room(kind="incident", case_type="incident", case_id="i1", topic="水库险情")
    owner = member(room, "u1", role="owner", joined_at=5)
    others = [member(room, "u3", joined_at=7), member(room, "u2", joined_at=7)]
    await storage.create_room(room, [owner, *others])
    assert await storage.get_room(room.id) == room
    assert await storage.get_room("nope") is None
    assert await storage.get_member(room.id, "u1") == owner
    assert await storage.get_member(room.id, "u9") is None
    # by joined_at, then user id
    assert [m.user_id for m in await storage.list_members(room.id)] == ["u1", "u2", "u3"]
    with pytest.raises(StorageConflict):
        await storage.create_room(replace(room, name="again"), [])
    assert (await storage.get_room(room.id)) == room


async def test_room_members_must_belong_to_it_and_be_distinct(storage: Storage) -> None:
    room, other = make_room(), make_room()
    with pytest.raises(ValueError):
        await storage.create_room(room, [member(room, "u1"), member(other, "u2")])
    with pytest.raises(ValueError):
        await storage.create_room(room, [member(room, "u1"), member(room, "u1", role="admin")])
    assert await storage.get_room(room.id) is None
    await storage.create_room(room, [])
    assert await storage.list_members(room.id) == []


async def test_direct_key_is_unique_and_optional(storage: Storage) -> None:
    plain = [await new_room(storage, "u1") for _ in range(3)]  # no direct_key: never collide
    direct = await new_room(storage, "a", "b", kind="direct", direct_key="a|b")
    assert await storage.find_direct_room("a|b") == direct
    assert await storage.find_direct_room("a|c") is None
    clash = make_room(kind="direct", direct_key="a|b")
    with pytest.raises(StorageConflict):
        await storage.create_room(clash, [member(clash, "a"), member(clash, "b")])
    assert await storage.get_room(clash.id) is None
    assert await storage.get_member(clash.id, "a") is None
    assert await storage.find_direct_room("a|b") == direct
    assert [await storage.get_room(room.id) for room in plain] == plain


async def test_find_rooms_by_department_or_case(storage: Storage) -> None:
    water = await new_room(storage, kind="department", department_id="water", created_at=1)
    water2 = await new_room(storage, kind="department", department_id="water", created_at=2, archived=True)
    await new_room(storage, kind="department", department_id="fire", created_at=3)
    incident = await new_room(storage, kind="incident", case_type="incident", case_id="i1", created_at=4)
    project = await new_room(storage, kind="project", case_type="project", case_id="i1", created_at=5)
    linked = await new_room(
        storage, kind="group", department_id="water", case_type="incident", case_id="i1", created_at=6
    )
    assert await storage.find_rooms(department_id="water") == [water, water2, linked]
    assert await storage.find_rooms(case_type="incident", case_id="i1") == [incident, linked]
    assert await storage.find_rooms(case_id="i1") == [incident, project, linked]
    assert await storage.find_rooms(department_id="water", case_type="incident") == [linked]
    assert await storage.find_rooms(department_id="nobody") == []
    assert len(await storage.find_rooms()) == 6


async def test_update_room_changes_only_its_own_fields(storage: Storage) -> None:
    room = await new_room(storage, "u1", department_id="water", direct_key=None)
    await append(storage, room)
    await append(storage, room)
    changed = replace(
        room,
        name="新名称",
        topic="话题",
        archived=True,
        updated_at=5000,
        last_seq=99,
        department_id="fire",
        kind="incident",
        created_at=1,
    )
    assert await storage.update_room(changed) is True
    stored = await storage.get_room(room.id)
    assert stored == replace(room, name="新名称", topic="话题", archived=True, updated_at=5000, last_seq=2)
    assert await storage.update_room(make_room()) is False
    assert (await append(storage, room)).seq == 3


# -- memberships ------------------------------------------------------------------------------------


async def test_membership_add_remove_and_role(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    joined = member(room, "u2", role="admin", joined_at=3000, read_seq=0)
    assert await storage.add_member(joined) is True
    assert await storage.add_member(replace(joined, role="member", joined_at=4000)) is False
    assert await storage.get_member(room.id, "u2") == joined
    with pytest.raises(LookupError):
        await storage.add_member(member(make_room(), "u2"))

    assert await storage.set_member_role(room.id, "u2", "owner") is True
    assert await storage.set_member_role(room.id, "u2", "owner") is True  # already so: still a member
    assert await storage.set_member_role(room.id, "u9", "owner") is False
    assert await storage.set_member_role("nope", "u2", "owner") is False
    assert (await storage.get_member(room.id, "u2")) == replace(joined, role="owner")

    assert [m.user_id for m in await storage.list_members(room.id)] == ["u1", "u2"]
    assert await storage.remove_member(room.id, "u2") is True
    assert await storage.remove_member(room.id, "u2") is False
    assert await storage.get_member(room.id, "u2") is None
    assert [m.user_id for m in await storage.list_members(room.id)] == ["u1"]
    assert await storage.add_member(joined) is True  # rejoining works


async def test_room_and_membership_read_together(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    joined = member(room, "u2", role="admin", joined_at=3000, read_seq=0)
    await storage.add_member(joined)
    await append(storage, room)
    assert await storage.mark_read(room.id, "u2", 1) == 1
    current = await storage.get_room(room.id)
    assert current is not None and current.last_seq == 1
    assert await storage.get_room_member(room.id, "u2") == (current, replace(joined, read_seq=1))
    assert await storage.get_room_member(room.id, "u1") == (current, await storage.get_member(room.id, "u1"))
    assert await storage.get_room_member(room.id, "u9") == (current, None)
    assert await storage.get_room_member("nope", "u2") == (None, None)
    await storage.remove_member(room.id, "u2")
    assert await storage.get_room_member(room.id, "u2") == (current, None)


async def test_list_user_rooms_with_membership(storage: Storage) -> None:
    rooms = [await new_room(storage, "u1", "u2") for _ in range(3)]
    await new_room(storage, "u2")
    alone = await new_room(storage, "u1")
    await storage.remove_member(rooms[1].id, "u1")
    await storage.set_member_role(rooms[2].id, "u1", "admin")
    await append(storage, rooms[0])
    await storage.mark_read(rooms[0].id, "u1", 1)

    listed = await storage.list_user_rooms("u1")
    expected_rooms = sorted([rooms[0], rooms[2], alone], key=lambda r: r.id)
    assert [room.id for room, _ in listed] == [room.id for room in expected_rooms]
    by_id = {room.id: (room, m) for room, m in listed}
    assert by_id[rooms[0].id] == (replace(rooms[0], last_seq=1), member(rooms[0], "u1", read_seq=1))
    assert by_id[rooms[2].id][1].role == "admin"
    assert await storage.list_user_rooms("nobody") == []


async def test_mark_read_moves_forward_only_and_never_past_last_seq(storage: Storage) -> None:
    room = await new_room(storage, "u1", "u2")
    assert await storage.mark_read(room.id, "u1", 5) == 0  # nothing sent yet
    for _ in range(3):
        await append(storage, room)
    assert await storage.mark_read(room.id, "u1", 2) == 2
    assert await storage.mark_read(room.id, "u1", 1) == 2
    assert await storage.mark_read(room.id, "u1", -4) == 2
    assert await storage.mark_read(room.id, "u1", 10) == 3
    member_now = await storage.get_member(room.id, "u1")
    assert member_now is not None and member_now.read_seq == 3
    assert (await storage.get_member(room.id, "u2")) == member(room, "u2")
    assert await storage.mark_read(room.id, "stranger", 2) == 0
    assert await storage.mark_read("nope", "u1", 2) == 0


# -- events -------------------------------------------------------------------------------------------


async def test_append_event_numbers_events_in_order(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    other = await new_room(storage, "u1")
    first = make_event(room, seq=99, body={"text": "第一条", "reply_to": None, "n": [1, {"a": True}]})
    stored, created = await storage.append_event(first)
    assert created and stored == replace(first, seq=1)
    assert await storage.get_event(room.id, first.id) == stored
    assert await storage.get_event(other.id, first.id) is None  # not in that room
    assert await storage.get_event(room.id, "nope") is None
    system = await append(storage, room, kind="system", sender_id=None, device_id=None, body={"text": "已归档"})
    edit = await append(storage, room, kind="edit", target_id=first.id, body={"text": "改"})
    assert (system.seq, edit.seq) == (2, 3)
    assert (await append(storage, other)).seq == 1  # each room counts on its own
    assert (await storage.get_room(room.id)) == replace(room, last_seq=3)
    assert await storage.get_event(room.id, edit.id) == edit
    with pytest.raises(LookupError):
        await storage.append_event(make_event(make_room()))
    with pytest.raises(StorageConflict):  # an event id is used once
        await storage.append_event(make_event(other, id=first.id))
    assert await storage.get_event(other.id, first.id) is None
    after_failure = (await append(storage, other)).seq
    if storage.name == "sqlite":
        assert after_failure == 2  # the failed append used no seq
    else:
        assert after_failure > 1  # on MongoDB its seq may stay unused (see mongo/events.py)


async def test_concurrent_appends_get_strictly_increasing_seqs_without_gaps(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    events = [make_event(room, client_id=f"c{i}", sender_id=f"u{i % 7}") for i in range(200)]
    results = await asyncio.gather(*(storage.append_event(event) for event in events))
    assert all(created for _, created in results)
    assert sorted(event.seq for event, _ in results) == list(range(1, 201))
    listed = await storage.list_events(room.id, after_seq=0, limit=500)
    assert [event.seq for event in listed] == list(range(1, 201))
    assert {event.id for event in listed} == {event.id for event in events}
    assert (await storage.get_room(room.id)) == replace(room, last_seq=200)


async def test_a_failing_append_among_concurrent_ones_fails_alone(storage: Storage) -> None:
    # Appends that arrive together may share one transaction (SQLite's group commit): an unknown
    # room or a reused id fails that append only, and its neighbours are stored and numbered.
    rooms = [await new_room(storage, "u1") for _ in range(3)]
    taken = await append(storage, rooms[0])
    calls = [make_event(rooms[i % 3], client_id=f"c{i}", body={"n": i}) for i in range(30)]
    calls.insert(7, make_event(make_room()))  # no such room
    calls.insert(15, make_event(rooms[1], id=taken.id))  # an event id already used
    results = await asyncio.gather(*(storage.append_event(event, search_tokens=["水位"]) for event in calls),
                                   return_exceptions=True)
    assert isinstance(results[7], LookupError)
    assert isinstance(results[15], StorageConflict)
    stored = [r for i, r in enumerate(results) if i not in (7, 15)]
    assert all(isinstance(r, tuple) and r[1] for r in stored), results
    for index, room in enumerate(rooms):
        listed = await storage.list_events(room.id, after_seq=0, limit=100)
        seqs = [event.seq for event in listed]
        assert len(seqs) == (11 if index == 0 else 10)
        if storage.name == "sqlite":
            assert seqs == list(range(1, len(seqs) + 1))  # the failed append used no seq
        else:
            assert seqs == sorted(set(seqs))  # MongoDB may leave its seq unused (see mongo/events.py)
    assert len(await storage.search_messages([r.id for r in rooms], ["水位"])) == 30
    assert await storage.get_event(rooms[1].id, taken.id) is None


async def test_resend_with_the_same_client_id_is_idempotent(storage: Storage) -> None:
    room = await new_room(storage, "u1", "u2")
    other = await new_room(storage, "u1")
    first, created = await storage.append_event(make_event(room, client_id="c-1"))
    assert created and first.seq == 1
    again, created = await storage.append_event(make_event(room, client_id="c-1", body={"text": "resent"}))
    assert created is False and again == first
    # no seq was used by the resend
    assert (await storage.get_room(room.id)) == replace(room, last_seq=1)
    # the same client id from someone else, or in another room, is a new event
    assert (await storage.append_event(make_event(room, client_id="c-1", sender_id="u2")))[0].seq == 2
    assert (await storage.append_event(make_event(other, client_id="c-1")))[0].seq == 1
    # events without a sender are deduplicated alike
    system = make_event(room, kind="system", sender_id=None, device_id=None, client_id="c-1")
    assert (await storage.append_event(system))[0].seq == 3
    assert await storage.append_event(replace(system, id=new_id())) == (replace(system, seq=3), False)
    # events without a client id are never deduplicated
    assert (await append(storage, room)).seq == 4
    assert (await append(storage, room)).seq == 5


async def test_concurrent_resends_store_one_event(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    copies = [make_event(room, client_id="c-x", body={"copy": i}) for i in range(20)]
    results = await asyncio.gather(*(storage.append_event(event) for event in copies))
    assert [created for _, created in results].count(True) == 1
    assert len({event.id for event, _ in results}) == 1
    assert len({event.seq for event, _ in results}) == 1
    assert len(await storage.list_events(room.id)) == 1
    last_seq = (await storage.get_room(room.id)).last_seq  # type: ignore[union-attr]
    if storage.name == "sqlite":
        assert last_seq == 1  # no gaps on SQLite
    else:
        assert last_seq >= 1  # MongoDB may leave a gap when resends race (see mongo/events.py)
    assert (await append(storage, room)).seq == last_seq + 1


async def test_list_events_pages_forwards_and_backwards(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    for _ in range(10):
        await append(storage, room)
    await append(storage, await new_room(storage, "u1"))  # another room's event is never listed

    async def seqs(**kw: int) -> list[int]:
        return [event.seq for event in await storage.list_events(room.id, **kw)]

    assert await seqs() == list(range(1, 11))
    assert await seqs(limit=3) == [8, 9, 10]
    assert await seqs(after_seq=3, limit=4) == [4, 5, 6, 7]
    assert await seqs(after_seq=0, limit=2) == [1, 2]
    assert await seqs(after_seq=10) == []
    assert await seqs(before_seq=4, limit=10) == [1, 2, 3]
    assert await seqs(before_seq=8, limit=2) == [6, 7]
    assert await seqs(before_seq=1) == []
    assert await seqs(after_seq=2, before_seq=6, limit=10) == [3, 4, 5]
    assert await seqs(after_seq=2, before_seq=9, limit=2) == [3, 4]
    assert await seqs(limit=0) == []
    assert await storage.list_events("nope") == []


async def test_update_message_changes_its_state(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    message = await append(storage, room)
    system = await append(storage, room, kind="system", sender_id=None)
    pin_event = await append(storage, room, kind="pin", target_id=message.id, body={})

    new_body = {"text": "水库水位已回落", "mentions": []}
    assert await storage.update_message(room.id, message.id, body=new_body, edited_at=3000) is True
    assert await storage.get_event(room.id, message.id) == replace(message, body=new_body, edited_at=3000)
    assert await storage.update_message(room.id, message.id, pinned=True) is True
    assert await storage.update_message(room.id, message.id, recalled_at=4000, body={}) is True
    expected = replace(message, body={}, edited_at=3000, recalled_at=4000, pinned=True)
    assert await storage.get_event(room.id, message.id) == expected
    assert await storage.update_message(room.id, message.id, pinned=False) is True
    assert await storage.get_event(room.id, message.id) == replace(expected, pinned=False)
    assert await storage.update_message(room.id, message.id) is True  # nothing to change, but it exists

    assert await storage.update_message(room.id, system.id, pinned=True) is True  # system events are messages
    assert await storage.update_message(room.id, pin_event.id, pinned=True) is False  # not a message
    assert await storage.get_event(room.id, pin_event.id) == pin_event
    assert await storage.update_message(room.id, "nope", pinned=True) is False
    assert await storage.update_message("nope", message.id, pinned=True) is False
    assert await storage.update_message(room.id, "nope") is False
    assert (await storage.get_room(room.id)) == replace(room, last_seq=3)  # state changes take no seq


async def test_count_unread_messages_from_others(storage: Storage) -> None:
    room = await new_room(storage, "me", "you")
    await append(storage, room, sender_id="you")  # 1
    await append(storage, room, sender_id="me")  # 2: my own
    await append(storage, room, kind="system", sender_id=None)  # 3
    await append(storage, room, kind="edit", sender_id="you", target_id="x")  # 4: not a message
    await append(storage, room, kind="member", sender_id="you")  # 5: not a message
    await append(storage, room, kind="system", sender_id="you")  # 6
    await append(storage, room, sender_id="you")  # 7
    await append(storage, await new_room(storage, "me"), sender_id="you")  # another room

    assert await storage.count_unread(room.id, "me", 0) == 4
    assert await storage.count_unread(room.id, "me", 3) == 2
    assert await storage.count_unread(room.id, "me", 7) == 0
    assert await storage.count_unread(room.id, "you", 0) == 2
    assert await storage.count_unread(room.id, "me", 0, cap=3) == 3
    assert await storage.count_unread(room.id, "me", 0, cap=0) == 0
    assert await storage.count_unread("nope", "me", 0) == 0


async def test_count_unread_is_capped_in_a_busy_room(storage: Storage) -> None:
    room = await new_room(storage, "me")
    for _ in range(30):
        await append(storage, room, sender_id="you")
    assert await storage.count_unread(room.id, "me", 0, cap=25) == 25
    assert await storage.count_unread(room.id, "me", 10, cap=25) == 20


# -- search ---------------------------------------------------------------------------------------------


async def test_search_finds_messages_holding_every_token(storage: Storage) -> None:
    a, b, c = [await new_room(storage, "u1") for _ in range(3)]
    flood = await append(storage, a, tokens=["水库", "库水", "水位", "上涨", "flood"])
    level = await append(storage, b, tokens=["水位", "正常", "level"])
    single = await append(storage, a, tokens=["水", "flood"])
    hidden = await append(storage, c, tokens=["水位", "flood"])
    await append(storage, a)  # no tokens: never found
    await append(storage, a, kind="edit", target_id=flood.id, tokens=["水位"])  # not a message: not indexed

    async def ids(rooms: list[Room], tokens: list[str], **kw: object) -> list[str]:
        found = await storage.search_messages([r.id for r in rooms], tokens, **kw)  # type: ignore[arg-type]
        return [event.id for event in found]

    def newest_first(*events: RoomEvent) -> list[str]:
        return sorted((event.id for event in events), reverse=True)

    assert await ids([a, b], ["水位"]) == newest_first(flood, level)
    assert await ids([a, b, c], ["水位"]) == newest_first(flood, level, hidden)
    assert await ids([a, b], ["水位", "flood"]) == [flood.id]
    assert await ids([a, b], ["flood"]) == newest_first(flood, single)
    assert await ids([a, b], ["水"]) == [single.id]  # a token is matched whole, not as a prefix
    assert await ids([a, b], ["水位", "missing"]) == []
    assert await ids([b], ["flood"]) == []
    assert await ids([a, b], ["LEVEL".lower()]) == [level.id]
    assert await ids([], ["水位"]) == []
    assert await ids([a, b], []) == []
    found = await storage.search_messages([a.id], ["上涨"])
    assert found == [flood]  # the stored event, state and all


async def test_search_pages_by_id_newest_first(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    other = await new_room(storage, "u1")
    messages = [await append(storage, room, tokens=["险情", "report"]) for _ in range(7)]
    await append(storage, other, tokens=["险情", "report"])
    expected = sorted((m.id for m in messages), reverse=True)
    pages: list[str] = []
    before: str | None = None
    while True:
        page = await storage.search_messages([room.id], ["险情"], limit=3, before_id=before)
        if not page:
            break
        assert len(page) <= 3
        pages += [event.id for event in page]
        before = page[-1].id
    assert pages == expected
    assert await storage.search_messages([room.id], ["险情"], limit=0) == []


async def test_search_tokens_can_be_replaced_and_removed(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    message = await append(storage, room, tokens=["水位", "上涨"])
    other = await append(storage, room, tokens=["水位"])
    assert await storage.update_message(room.id, message.id, body={"text": "堤坝"}, search_tokens=["堤坝"]) is True
    assert [e.id for e in await storage.search_messages([room.id], ["水位"])] == [other.id]
    assert [e.id for e in await storage.search_messages([room.id], ["堤坝"])] == [message.id]
    assert await storage.update_message(room.id, message.id, pinned=True) is True  # tokens kept
    assert [e.id for e in await storage.search_messages([room.id], ["堤坝"])] == [message.id]
    assert await storage.update_message(room.id, message.id, recalled_at=9000, search_tokens=[]) is True
    assert await storage.search_messages([room.id], ["堤坝"]) == []
    assert await storage.update_message(room.id, message.id, search_tokens=["回来"]) is True
    assert [e.id for e in await storage.search_messages([room.id], ["回来"])] == [message.id]
    plain = await append(storage, room)  # stored without tokens, indexed later
    assert await storage.update_message(room.id, plain.id, search_tokens=["补充"]) is True
    assert [e.id for e in await storage.search_messages([room.id], ["补充"])] == [plain.id]


async def test_search_reads_tokens_as_words_never_as_query_syntax(storage: Storage) -> None:
    room = await new_room(storage, "u1")
    words = await append(storage, room, tokens=["and", "or", "not", "near", "x", "xylophone", "c++", "Flood"])
    await append(storage, room, tokens=["y"])
    assert [e.id for e in await storage.search_messages([room.id], ["or"])] == [words.id]
    assert [e.id for e in await storage.search_messages([room.id], ["not", "near"])] == [words.id]
    assert [e.id for e in await storage.search_messages([room.id], ["c++", "x"])] == [words.id]
    hostile = ['x" OR "y', "x OR y", "*", "x*", "xy*", "NEAR(x y)", '"', "-y", "tokens:x", "^x", "(", "$where", ".*"]
    for token in [*hostile, "c", "flood", "FLOOD", "x y"]:  # a token matches only exactly
        assert await storage.search_messages([room.id], [token]) == [], token
    assert await storage.search_messages([room.id], ["x", "y"]) == []


# -- acknowledgements -------------------------------------------------------------------------------------


async def test_message_acks_once_per_user(storage: Storage) -> None:
    room = await new_room(storage, "u1", "u2", "u3")
    message = await append(storage, room, body={"text": "收到请回复", "ack": True})
    other = await append(storage, room)
    second = MessageAck(room_id=room.id, message_id=message.id, user_id="u3", device_id=None, at=3000)
    first = MessageAck(room_id=room.id, message_id=message.id, user_id="u2", device_id="d2", at=2500)
    assert await storage.add_message_ack(second) is True
    assert await storage.add_message_ack(first) is True
    assert await storage.add_message_ack(replace(first, device_id="d9", at=2600)) is False
    assert await storage.add_message_ack(replace(first, message_id=other.id)) is True
    assert await storage.list_message_acks(room.id, message.id) == [first, second]
    assert await storage.list_message_acks(room.id, other.id) == [replace(first, message_id=other.id)]
    assert await storage.list_message_acks(room.id, "nope") == []


async def test_a_room_is_found_at_once_while_other_reads_run(storage: Storage) -> None:
    """Read-your-writes under concurrency: each creator finds its room right after creating it, while
    other coroutines keep reading (on SQLite they share one reader connection)."""
    rooms = [make_room(name=f"并发{n}") for n in range(30)]
    stop = asyncio.Event()

    async def keep_reading() -> None:
        while not stop.is_set():
            for room in rooms[:5]:
                await storage.get_room(room.id)
                await storage.list_members(room.id)

    async def create_then_read(room: Room) -> Room | None:
        await storage.create_room(room, [member(room, "u1", role="owner")])
        return await storage.get_room(room.id)

    readers = [asyncio.create_task(keep_reading()) for _ in range(3)]
    try:
        found = await asyncio.gather(*(create_then_read(r) for r in rooms))
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert [r.id if r else None for r in found] == [r.id for r in rooms]
