"""A node killed while a client is sending: what was acknowledged survives, nothing is stored twice.

The node is a real `python -m server run` process on the embedded SQLite file; SIGKILL stops
it between any two instructions (no shutdown code runs), and it restarts on the same folder.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import aiohttp

from tests.cluster.test_chat_cluster import PASSWORD, Client, Node, cli, clients, create_room, login, until

ACKED_BEFORE_KILL = 100


def text_of(client_id: str) -> str:
    return f"第{client_id}条 水位报告"


async def send_until_lost(client: Client, room_id: str, acked: list[tuple[str, int]]) -> str:
    """Send messages one after another, each after the last one's ack, recording (client_id, seq)
    of every acknowledged one; returns the client_id in flight when the connection was lost."""
    for n in itertools.count(1):
        client_id = f"m{n}"
        call = asyncio.ensure_future(client.sio.call(
            "message.send", {"room_id": room_id, "client_id": client_id, "text": text_of(client_id)}, timeout=30))
        lost = asyncio.ensure_future(client.lost.wait())
        done, _ = await asyncio.wait({call, lost}, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        if call in done and call.exception() is None:
            ack = call.result()
            assert "data" in ack, ack
            assert ack["data"]["duplicate"] is False and ack["data"]["event"]["client_id"] == client_id
            acked.append((client_id, int(ack["data"]["event"]["seq"])))
            continue
        call.cancel()  # stored or not, its ack will never come
        return client_id
    raise AssertionError("unreachable")


async def all_events(client: Client, room_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await client.ok("room.history", {"room_id": room_id, "after_seq": after, "limit": 200})
        events += page["events"]
        if not page["has_more"]:
            return events
        after = events[-1]["seq"]


async def test_acknowledged_messages_survive_a_killed_node(tmp_path: Path) -> None:
    cli(tmp_path, "users", "add", "sender", "--name", "Sender", "--role", "responder", "--password-stdin",
        stdin=f"{PASSWORD}\n")
    node = Node("solo", tmp_path)
    acked: list[tuple[str, int]] = []
    async with aiohttp.ClientSession() as http:
        try:
            node.start()
            await node.wait_ready(http)
            me = await login(http, node, "sender")
            room = await create_room(http, node, me)

            async with clients() as connect:
                client = await connect(node, me)
                sending = asyncio.create_task(send_until_lost(client, room, acked))
                await until(lambda: len(acked) >= ACKED_BEFORE_KILL or sending.done(), within=30,
                            what=f"{ACKED_BEFORE_KILL} messages acknowledged")
                assert not sending.done(), sending
                node.kill()
                in_flight = await asyncio.wait_for(sending, timeout=10)

            node.start()
            await node.wait_ready(http)
            async with clients() as connect:
                client = await connect(node, me)  # the same device and token: the node kept no session in memory
                resent = await client.ok("message.send", {"room_id": room, "client_id": in_flight,
                                                          "text": text_of(in_flight)})
                events = await all_events(client, room)
                again = await client.ok("message.send", {"room_id": room, "client_id": in_flight,
                                                         "text": text_of(in_flight)})
        finally:
            await node.stop()

    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))  # in order, no seq twice, no hole
    stored = [(e["client_id"], e["seq"]) for e in events if e["kind"] == "message"]
    # every acknowledged message, with the seq its ack gave, then the one in flight, once
    assert stored[:len(acked)] == acked
    assert stored[len(acked):] == [(in_flight, resent["event"]["seq"])]
    assert events[-1]["body"]["text"] == text_of(in_flight)
    assert again["duplicate"] is True and again["event"]["id"] == resent["event"]["id"]
