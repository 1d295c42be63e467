"""Acknowledgement requests (回执): who must acknowledge, records with person, device and time, reminders on
every device until they do or the sender stops them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.settings import Settings
from tests.factories import Muster, make_settings, running_muster
from tests.rooms.conftest import connect, make_room, new_client, send, until


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, rooms={"ack_renotify_interval": 1},
                         gateway={"events_per_second": 1000.0, "event_burst": 1000})


@pytest.fixture
async def muster(settings: Settings) -> AsyncIterator[Muster]:
    async with running_muster(settings) as m:
        yield m


async def test_named_members_acknowledge_and_reminders_stop(muster: Muster) -> None:
    commander = await new_client(muster, "commander")
    lead_user = await muster.create_user(roles=["dept_lead"])
    lead_console = await connect(muster, await muster.login(lead_user["username"], device_kind="console"))
    lead_phone = await connect(muster, await muster.login(lead_user["username"], device_kind="mobile"))
    bystander = await new_client(muster)
    room = await make_room(commander, lead_console, bystander)
    message = await send(commander, room, "请各部门负责人确认收到防汛预警",
                         ack={"user_ids": [lead_user["id"]]})
    assert message["body"]["ack"] == {"all": False, "user_ids": [lead_user["id"]], "stopped": False}
    # both of the lead's devices are asked, then reminded; the bystander is not
    await until(lambda: len(lead_phone.got("ack.requested")) >= 2 and len(lead_console.got("ack.requested")) >= 2,
                what="the first request and one reminder on both devices")
    assert lead_phone.got("ack.requested")[1]["reminder"] is True
    assert bystander.got("ack.requested") == []
    status = await commander.ok("message.ack_status", {"room_id": room, "message_id": message["id"]})
    assert status["pending"] == [lead_user["id"]] and status["acknowledged"] == []

    ack = (await lead_phone.ok("message.ack", {"room_id": room, "message_id": message["id"]}))["ack"]
    assert ack["user_id"] == lead_user["id"] and ack["device_id"] == lead_phone.session.device_id and ack["at"]
    await until(lambda: commander.got("message.acked"), what="the sender is told")
    await until(lambda: lead_console.got("message.acked"), what="the lead's other device is told")
    status = await commander.ok("message.ack_status", {"room_id": room, "message_id": message["id"]})
    assert status["pending"] == [] and [a["device_id"] for a in status["acknowledged"]] == [
        lead_phone.session.device_id]
    # acknowledging again changes nothing
    again = (await lead_console.ok("message.ack", {"room_id": room, "message_id": message["id"]}))["ack"]
    assert again == ack
    reminders = len(lead_phone.got("ack.requested"))
    await asyncio.sleep(2.5)
    assert len(lead_phone.got("ack.requested")) == reminders  # no reminders after acknowledging
    ack = await bystander.call("message.ack", {"room_id": room, "message_id": message["id"]})
    assert ack["error"]["code"] == "ack.not_required"


async def test_all_members_and_the_sender_stops_the_reminders(muster: Muster) -> None:
    commander = await new_client(muster, "commander")
    a = await new_client(muster)
    b = await new_client(muster)
    room = await make_room(commander, a, b)
    message = await send(commander, room, "全员确认：今晚 20:00 转移群众", ack={"all": True})
    assert sorted(message["body"]["ack"]["user_ids"]) == sorted([a.user_id, b.user_id])
    await a.ok("message.ack", {"room_id": room, "message_id": message["id"]})
    await until(lambda: len(b.got("ack.requested")) >= 2, what="b reminded")
    ack = await a.call("message.ack_stop", {"room_id": room, "message_id": message["id"]})
    assert ack["error"]["code"] == "message.not_sender"
    status = await commander.ok("message.ack_stop", {"room_id": room, "message_id": message["id"]})
    assert status["stopped"] is True and status["pending"] == [b.user_id]
    seen = len(b.got("ack.requested"))
    await asyncio.sleep(2.5)
    assert len(b.got("ack.requested")) == seen
    # b can still acknowledge after the reminders stopped
    await b.ok("message.ack", {"room_id": room, "message_id": message["id"]})
    status, body = await muster.request("GET", f"/api/rooms/{room}/messages/{message['id']}/acks", commander.session)
    assert status == 200 and body["pending"] == [] and len(body["acknowledged"]) == 2


async def test_reminders_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rooms={"ack_renotify_interval": 1})
    async with running_muster(settings) as first:
        commander = await new_client(first, "commander")
        lead = await first.create_user(roles=["dept_lead"])
        lead_session = await first.login(lead["username"])
        room = (await commander.ok("room.create", {"kind": "group", "name": "x", "member_ids": [lead["id"]]}))[
            "room"]["id"]
        message = await send(commander, room, "请确认", ack={"user_ids": [lead["id"]]})
    # the reminder is a row in the database, not a timer: a new process picks it up
    async with running_muster(settings) as second:
        client = await connect(second, lead_session)
        await until(lambda: any(r["event_id"] == message["id"] for r in client.got("ack.requested")),
                    what="a reminder from the restarted server")


async def test_bad_ack_requests(muster: Muster) -> None:
    commander = await new_client(muster, "commander")
    a = await new_client(muster)
    outsider = await muster.create_user()
    room = await make_room(commander, a)
    for ack, code in (({"user_ids": [outsider["id"]]}, "message.bad_mention"),
                      ({"user_ids": [commander.user_id]}, "message.bad_ack"),
                      ({}, "message.bad_ack")):
        answer = await commander.call("message.send", {"room_id": room, "client_id": f"x{code}", "text": "?",
                                                       "ack": ack})
        assert answer["error"]["code"] == code, (ack, answer)
    plain = await send(commander, room, "无需回执")
    answer = await a.call("message.ack", {"room_id": room, "message_id": plain["id"]})
    assert answer["error"]["code"] == "ack.not_requested"
