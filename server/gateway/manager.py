"""Muster's Socket.IO client manager over Redis: routed by room, resynced after Redis drops.

python-socketio's `AsyncRedisManager` publishes every emit on one channel that every node reads
and JSON-decodes, even when all recipients are on the sending node, and its listener can stop
silently when Redis drops the connection (python-socketio issues 1581, 1411). This manager:

- **Routes by room.** A node subscribes to `<prefix>:sio:r:<room>` while it has local sockets in
  that room (first local join subscribes, last local leave unsubscribes); an emit to a room is
  published on that room's channel, so a node reads only what its own sockets need. Emits to a
  sid go to the channel of the node that holds it, `<prefix>:sio:n:<node>` (a sid starts with its
  node's id). `<prefix>:sio` is the control channel: membership announcements, heartbeats and
  emits to a whole namespace.
- **Skips Redis when every recipient is local.** Each node keeps a view of which other nodes have
  members of which rooms, from their announcements on the control channel: `+`/`-` deltas (sent
  once Redis has confirmed the subscription, so a node is announced only when it can hear the
  room), numbered per node; a full snapshot on (re)connect and on request; a heartbeat with the
  node's announcement number, so a node that missed a delta asks for a snapshot. Until a node has
  heard a full round of heartbeats (after start or after its own reconnect) it publishes every
  emit. A stale view errs towards publishing (a leave not yet heard, a stopped node not yet
  expired). It can miss in one window only: a room's first member on node B joins, and node A
  emits before B's `+` has reached it (one Redis hop). Clients repair that by sequence number:
  the next `room.event` shows a gap and they `sync` (and every client syncs on connect).
- **Encodes once, compactly.** An emit is msgpack-encoded once; a multi-room emit carries all its
  rooms and an id, and a node delivers it once to the union of its local members (duplicates
  arriving on another room's channel are dropped by id). A receiving node decodes once and
  delivers through the local fast path (`deliver_local`: one Socket.IO encoding for all).
- **Batches.** Emits of the same event-loop tick, and those issued while the previous publish is
  in flight, go out together: one PUBLISH per channel carrying a msgpack array, all channels in
  one pipelined round trip.
- **Survives Redis drops.** The listener reconnects with backoff, resubscribes every channel,
  re-announces its rooms, and tells its local sockets to resync (`sync.hint {room_ids}`): what was
  published while it was away is gone. An emit that cannot be published does not fail the sender
  (the message is stored and acknowledged already); its rooms are remembered and, once Redis
  answers again, a hint is published on their channels so remote members resync too.

Muster uses emits to rooms and sids, `skip_sid`, and local `enter_room`/`leave_room`/`disconnect`
(cross-node joins go through the control bus, server/bus.py). Remote `enter_room`, `leave_room`
and `disconnect` by sid are routed to the sid's node. Emits with an ack callback are delivered
to local sockets only (Muster does not use them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]
import socketio
from redis.asyncio import Redis

from server.gateway.fastpath import SidRoomIndex, deliver_local
from server.logging import get_logger
from server.metrics import Metrics

log = get_logger("muster.gateway.manager")

NODE_ID_LENGTH = 10
_SID_SEP = "~"
_packer_header = msgpack.Packer().pack_array_header


class MusterRedisManager(SidRoomIndex, socketio.AsyncManager):  # type: ignore[misc]
    """A python-socketio client manager that routes emits by room over Redis pub/sub.

    `batch`: coalesce emits into one pipelined round trip (False publishes each emit on its own,
    for comparison). `heartbeat`: seconds between a node's heartbeats; a node silent for
    `max(30 s, heartbeat * 10)` is forgotten (a long wait costs only unneeded publishes).
    `hint_prefix`: the Socket.IO rooms whose names, without this prefix, are the room ids a
    `sync.hint` lists (Muster's chat rooms are `room:<id>`).
    """

    name = "muster-redis"

    def __init__(self, url: str, *, prefix: str = "muster", metrics: Metrics | None = None, batch: bool = True,
                 heartbeat: float = 2.0, hint_prefix: str = "room:", redis: Redis | None = None) -> None:
        super().__init__()
        self.node_id = uuid.uuid4().hex[:NODE_ID_LENGTH]
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}:sio"
        self._room_prefix = f"{prefix}:sio:r:"
        self._node_prefix = f"{prefix}:sio:n:"
        self._metrics = metrics
        self._batch = batch
        self._heartbeat = heartbeat
        self._hint_prefix = hint_prefix
        # `redis` publishes; the listener's pubsub opens its own connection from the same pool.
        self.redis: Redis = redis if redis is not None else Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=5, health_check_interval=30)
        self.pubsub: Any = None
        self.thread: asyncio.Task[None] | None = None  # the supervisor (name kept from python-socketio)
        self.stats: dict[str, int] = dict.fromkeys(
            ("emits", "published", "skipped", "failed", "publishes", "batches", "received", "reconnects",
             "hints"), 0)
        # rooms this node has local members of -> Redis subscription state
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()  # channels Redis confirmed
        self._sub_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._membership_changed = asyncio.Event()
        self._connected = False
        # the view of other nodes: node -> (rooms, last announcement number, last heard)
        self._remote_rooms: dict[str, set[str]] = {}
        self._remote_version: dict[str, int] = {}
        self._remote_seen: dict[str, float] = {}
        self._room_nodes: dict[str, set[str]] = {}  # room -> other nodes with members
        self._view_ready_at = float("inf")
        self._snapshots_heard: set[str] = set()
        self._expected_nodes: int | None = None
        self._version = 0
        # outgoing, in emit order: (channel, encoded item), flushed by one task at a time
        self._outbox: list[tuple[str, bytes]] = []
        self._outbox_rooms: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._unsynced: set[str] = set()  # rooms whose emits could not be published
        self._ids = itertools.count(1)
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    # -- lifecycle ---------------------------------------------------------------------

    def initialize(self) -> None:
        super().initialize()
        self.thread = asyncio.get_running_loop().create_task(self._supervise(), name="muster-sio-redis")

    async def _supervise(self) -> None:
        tasks = [asyncio.create_task(self._listen_forever(), name="muster-sio-listen"),
                 asyncio.create_task(self._apply_membership(), name="muster-sio-membership"),
                 asyncio.create_task(self._beat(), name="muster-sio-heartbeat")]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, self._flusher]:
                if task is not None:
                    task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.publish(self.channel, _pack_batch([_pack(["bye", self.node_id])])),
                                       timeout=0.5)
            if self.pubsub is not None:
                with contextlib.suppress(Exception):
                    await self.pubsub.aclose()
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    # -- sids carry their node ---------------------------------------------------------

    async def pre_connect(self, eio_sid: str, namespace: str) -> str | None:
        # python-socketio's BaseManager.pre_connect, with the sid prefixed by this node's id so
        # that any node can route an emit or a disconnect to it.
        from bidict import ValueDuplicationError

        sid = f"{self.node_id}{_SID_SEP}{self.server.eio.generate_id()}"
        try:
            self.basic_enter_room(sid, namespace, None, eio_sid=eio_sid)
        except ValueDuplicationError:
            return None
        self.basic_enter_room(sid, namespace, sid, eio_sid=eio_sid)
        self.pending_connect.setdefault(namespace, []).append(sid)
        return sid

    def _node_of_sid(self, room: Any) -> str | None:
        if isinstance(room, str) and len(room) > NODE_ID_LENGTH and room[NODE_ID_LENGTH] == _SID_SEP:
            return room[:NODE_ID_LENGTH]
        return None

    # -- membership: subscribe while there are local members ----------------------------

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        new = room is not None and room != sid and room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if new and room not in self._wanted:
            self._wanted.add(room)
            self._membership_changed.set()

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        if room is not None and room in self._wanted and not any(room in ns for ns in self.rooms.values()):
            self._wanted.discard(room)
            self._membership_changed.set()

    async def enter_room(self, sid: str, namespace: str, room: str, eio_sid: str | None = None) -> None:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            self.basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
            await self._until_subscribed(room)
            return
        await self._to_node(sid, ["j", self.node_id, sid, namespace, room])

    async def leave_room(self, sid: str, namespace: str, room: str) -> None:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            self.basic_leave_room(sid, namespace, room)
            return
        await self._to_node(sid, ["l", self.node_id, sid, namespace, room])

    async def can_disconnect(self, sid: str, namespace: str) -> bool:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            return bool(await super().can_disconnect(sid, namespace))
        await self._to_node(sid, ["d", self.node_id, sid, namespace])
        return False

    async def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if kwargs.get("ignore_queue") or self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            await super().disconnect(sid, namespace, **kwargs)
            return
        await self._to_node(sid, ["d", self.node_id, sid, namespace])

    async def _to_node(self, sid: str, item: list[Any]) -> None:
        node = self._node_of_sid(sid)
        if node is not None and node != self.node_id:
            self._enqueue(self._node_prefix + node, _pack(item), ())

    async def _until_subscribed(self, room: str) -> None:
        """Wait (briefly) until Redis confirms the room's channel: emits other nodes publish after
        this returns reach this node. Not while Redis is away: the reconnect resyncs instead."""
        channel = self._room_prefix + room
        if not self._connected or channel in self._subscribed or room not in self._wanted:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._sub_waiters.setdefault(channel, []).append(waiter)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout=2)

    async def _apply_membership(self) -> None:
        """Bring Redis subscriptions in line with the rooms that have local members."""
        while True:
            await self._membership_changed.wait()
            self._membership_changed.clear()
            pubsub = self.pubsub
            if pubsub is None or not self._connected:
                continue  # the listener subscribes to everything wanted when it reconnects
            wanted = {self._room_prefix + r for r in self._wanted}
            current = {c for c in _channel_names(pubsub.channels) if c.startswith(self._room_prefix)}
            gone, new = current - wanted, wanted - current
            try:
                if new:
                    await pubsub.subscribe(*sorted(new))
                if gone:
                    await pubsub.unsubscribe(*sorted(gone))
            except Exception as exc:  # the listener notices the broken connection and starts over
                log.warning("subscription change failed", error=str(exc))

    # -- the view of other nodes ---------------------------------------------------------

    def _announce(self, kind: str, rooms: Iterable[str]) -> None:
        self._version += 1
        self._enqueue(self.channel, _pack([kind, self.node_id, self._version, sorted(rooms)]), ())

    def _snapshot(self) -> bytes:
        rooms = [c[len(self._room_prefix):] for c in self._subscribed]
        return _pack(["s", self.node_id, self._version, rooms])

    def _set_remote(self, node: str, rooms: Iterable[str], *, add: bool, replace: bool = False) -> None:
        held = self._remote_rooms.setdefault(node, set())
        if replace:
            for room in held - set(rooms):
                self._drop_room_node(room, node)
            held.clear()
        for room in rooms:
            if add:
                held.add(room)
                self._room_nodes.setdefault(room, set()).add(node)
            else:
                held.discard(room)
                self._drop_room_node(room, node)

    def _drop_room_node(self, room: str, node: str) -> None:
        nodes = self._room_nodes.get(room)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self._room_nodes[room]

    def _forget(self, node: str) -> None:
        self._set_remote(node, (), add=True, replace=True)
        self._remote_rooms.pop(node, None)
        self._remote_version.pop(node, None)
        self._remote_seen.pop(node, None)

    def _heard(self, node: str, version: int, *, step: int) -> None:
        """Note `node`'s announcement number: a delta is one past the last (`step` 1), a heartbeat
        repeats it (`step` 0), a snapshot sets it (`step` -1). Otherwise something was missed: ask
        that node for a snapshot."""
        self._remote_seen[node] = time.monotonic()
        known = self._remote_version.get(node)
        if step >= 0 and (known is None or version != known + step):
            self._enqueue(self._node_prefix + node, _pack(["?", self.node_id]), ())
        self._remote_version[node] = version

    @property
    def view_ready(self) -> bool:
        """Whether this node has heard the other nodes' rooms since it (re)connected: until then
        every emit is published."""
        return time.monotonic() >= self._view_ready_at

    def nodes_with(self, room: str) -> set[str]:
        """The other nodes this node believes have members of `room`."""
        return set(self._room_nodes.get(room, ()))

    def remote_needed(self, room: str) -> bool:
        """Whether an emit to `room` must go through Redis: another node has members (or might)."""
        return room in self._room_nodes or time.monotonic() < self._view_ready_at

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            if self._connected:
                self._enqueue(self.channel, _pack(["hb", self.node_id, self._version]), ())
            if not self._connected:
                continue  # nobody is heard while this node is away: forget no one for it
            silent = time.monotonic() - max(30.0, self._heartbeat * 10)
            for node in [n for n, seen in self._remote_seen.items() if seen < silent]:
                log.info("forgetting a silent node", node=node)
                self._forget(node)

    # -- emitting --------------------------------------------------------------------

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        room = to if to is not None else room
        namespace = namespace or "/"
        if callback is not None or kwargs.get("ignore_queue"):
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)
            return
        self.stats["emits"] += 1
        channels = self._channels_for(room)
        if channels:
            try:
                item = _pack(["e", self.node_id, next(self._ids), namespace, _rooms_list(room), event,
                              _args(data), _skip_list(skip_sid)])
            except (TypeError, ValueError, OverflowError):
                log.exception("emit not encodable for Redis; delivered on this node only", socket_event=event)
                item = None
            if item is not None:
                self.stats["published"] += 1
                self._count("published")
                rooms = [r for r in _rooms_list(room) or () if self._node_of_sid(r) is None]
                for channel in channels:
                    if self._batch:
                        self._enqueue(channel, item, rooms)
                    else:
                        await self._publish_now(channel, item, rooms)
        else:
            self.stats["skipped"] += 1
            self._count("local_only")
        await self.deliver_local(event, data, namespace, room, skip_sid)

    async def deliver_local(self, event: str, data: Any, namespace: str, room: Any, skip_sid: Any) -> None:
        """Deliver to this node's sockets only: the local fast path (server/gateway/fastpath.py)."""
        await deliver_local(self.server, event, data, namespace=namespace, room=room, skip_sid=skip_sid)

    def _channels_for(self, room: Any) -> list[str]:
        if room is None:
            return [self.channel]
        channels: list[str] = []
        for r in _rooms_list(room) or ():
            node = self._node_of_sid(r)
            if node is not None:
                if node != self.node_id:
                    channels.append(self._node_prefix + node)
            elif self.remote_needed(r):
                channels.append(self._room_prefix + r)
        return channels

    def _enqueue(self, channel: str, item: bytes, rooms: Iterable[str]) -> None:
        self._outbox.append((channel, item))
        self._outbox_rooms.update(rooms)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the rest of this tick's emits join the batch
        backoff = 0.1
        while self._outbox or self._unsynced:
            if self._unsynced and (not self._outbox or self._connected):
                rooms, self._unsynced = self._unsynced, set()
                hint = _pack(["h", self.node_id, sorted(rooms)])
                self._outbox.extend((self._room_prefix + room, hint) for room in rooms)
                self._outbox_rooms.update(rooms)
            outbox, rooms = _runs(self._outbox), self._outbox_rooms
            self._outbox, self._outbox_rooms = [], set()
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, items in outbox:
                        pipe.publish(channel, _pack_batch(items))
                    await pipe.execute()
            except Exception as exc:
                self._publish_failed(exc, outbox, rooms)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            self.stats["publishes"] += len(outbox)
            self.stats["batches"] += 1
            if self._metrics is not None:
                self._metrics.sio_redis_publishes.inc(len(outbox))
                self._metrics.sio_redis_batches.inc()

    async def _publish_now(self, channel: str, item: bytes, rooms: list[str]) -> None:
        try:
            await self.redis.publish(channel, _pack_batch([item]))
        except Exception as exc:
            self._publish_failed(exc, [(channel, [item])], set(rooms))
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush())
            return
        self.stats["publishes"] += 1
        self.stats["batches"] += 1

    def _publish_failed(self, exc: Exception, outbox: list[tuple[str, list[bytes]]], rooms: set[str]) -> None:
        # The sender's request goes on: its message is stored; members resync from the hint.
        dropped = sum(len(items) for _, items in outbox)
        self.stats["failed"] += dropped
        self._count("failed", dropped)
        self._unsynced.update(rooms)
        log.warning("publishing to Redis failed; members of those rooms will be told to resync",
                    error=str(exc), messages=dropped, rooms=len(rooms))

    def _count(self, outcome: str, n: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.sio_redis_emits.labels(outcome).inc(n)

    # -- listening -------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        lost = False
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub()
            self.pubsub = pubsub
            control_confirmations = 0
            try:
                rooms = set(self._wanted)
                await pubsub.subscribe(self.channel, self._node_prefix + self.node_id,
                                       *(self._room_prefix + r for r in rooms))
                self._membership_changed.set()  # rooms wanted meanwhile
                while True:
                    message = await pubsub.get_message(timeout=self._heartbeat * 3)
                    if message is None:
                        await pubsub.ping()  # a silent connection may be dead: find out
                        continue
                    kind = message.get("type")
                    if kind == "message":
                        await self._on_batch(message["data"])
                    elif kind == "subscribe":
                        channel = _text(message["channel"])
                        if channel != self.channel:
                            self._on_subscribed(channel)
                            continue
                        # One SUBSCRIBE command is applied whole before Redis confirms any of its
                        # channels: every room in it is live now.
                        self._subscribed.update(self._room_prefix + r for r in rooms)
                        self._on_connected()
                        backoff = 0.1
                        control_confirmations += 1
                        # A second confirmation on one pubsub: redis-py reconnected and
                        # resubscribed by itself, and what was published meanwhile is lost.
                        if lost or control_confirmations > 1:
                            lost = False
                            rooms = {c[len(self._room_prefix):] for c in _channel_names(pubsub.channels)
                                     if c.startswith(self._room_prefix)}
                            self._subscribed.update(self._room_prefix + r for r in rooms)
                            await self._recovered()
                    elif kind == "unsubscribe":
                        self._on_unsubscribed(_text(message["channel"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:
                    log.warning("Redis pub/sub connection lost; reconnecting", error=str(exc))
                lost = True
            finally:
                self._connected = False
                self._subscribed.clear()
                self.pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 (jitter, not a secret)
            backoff = min(backoff * 2, 2.0)

    def _on_connected(self) -> None:
        self._connected = True
        # Deltas may have been missed while away: publish to every room until the view is rebuilt.
        self._view_ready_at = time.monotonic() + self._heartbeat * 1.5
        self._snapshots_heard.clear()
        self._expected_nodes = None
        self._enqueue(self.channel, self._snapshot(), ())
        self._enqueue(self.channel, _pack(["?", self.node_id]), ())
        asyncio.get_running_loop().create_task(self._count_nodes())

    async def _count_nodes(self) -> None:
        # The control channel's subscribers are the live nodes: once each of the others has sent
        # its snapshot, the view is complete and need not wait out the heartbeat.
        with contextlib.suppress(Exception):
            [(_, listeners)] = await self.redis.pubsub_numsub(self.channel)
            self._expected_nodes = int(listeners) - 1
            self._check_view()

    def _check_view(self) -> None:
        if self._expected_nodes is not None and len(self._snapshots_heard) >= self._expected_nodes:
            self._view_ready_at = min(self._view_ready_at, time.monotonic())
        for channel in list(self._sub_waiters):
            if channel in self._subscribed:
                self._wake(channel)

    def _on_subscribed(self, channel: str) -> None:
        """Redis confirmed a channel: announce the room once it can be heard here."""
        fresh = channel not in self._subscribed
        self._subscribed.add(channel)
        self._wake(channel)
        if fresh and channel.startswith(self._room_prefix) and self._connected:
            self._announce("+", [channel[len(self._room_prefix):]])

    def _wake(self, channel: str) -> None:
        for waiter in self._sub_waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _on_unsubscribed(self, channel: str) -> None:
        self._subscribed.discard(channel)
        if channel.startswith(self._room_prefix) and self._connected:
            self._announce("-", [channel[len(self._room_prefix):]])

    async def _recovered(self) -> None:
        """After a reconnect: whatever was published meanwhile never reached this node's sockets."""
        self.stats["reconnects"] += 1
        if self._metrics is not None:
            self._metrics.sio_redis_reconnects.inc()
        log.info("Redis pub/sub connection back; telling local sockets to resync")
        await self.hint_rooms(None)

    async def hint_rooms(self, rooms: Iterable[str] | None) -> None:
        """Emit `sync.hint {room_ids}` to this node's sockets in `rooms` (None: every socket), each
        once, listing its affected chat rooms (Socket.IO rooms named `<hint_prefix><id>`)."""
        ns_rooms = self.rooms.get("/", {})
        affected = set(ns_rooms) if rooms is None else set(rooms)
        per_sid: dict[str, list[str]] = {}
        for room in affected:
            if room is None or room not in ns_rooms:
                continue
            for sid in ns_rooms[room]:
                ids = per_sid.setdefault(sid, [])
                if isinstance(room, str) and room.startswith(self._hint_prefix):
                    ids.append(room[len(self._hint_prefix):])
        for sid, ids in per_sid.items():
            self.stats["hints"] += 1
            with contextlib.suppress(Exception):
                await deliver_local(self.server, "sync.hint", {"room_ids": sorted(ids)}, namespace="/", room=sid)

    async def _on_batch(self, raw: bytes) -> None:
        try:
            items = msgpack.unpackb(raw, raw=False)
            if not isinstance(items, list):
                raise TypeError("not a list")
        except Exception:
            log.warning("Redis message ignored: not a Muster batch")
            return
        for item in items:
            try:
                await self._on_item(item)
            except Exception:
                log.exception("Redis message could not be handled")

    async def _on_item(self, m: list[Any]) -> None:
        kind, node = m[0], m[1]
        if node == self.node_id:
            return
        if kind == "e":
            _, _, msg_id, namespace, rooms, event, args, skip = m
            if rooms is not None and len(rooms) > 1:  # arrives once per room channel: deliver once
                key = (node, msg_id)
                if key in self._seen:
                    return
                self._seen[key] = None
                if len(self._seen) > 4096:
                    self._seen.popitem(last=False)
            self.stats["received"] += 1
            if self._metrics is not None:
                self._metrics.sio_redis_received.inc()
            data = args[0] if len(args) == 1 else (None if not args else tuple(args))
            target = rooms if rooms is None or len(rooms) > 1 else rooms[0]
            await self.deliver_local(event, data, namespace, target, skip or None)
        elif kind == "h":
            await self.hint_rooms(m[2])
        elif kind in ("+", "-"):
            self._heard(node, m[2], step=1)
            self._set_remote(node, m[3], add=kind == "+")
        elif kind == "s":
            self._heard(node, m[2], step=-1)
            self._set_remote(node, m[3], add=True, replace=True)
            self._snapshots_heard.add(node)
            self._check_view()
        elif kind == "hb":
            self._heard(node, m[2], step=0)
        elif kind == "?":
            self._enqueue(self.channel, self._snapshot(), ())
        elif kind == "bye":
            self._forget(node)
        elif kind == "d":
            await self.server.disconnect(m[2], namespace=m[3], ignore_queue=True)
        elif kind == "j" and self.is_connected(m[2], m[3]):
            self.basic_enter_room(m[2], m[3], m[4])  # not enter_room: it would wait on this listener
        elif kind == "l" and self.is_connected(m[2], m[3]):
            self.basic_leave_room(m[2], m[3], m[4])


def _pack(item: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(item, use_bin_type=True)
    return packed


def _pack_batch(items: list[bytes]) -> bytes:
    # A msgpack array is its header followed by its encoded items: each emit is encoded once,
    # whatever channels and batches it goes out in, and the batch decodes in one call.
    header: bytes = _packer_header(len(items))
    return header + b"".join(items)


def _runs(outbox: list[tuple[str, bytes]]) -> list[tuple[str, list[bytes]]]:
    """Consecutive items for one channel, as one publish each: a node reads all its channels on
    one connection, in publish order, so its sockets get emits in the order they were made."""
    runs: list[tuple[str, list[bytes]]] = []
    for channel, item in outbox:
        if runs and runs[-1][0] == channel:
            runs[-1][1].append(item)
        else:
            runs.append((channel, [item]))
    return runs


def _args(data: Any) -> list[Any]:
    if isinstance(data, tuple):
        return list(data)
    return [] if data is None else [data]


def _rooms_list(room: Any) -> list[str] | None:
    if room is None:
        return None
    if isinstance(room, str):
        return [room]
    return list(room)


def _skip_list(skip_sid: Any) -> list[str]:
    if skip_sid is None:
        return []
    if isinstance(skip_sid, str):
        return [skip_sid]
    return [s for s in skip_sid if s is not None]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _channel_names(channels: Iterable[Any]) -> set[str]:
    return {_text(c) for c in channels}
