"""Multi-device presence: each device reports a state; a pure rule combines them per user.

Presence is global, not per node: on one node it lives in memory, on a cluster in Redis,
where each device entry expires unless its node keeps refreshing it, so the devices of a
node that dies go offline by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from server.auth.service import Principal
from server.errors import BadRequest
from server.gateway.server import SocketContext
from server.ids import now_ms
from server.logging import get_logger
from server.permissions import Permissions
from server.storage.ports import Storage
from server.tasks import cancel_and_wait

log = get_logger("muster.presence")

PresenceState = Literal["online", "away", "busy", "offline"]
DeviceState = Literal["online", "away", "busy"]

# A user is busy if any device says so (someone in a meeting on the console is busy even
# while the phone in their pocket is online); otherwise online if any device is online;
# otherwise away if any is away; offline with no device connected.
_RANK: dict[str, int] = {"busy": 3, "online": 2, "away": 1, "offline": 0}


def combine_device_states(states: Iterable[str]) -> PresenceState:
    """The user's presence from their connected devices' states (pure)."""
    best: PresenceState = "offline"
    for state in states:
        if _RANK.get(state, 0) > _RANK[best]:
            best = state  # type: ignore[assignment]
    return best


@dataclass(frozen=True, slots=True)
class DevicePresence:
    device_id: str
    kind: str
    state: DeviceState


@dataclass(frozen=True, slots=True)
class UserPresence:
    user_id: str
    state: PresenceState
    devices: tuple[DevicePresence, ...] = ()
    last_seen_at: int | None = None


@dataclass
class _Entry:
    user_id: str
    kind: str
    state: DeviceState
    expires_at: float
    sockets: set[str] = field(default_factory=set)


class PresenceStore(Protocol):
    """Where device states live. Every method returns the users whose combined state changed."""

    async def connect(self, *, user_id: str, device_id: str, kind: str, sid: str) -> UserPresence | None:
        """A socket of the device connected (the device is online unless it said otherwise)."""

    async def disconnect(self, *, user_id: str, device_id: str, sid: str) -> UserPresence | None:
        """A socket closed; the device goes offline when it has no socket left."""

    async def set_state(self, *, user_id: str, device_id: str, state: DeviceState) -> UserPresence | None:
        """The device reports online, away or busy."""

    async def get(self, user_ids: list[str]) -> dict[str, UserPresence]: ...

    async def refresh(self) -> None:
        """Keep this node's devices alive (called every `ttl / 3` seconds)."""

    async def expire(self) -> list[UserPresence]:
        """Turn devices whose node stopped refreshing them offline; return changed users."""

    async def close(self) -> None: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryPresence:
    """Presence for one node: in this process."""

    def __init__(self) -> None:
        self._devices: dict[str, _Entry] = {}
        self._by_user: dict[str, set[str]] = {}
        self._last_seen: dict[str, int] = {}

    def _user(self, user_id: str) -> UserPresence:
        devices = tuple(
            DevicePresence(device_id=d, kind=self._devices[d].kind, state=self._devices[d].state)
            for d in sorted(self._by_user.get(user_id, ()))
        )
        return UserPresence(user_id=user_id, state=combine_device_states(d.state for d in devices),
                            devices=devices, last_seen_at=self._last_seen.get(user_id))

    def _changed(self, user_id: str, before: PresenceState) -> UserPresence | None:
        after = self._user(user_id)
        return after if after.state != before else None

    async def connect(self, *, user_id: str, device_id: str, kind: str, sid: str) -> UserPresence | None:
        before = self._user(user_id).state
        entry = self._devices.get(device_id)
        if entry is None:
            entry = self._devices[device_id] = _Entry(user_id=user_id, kind=kind, state="online",
                                                      expires_at=float("inf"))
            self._by_user.setdefault(user_id, set()).add(device_id)
        entry.sockets.add(sid)
        self._last_seen[user_id] = _now_ms()
        return self._changed(user_id, before)

    async def disconnect(self, *, user_id: str, device_id: str, sid: str) -> UserPresence | None:
        before = self._user(user_id).state
        entry = self._devices.get(device_id)
        if entry is None:
            return None
        entry.sockets.discard(sid)
        self._last_seen[user_id] = _now_ms()
        if not entry.sockets:
            del self._devices[device_id]
            self._by_user.get(user_id, set()).discard(device_id)
        return self._changed(user_id, before)

    async def set_state(self, *, user_id: str, device_id: str, state: DeviceState) -> UserPresence | None:
        entry = self._devices.get(device_id)
        if entry is None:
            return None
        before = self._user(user_id).state
        entry.state = state
        self._last_seen[user_id] = _now_ms()
        return self._changed(user_id, before)

    async def get(self, user_ids: list[str]) -> dict[str, UserPresence]:
        return {user_id: self._user(user_id) for user_id in user_ids}

    async def refresh(self) -> None:
        return None

    async def expire(self) -> list[UserPresence]:
        return []  # devices of this process cannot outlive it

    async def close(self) -> None:
        return None


class PresenceNotifier(Protocol):
    async def presence_changed(self, presence: UserPresence, room_ids: list[str]) -> None:
        """Tell the user's own devices and everyone sharing a room with them."""


def presence_out(p: UserPresence) -> dict[str, Any]:
    return {"user_id": p.user_id, "state": p.state,
            "devices": [{"device_id": d.device_id, "kind": d.kind, "state": d.state} for d in p.devices],
            "last_seen_at": p.last_seen_at}


class PresenceService:
    """Presence for sockets: marks devices online and offline and pushes changes to those who may see them."""

    def __init__(self, *, store: PresenceStore, storage: Storage, permissions: Permissions,
                 notifier: PresenceNotifier, ttl: int) -> None:
        self._store = store
        self._storage = storage
        self._permissions = permissions
        self._notifier = notifier
        self._ttl = ttl
        self._task: asyncio.Task[None] | None = None

    async def _push(self, change: UserPresence | None) -> None:
        if change is None:
            return
        rooms = [room.id for room, _ in await self._storage.list_user_rooms(change.user_id)]
        await self._notifier.presence_changed(change, rooms)

    async def connected(self, ctx: SocketContext) -> None:
        await self._push(await self._store.connect(user_id=ctx.user_id, device_id=ctx.device_id,
                                                   kind=ctx.principal.device.kind, sid=ctx.sid))

    async def disconnected(self, ctx: SocketContext) -> None:
        # The device goes offline first: a storage hiccup below must not leave it online for good.
        change = await self._store.disconnect(user_id=ctx.user_id, device_id=ctx.device_id, sid=ctx.sid)
        try:
            await self._storage.touch_device(ctx.device_id, at=now_ms())
        finally:
            await self._push(change)

    async def set_state(self, ctx: SocketContext, state: DeviceState) -> dict[str, Any]:
        change = await self._store.set_state(user_id=ctx.user_id, device_id=ctx.device_id, state=state)
        await self._push(change)
        current = (await self._store.get([ctx.user_id]))[ctx.user_id]
        return presence_out(current)

    async def get(self, principal: Principal, *, user_ids: list[str], room_id: str | None) -> list[dict[str, Any]]:
        """Presence of named users (anyone signed in may see the directory's), or of a room's members
        (members only)."""
        wanted = list(dict.fromkeys(user_ids))
        if room_id is not None:
            room = await self._storage.get_room(room_id)
            member = await self._storage.get_member(room_id, principal.user_id) if room else None
            if room is None or member is None:
                await self._permissions.require(
                    principal, "room.read", RoomAccessView(room_id), subject_type="room", subject_id=room_id,
                    code="room.not_member", message="you are not a member of this room")
            wanted += [m.user_id for m in await self._storage.list_members(room_id) if m.user_id not in wanted]
        else:
            await self._permissions.require(principal, "org.read")
        if not wanted:
            raise BadRequest("name user_ids or a room_id", code="request.invalid")
        found = await self._store.get(wanted)
        return [presence_out(found[u]) for u in wanted]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_alive(), name="muster-presence")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._store.close()

    async def _keep_alive(self) -> None:
        # Refresh this node's devices and turn offline the devices of nodes that stopped doing so.
        while True:
            await asyncio.sleep(max(1.0, self._ttl / 3))
            try:
                await self._store.refresh()
                for change in await self._store.expire():
                    try:
                        await self._push(change)
                    except Exception:  # one failed push must not swallow the others
                        log.exception("presence push failed", user_id=change.user_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence keep-alive failed")


@dataclass(frozen=True, slots=True)
class RoomAccessView:
    """What the room.read rule sees for a room the asker is not in."""

    room_id: str
    member: None = None
