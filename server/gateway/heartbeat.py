"""Engine.IO heartbeats for every socket from one timer, instead of tasks per socket.

python-engineio keeps each connection alive with a task of its own: after every PONG a new task
sleeps `ping_interval` (25 s) and sends a PING through the socket's queue, waking its writer task.
Its client monitor walks the sockets once per `ping_timeout` (20 s), sleeping between two sockets
with `asyncio.wait_for`, i.e. a task made and cancelled per socket per round. At 10,000 sockets
that is 400 new sleeping tasks and 500 made-and-cancelled ones every second: a quarter of a core
with nobody talking, and a steady stream of objects old enough for the collector's oldest
generation (see server/gcpolicy.py).

`Heartbeat` does the same work from one timer that ticks every `tick` seconds:

- **PING.** When a socket's PONG arrives (or it connects), python-engineio calls its
  `schedule_ping`; here that appends the socket to a queue ordered by due time (the interval is the
  same for all, so appending keeps it ordered). Each tick puts a PING in the Engine.IO queue of
  each socket now due (the queue, not a direct write: python-engineio's writer task closes a
  websocket whose queue stays empty for ping_interval + ping_timeout, and broadcasts bypass the
  queue). `last_ping` is set when the PING goes out, as python-engineio does.
- **Timeout.** Four times per `ping_timeout` (every 5 s) a tick also walks every socket, closes
  those whose PING has gone unanswered longer than `ping_timeout` (as python-engineio's monitor
  does, writing a CLOSE packet), and drops closed sockets from the server's table.

The wire protocol and its timings are python-engineio's own (the OPEN packet still announces
`pingInterval` and `pingTimeout`); a PING may leave up to `tick` later than python-engineio
would have sent it, which clients allow for (they wait pingInterval + pingTimeout). Only servers
given to `Heartbeat.install` change; any other Engine.IO server in the process keeps its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import socketio
from engineio import async_socket
from engineio import packet as eio_packet

from server.logging import get_logger
from server.tasks import cancel_and_wait

log = get_logger("muster.gateway.heartbeat")

_PING = eio_packet.Packet(eio_packet.PING)
_ATTR = "_muster_heartbeat"  # on the Engine.IO server a Heartbeat drives
_engineio_schedule_ping = async_socket.AsyncSocket.schedule_ping


def _schedule_ping(self: async_socket.AsyncSocket) -> None:
    heartbeat = getattr(self.server, _ATTR, None)
    if heartbeat is None:
        _engineio_schedule_ping(self)
    else:
        heartbeat.schedule(self)


class Heartbeat:
    def __init__(self, sio: socketio.AsyncServer, *, tick: float = 1.0) -> None:
        self._eio = sio.eio
        self.tick = tick
        self._due: deque[tuple[float, Any]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._next_expiry = 0.0
        self.pings_sent = 0
        self.timed_out = 0

    def install(self) -> None:
        """Take over `sio`'s heartbeats (before its first connection)."""
        self._eio.start_service_task = False  # python-engineio's per-socket monitor
        setattr(self._eio, _ATTR, self)
        async_socket.AsyncSocket.schedule_ping = _schedule_ping  # dispatches per server, see above

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def schedule(self, s: Any) -> None:
        """python-engineio's `schedule_ping`: the next PING is due one interval from now."""
        if s.last_ping:  # as python-engineio: only once the previous PING was answered
            s.last_ping = None
            self._due.append((time.monotonic() + self._eio.ping_interval, s))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.beat()
            except Exception:
                log.exception("heartbeat round failed")

    async def beat(self) -> None:
        """One tick: send the PINGs now due, close sockets that did not answer in time."""
        now = time.monotonic()
        due = self._due
        while due and due[0][0] <= now:
            _, s = due.popleft()
            if s.closed or s.closing:
                continue
            s.last_ping = time.time()
            self.pings_sent += 1
            # Through the socket's queue, not written directly: python-engineio's writer task ends the
            # connection when its queue stays empty for ping_interval + ping_timeout, and the PING is
            # what feeds it on a quiet socket.
            await s.send(_PING)
        if now >= self._next_expiry:  # four walks per ping_timeout, as precise as python-engineio's one
            self._next_expiry = now + self._eio.ping_timeout / 4
            await self._expire()

    async def _expire(self) -> None:
        sockets = self._eio.sockets
        timeout = self._eio.ping_timeout
        wall = time.time()
        gone = []
        for sid, s in list(sockets.items()):
            if s.closed:
                gone.append(sid)
            elif not s.closing and s.last_ping and wall - s.last_ping > timeout:
                self.timed_out += 1
                await s.close(wait=False, abort=False, reason=self._eio.reason.PING_TIMEOUT)
                if s.closed:
                    gone.append(sid)
        for sid in gone:
            if sid in sockets and sockets[sid].closed:
                del sockets[sid]
