"""Engine.IO heartbeats from one timer (server/gateway/heartbeat.py), with real clients over a real port:
PINGs reach websocket and long-polling clients, a client that answers stays, one that stops
answering is closed (its disconnect hooks run), and python-engineio's own per-socket machinery is off."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import socketio

from tests.factories import Muster, until


@pytest.fixture
def fast_beat(muster: Muster) -> Muster:
    """Heartbeats every second, a PING unanswered for a second times out; set before any client
    connects (the OPEN packet tells clients these figures, in whole seconds)."""
    gateway = muster.kernel.gateway
    gateway.sio.eio.ping_interval = 1
    gateway.sio.eio.ping_timeout = 1
    gateway.heartbeat.tick = 0.05
    return muster



async def test_clients_that_answer_stay_connected_over_many_rounds(fast_beat: Muster) -> None:
    muster = fast_beat
    heartbeat = muster.kernel.gateway.heartbeat
    ws_client = await muster.socket((await muster.session()).access_token)
    s = await muster.session()
    polling = socketio.AsyncClient(reconnection=False)
    muster.sockets.append(polling)
    await polling.connect(muster.url, auth={"token": s.access_token}, transports=["polling"], wait_timeout=5)
    sent_before = heartbeat.pings_sent
    await asyncio.sleep(3.5)  # three heartbeat rounds
    assert heartbeat.pings_sent - sent_before >= 4  # both clients pinged, twice or more each
    assert ws_client.connected and polling.connected
    assert heartbeat.timed_out == 0
    assert (await polling.call("whoami", timeout=5))["data"]["user_id"] == s.user["id"]
    # python-engineio's per-socket monitor never started.
    assert muster.kernel.gateway.sio.eio.service_task_handle is None


async def test_a_client_that_stops_answering_is_closed(fast_beat: Muster) -> None:
    muster = fast_beat
    gateway = muster.kernel.gateway
    s = await muster.session()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{muster.url}/socket.io/?EIO=4&transport=websocket", autoping=False)
        opened = json.loads((await ws.receive_str(timeout=5))[1:])
        assert opened["pingInterval"] == 1000 and opened["pingTimeout"] == 1000
        await ws.send_str("40" + json.dumps({"token": s.access_token}))
        assert (await ws.receive_str(timeout=5)).startswith("40")
        await until(lambda: gateway.local_connections == 1)
        # Answer the first PING, then go silent.
        while await ws.receive_str(timeout=5) != "2":
            pass
        await ws.send_str("3")
        while await ws.receive_str(timeout=5) != "2":
            pass
        await until(lambda: gateway.local_connections == 0, within=5)  # closed, disconnect hooks ran
        assert gateway.heartbeat.timed_out == 1
        await until(lambda: not gateway.sio.eio.sockets, within=2)  # and dropped from Engine.IO's table
        await ws.close()
