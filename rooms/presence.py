"""Multi-device presence: each device reports a state; a pure rule combines them per user.

Presence is global, not per node: on one node it lives in memory, on a cluster in Redis,
where each device entry expires unless its node keeps refreshing it, so the devices of a
node that dies go offline by themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

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
