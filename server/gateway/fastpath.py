"""Local Socket.IO broadcasts, encoded once and written to each recipient's websocket directly.

python-socketio delivers a room broadcast by creating one asyncio task per recipient; each task
puts the packet in python-engineio's per-socket queue, whose writer task wakes, encodes the packet
again, frames it and hands it to aiohttp (which compresses it per recipient when the client offered
permessage-deflate). On one core that per-recipient machinery, not Muster's work, bounds fan-out
(docs/BENCHMARKS.md). Here a broadcast is encoded once (Socket.IO packet, Engine.IO packet, one
unmasked WebSocket frame) and the same bytes are written to every recipient's transport.

Rules that keep it correct:

- **Order per socket.** A socket takes the direct write only when nothing it was sent earlier is
  still waiting in its Engine.IO queue (``queue._unfinished_tasks == 0``: counted from ``put`` to
  the writer's ``task_done``); otherwise the packet joins that queue behind the earlier ones. The
  Engine.IO writer sends through `FastWebSocket.send`, which writes without yielding, so once the
  writer has taken packets from the queue they are on the transport before anything else runs.
  Frames are written whole, so two never interleave.
- **Anything not handled falls back** to python-socketio's own path: long-polling clients, sockets
  still upgrading, emits with an ack callback, packets with binary attachments.
- **Packets for one socket** (the ack of every event a client sends, emits to one sid) take the
  same direct write under the same rules (`send_direct`), instead of the socket's queue and the
  writer task it wakes.
- **Backpressure.** A recipient whose transport holds more than `send_buffer_limit` unsent bytes is
  dropped (its connection aborted, so its disconnect handlers run) instead of being buffered
  without bound or stalling the others; its client reconnects and catches up by sequence number,
  as after any dropped connection.
- **No permessage-deflate on the Socket.IO websocket.** Node's socket.io does not negotiate it by
  default either; its frames are small JSON, and compressing them cost python-socketio 40-45% of
  its fan-out because aiohttp compresses each frame once per recipient.

`FastManager` is the single-node client manager. A manager that routes over Redis reuses the local
delivery: `await deliver_local(server, event, data, namespace=..., room=..., skip_sid=...)`, or
`encode_event` once and `deliver_encoded` on each node.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from typing import Any

import socketio
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as EngineIoWebSocket
from engineio.async_socket import AsyncSocket
from socketio import packet as sio_packet

from server.logging import get_logger

log = get_logger("muster.gateway.fastpath")

#: Unsent bytes a recipient's transport may hold before that recipient is dropped.
DEFAULT_SEND_BUFFER_LIMIT = 4 * 1024 * 1024
_WS_ATTR = "_muster_ws"  # set on python-engineio's socket once its websocket is open
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


def ws_frame(message: str | bytes) -> bytes:
    """One final, unmasked WebSocket frame (server to client): text for str, binary for bytes."""
    if isinstance(message, str):
        payload, first = message.encode(), 0x81
    else:
        payload, first = bytes(message), 0x82
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _PACK_16(first, 126, size) + payload
    return _PACK_64(first, 127, size) + payload


class FastWebSocket(EngineIoWebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp websocket, with writes that never yield and a bounded buffer.

    It declines permessage-deflate and registers itself on the Engine.IO socket it serves, so
    `deliver_encoded` can write to it directly.
    """

    send_buffer_limit = DEFAULT_SEND_BUFFER_LIMIT

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self._transport: asyncio.Transport | None = request.transport
        self.environ = environ
        eio_socket = getattr(self.handler, "__self__", None)
        if eio_socket is not None:
            setattr(eio_socket, _WS_ATTR, self)
        try:
            if isinstance(eio_socket, AsyncSocket):
                await serve_websocket(eio_socket, self)
            else:
                await self.handler(self)
        finally:
            if eio_socket is not None and getattr(eio_socket, _WS_ATTR, None) is self:
                delattr(eio_socket, _WS_ATTR)
        return self._sock

    def write_frame(self, frame: bytes) -> bool:
        """Write one whole frame now; False if the socket is gone or was dropped for backpressure."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._sock.closed or getattr(self._sock, "_closing", False):
            return False
        if transport.get_write_buffer_size() > self.send_buffer_limit:
            log.info("dropping a socket that does not read what it is sent",
                     buffered=transport.get_write_buffer_size())
            transport.abort()  # the receive loop ends, Engine.IO closes the socket, disconnect hooks run
            return False
        transport.write(frame)
        return True

    async def send(self, message: str | bytes) -> None:
        # Engine.IO's writer task: no await here, so what it took from the queue is written at once.
        self.write_frame(ws_frame(message))


async def serve_websocket(s: AsyncSocket, ws: FastWebSocket) -> None:
    """python-engineio's websocket session (`AsyncSocket._websocket_handler`: the upgrade from
    long-polling, the writer task, the receive loop), without a task and a `wait_for` timer made for
    every message received: there each receive ran in a task of its own, awaited with a timeout of
    ping_interval + ping_timeout. A silent client is closed by `heartbeat.py` instead, whose CLOSE
    ends the writer, which closes the websocket and so ends this loop (within the same bound)."""
    server = s.server
    limit = server.max_http_buffer_size

    async def receive() -> str | bytes | None:
        data: str | bytes | None = await ws.wait()
        if data and len(data) > limit:
            raise ValueError("packet is too large")
        return data

    if s.connected:  # an upgrade from long-polling: the probe, then UPGRADE
        s.upgrading = True  # hold packet sends during the upgrade
        try:
            probe = await receive()
        except OSError:
            return
        decoded = eio_packet.Packet(encoded_packet=probe)
        if decoded.packet_type != eio_packet.PING or decoded.data != "probe":
            s.upgrading = False
            return
        await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        await s.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end the pending poll
        try:
            upgrade = await receive()
        except OSError:
            s.upgrading = False
            return
        if eio_packet.Packet(encoded_packet=upgrade).packet_type != eio_packet.UPGRADE:
            s.upgraded = False
            s.upgrading = False
            return
        s.upgraded = True
        s.upgrading = False
    else:
        s.connected = True
        s.upgraded = True

    async def writer() -> None:
        while True:
            try:
                packets = await s.poll()
            except eio_exceptions.QueueEmpty:
                break
            if not packets:  # the connection was closed
                break
            try:
                for pkt in packets:
                    await ws.send(pkt.encode())
            except Exception:
                break
        await ws.close()

    writer_task = asyncio.ensure_future(writer())
    while True:
        try:
            received = await receive()
        except asyncio.CancelledError:
            break
        except Exception:  # the websocket closed or failed, or the packet was too large
            break
        if received is None:  # closed by the client
            break
        try:
            await s.receive(eio_packet.Packet(encoded_packet=received))
        except eio_exceptions.UnknownPacketError:
            pass
        except eio_exceptions.SocketIsClosedError:
            break
        except Exception:
            log.exception("unexpected error in a received packet")
    await s.queue.put(None)  # unblock the writer so it can end
    await writer_task
    await s.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


def install_fastpath(sio: socketio.AsyncServer, *, send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT) -> None:
    """Make `sio`'s websockets `FastWebSocket`s (this server only: engine.io's driver table is shared),
    and send its packets for one socket (acks, emits to one sid) by `send_direct`."""
    websocket_class = type("FastWebSocket", (FastWebSocket,), {"send_buffer_limit": send_buffer_limit})
    sio.eio._async = {**sio.eio._async, "websocket": websocket_class}
    fallback = sio._send_packet

    async def send_packet(eio_sid: str, pkt: sio_packet.Packet) -> None:
        if not send_direct(sio, eio_sid, pkt):
            await fallback(eio_sid, pkt)

    sio._send_packet = send_packet


def send_direct(server: socketio.AsyncServer, eio_sid: str, pkt: sio_packet.Packet) -> bool:
    """Write one Socket.IO packet for one socket straight to its websocket, under the same rules as a
    broadcast (open, upgraded, nothing earlier still queued, no binary attachments). False: not
    written, the caller sends it through python-engineio's queue."""
    s = server.eio.sockets.get(eio_sid)
    if s is None or s.closed or s.closing:
        return False
    ws = s.__dict__.get(_WS_ATTR)
    if ws is None or not s.upgraded or s.upgrading or s.queue._unfinished_tasks != 0:
        return False
    encoded = pkt.encode()
    if isinstance(encoded, list):
        return False
    ws.write_frame(ws_frame(eio_packet.Packet(eio_packet.MESSAGE, encoded).encode()))
    return True  # also when the socket was just dropped: like a queued packet to a closing socket


def encode_event(server: socketio.AsyncServer, event: str, data: Any, namespace: str = "/") -> str | bytes | None:
    """The Engine.IO packet of a Socket.IO event as written to a websocket, or None when it has
    binary attachments (several packets: leave those to python-socketio)."""
    pkt = server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *_event_args(data)])
    encoded = pkt.encode()
    if isinstance(encoded, list):
        return None
    wire: str | bytes = eio_packet.Packet(eio_packet.MESSAGE, encoded).encode()
    return wire


async def deliver_encoded(server: socketio.AsyncServer, message: str | bytes, *, namespace: str = "/",
                          room: str | list[str] | None = None,
                          skip_sid: str | list[str] | None = None) -> int:
    """Send an encoded Engine.IO packet (from `encode_event`) to this node's sockets in `room`
    (a list of rooms: each socket once; None: every socket of the namespace), except `skip_sid`.
    Returns how many sockets it was sent to."""
    manager = server.manager
    if namespace not in manager.rooms or (isinstance(room, list) and not room):
        return 0
    skip = _skip_set(skip_sid)
    frame = ws_frame(message)
    sockets = server.eio.sockets
    queued: list[Any] = []
    sent = 0
    for sid, eio_sid in manager.get_participants(namespace, room):
        if sid in skip:
            continue
        s = sockets.get(eio_sid)
        if s is None or s.closed or s.closing:
            continue
        ws = s.__dict__.get(_WS_ATTR)
        if ws is not None and s.upgraded and not s.upgrading and s.queue._unfinished_tasks == 0:
            if ws.write_frame(frame):
                sent += 1
        else:
            queued.append(s)
    if queued:
        pkt = _engineio_packet(message)
        for s in queued:
            await s.send(pkt)  # the socket's own queue: behind what it holds, long-polling included
            sent += 1
        # Let waiting long-poll requests take what is queued, as python-socketio's per-recipient tasks
        # did: python-engineio's client refuses a poll response of more than 16 packets.
        await asyncio.sleep(0)
    return sent


async def deliver_local(server: socketio.AsyncServer, event: str, data: Any = None, *, namespace: str = "/",
                        room: str | list[str] | None = None, skip_sid: str | list[str] | None = None) -> int:
    """Emit `event` with `data` (a tuple: several arguments) to this node's sockets in `room`,
    encoded once. Returns how many sockets it was sent to, or -1 when the event has binary
    attachments and python-socketio's own emit sent it."""
    message = encode_event(server, event, data, namespace)
    if message is None:
        await socketio.AsyncManager.emit(server.manager, event, data, namespace, room=room, skip_sid=skip_sid)
        return -1
    return await deliver_encoded(server, message, namespace=namespace, room=room, skip_sid=skip_sid)


class SidRoomIndex:
    """A client manager mixin that knows each socket's rooms.

    python-socketio finds the rooms of a socket by testing every room of the namespace (every
    socket's own room, every user's and device's room...), once per disconnect and per
    `get_rooms`: closing 10,000 sockets walked 10,000 x 30,000 rooms. This keeps `(namespace,
    sid) -> rooms` up to date in `basic_enter_room`/`basic_leave_room` and answers from it.
    """

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def _sid_rooms(self) -> dict[tuple[str, str], set[Any]]:
        index: dict[tuple[str, str], set[Any]] | None = self.__dict__.get("_muster_sid_rooms")
        if index is None:
            index = self.__dict__["_muster_sid_rooms"] = {}
        return index

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._sid_rooms().setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        index = self._sid_rooms()
        rooms = index.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del index[(namespace, sid)]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [room for room in self._sid_rooms().get((namespace, sid), ()) if room is not None]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio's own, but leaving only the rooms the socket is in.
        if namespace not in self.rooms:
            return
        for room in list(self._sid_rooms().get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self._sid_rooms().pop((namespace, sid), None)
        if sid in self.callbacks:
            del self.callbacks[sid]
        for pending in (self.pending_connect, self.pending_disconnect):
            if namespace in pending and sid in pending[namespace]:
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]


class FastManager(SidRoomIndex, socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's in-process manager with `deliver_local` for emits without an ack callback."""

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        if callback is not None:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to,
                               **kwargs)
            return
        await deliver_local(self.server, event, data, namespace=namespace, room=to or room, skip_sid=skip_sid)


def _event_args(data: Any) -> list[Any]:
    # python-socketio's rule: a tuple is several arguments, None none, anything else one.
    if isinstance(data, tuple):
        return list(data)
    return [] if data is None else [data]


def _skip_set(skip_sid: str | Iterable[str] | None) -> frozenset[str]:
    if skip_sid is None:
        return frozenset()
    if isinstance(skip_sid, str):
        return frozenset((skip_sid,))
    return frozenset(s for s in skip_sid if s is not None)


def _engineio_packet(message: str | bytes) -> eio_packet.Packet:
    """The Engine.IO packet object whose encoding is `message` (for a socket's own queue)."""
    if isinstance(message, bytes):
        return eio_packet.Packet(eio_packet.MESSAGE, message)
    return eio_packet.Packet(eio_packet.MESSAGE, message[1:])  # text: "4" + the Socket.IO packet
