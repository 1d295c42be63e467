"""Presence shared by every node of a cluster, in Redis.

Keys, under `<prefix>:presence`:
- `dev:<device_id>` hash: `user`, `kind`, `state`, and one `n:<node>` field per node holding
  the number of that node's open sockets of the device. The device is online while any node
  holds a socket of it (the count across nodes is the sum of the `n:` fields).
- `user:<user_id>` set: the user's connected device ids.
- `expiry` sorted set: `<node>|<device_id>` scored by when that node's share of the device
  expires (ms, Redis clock). Each node pushes its own members forward (`refresh`); a node that
  dies stops doing so, and any surviving node's `expire` removes its shares (after a whole
  cluster went down, the first node to start again does).
- `seen` hash: user id -> last seen (ms).

The expiry is kept per node and device, not per device: a device with sockets on two nodes
must go offline when the node that still serves it closes them, and must not be kept online
by the count of a node that died.

Every change is one Lua script: it reads the user's combined state, changes the entries and
reads it again, so exactly one caller (one node) reports each change, however nodes race.
The scripts derive device keys from the user's set, so they need a single Redis (not Redis
Cluster), as the Socket.IO manager and the control bus do. Times come from Redis' own clock
(`TIME`), so nodes with skewed clocks agree on what has expired.

Presence is soft state: a Redis error while a socket connects or closes is logged and the
socket carries on; `refresh` re-creates this node's devices that Redis lost (a Redis restart,
or a peer that expired them while this node was stalled), and the next `expire` reports them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from rooms.presence import DevicePresence, DeviceState, PresenceState, UserPresence
from server.ids import new_id
from server.logging import get_logger
from server.redis_errors import redis_or_503

log = get_logger("muster.presence.redis")

# Devices per refresh script and expired shares per expire script: bounds how long one
# script holds Redis.
_BATCH = 500
_LOCK_STRIPES = 64

_PRELUDE = """
local base = ARGV[1]
local RANK = {busy = 3, online = 2, away = 1}
local NAMES = {[0] = 'offline', [1] = 'away', [2] = 'online', [3] = 'busy'}
local EXPIRY = base .. ':expiry'
local SEEN = base .. ':seen'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function dev_key(device_id) return base .. ':dev:' .. device_id end
local function user_key(user_id) return base .. ':user:' .. user_id end

-- The user's combined state, and their devices as a flat list: id, kind, state, ...
local function view(user_id)
  local ids = redis.call('SMEMBERS', user_key(user_id))
  table.sort(ids)
  local best = 0
  local devices = {}
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', dev_key(id), 'kind', 'state')
    if f[1] then
      local rank = RANK[f[2]] or 0
      if rank > best then best = rank end
      devices[#devices + 1] = id
      devices[#devices + 1] = f[1]
      devices[#devices + 1] = f[2]
    end
  end
  return NAMES[best], devices
end

-- {changed, user_id, state, last_seen, id, kind, state, ...}
local function report(changed, user_id, state, devices)
  local out = {changed and 1 or 0, user_id, state, redis.call('HGET', SEEN, user_id) or ''}
  for _, v in ipairs(devices) do out[#out + 1] = v end
  return out
end

local function seen(user_id, at)
  local known = tonumber(redis.call('HGET', SEEN, user_id) or '0')
  if at > known then redis.call('HSET', SEEN, user_id, at) end
end

-- Remove one node's share of a device; the device goes when no node holds a socket of it.
local function drop_share(node, device_id)
  local dev = dev_key(device_id)
  redis.call('ZREM', EXPIRY, node .. '|' .. device_id)
  redis.call('HDEL', dev, 'n:' .. node)
  for _, f in ipairs(redis.call('HKEYS', dev)) do
    if string.sub(f, 1, 2) == 'n:' then return end
  end
  local user_id = redis.call('HGET', dev, 'user')
  redis.call('DEL', dev)
  if user_id then redis.call('SREM', user_key(user_id), device_id) end
end
"""

# ARGV: base, user, device, kind, state (if new), node, sockets on this node, ttl ms
_CONNECT = _PRELUDE + """
local user_id, device_id, node = ARGV[2], ARGV[3], ARGV[6]
local now = now_ms()
local before = view(user_id)
local dev = dev_key(device_id)
if redis.call('EXISTS', dev) == 0 then
  redis.call('HSET', dev, 'user', user_id, 'kind', ARGV[4], 'state', ARGV[5])
end
redis.call('HSET', dev, 'n:' .. node, ARGV[7])
redis.call('SADD', user_key(user_id), device_id)
redis.call('ZADD', EXPIRY, now + tonumber(ARGV[8]), node .. '|' .. device_id)
seen(user_id, now)
local after, devices = view(user_id)
return report(after ~= before, user_id, after, devices)
"""

# ARGV: base, user, device, node, sockets left on this node
_DISCONNECT = _PRELUDE + """
local user_id, device_id, node = ARGV[2], ARGV[3], ARGV[4]
local dev = dev_key(device_id)
if redis.call('HGET', dev, 'user') ~= user_id then return false end
local before = view(user_id)
if tonumber(ARGV[5]) > 0 then
  redis.call('HSET', dev, 'n:' .. node, ARGV[5])
else
  drop_share(node, device_id)
end
seen(user_id, now_ms())
local after, devices = view(user_id)
return report(after ~= before, user_id, after, devices)
"""

# ARGV: base, user, device, state
_SET_STATE = _PRELUDE + """
local user_id, device_id = ARGV[2], ARGV[3]
local dev = dev_key(device_id)
if redis.call('HGET', dev, 'user') ~= user_id then return false end
local before = view(user_id)
redis.call('HSET', dev, 'state', ARGV[4])
seen(user_id, now_ms())
local after, devices = view(user_id)
return report(after ~= before, user_id, after, devices)
"""

# ARGV: base, user ids...
_GET = _PRELUDE + """
local out = {}
for i = 2, #ARGV do
  local state, devices = view(ARGV[i])
  out[#out + 1] = report(false, ARGV[i], state, devices)
end
return out
"""

# ARGV: base, node, ttl ms, device ids... Returns the devices whose share is gone (to restore).
_REFRESH = _PRELUDE + """
local node = ARGV[2]
local expires = now_ms() + tonumber(ARGV[3])
local missing = {}
for i = 4, #ARGV do
  local member = node .. '|' .. ARGV[i]
  if redis.call('ZSCORE', EXPIRY, member) and redis.call('HEXISTS', dev_key(ARGV[i]), 'n:' .. node) == 1 then
    redis.call('ZADD', EXPIRY, expires, member)
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
"""

# ARGV: base, ttl ms, limit. Returns {shares removed, report, report, ...} (changed users only).
_EXPIRE = _PRELUDE + """
local ttl, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now_ms(), 'WITHSCORES', 'LIMIT', 0, limit)
local users, order, before = {}, {}, {}
local shares = {}
for i = 1, #due, 2 do
  local member, score = due[i], tonumber(due[i + 1])
  local sep = string.find(member, '|', 1, true)
  if sep then
    local node, device_id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    local user_id = redis.call('HGET', dev_key(device_id), 'user')
    if user_id then
      if users[user_id] == nil then
        users[user_id] = score
        order[#order + 1] = user_id
        before[user_id] = view(user_id)
      elseif score > users[user_id] then
        users[user_id] = score
      end
    end
    shares[#shares + 1] = {node, device_id}
  else
    redis.call('ZREM', EXPIRY, member)
  end
end
for _, share in ipairs(shares) do drop_share(share[1], share[2]) end
local out = {#due / 2}
for _, user_id in ipairs(order) do
  -- last seen: the node's last refresh of the device, when it was still known to be there
  seen(user_id, users[user_id] - ttl)
  local after, devices = view(user_id)
  if after ~= before[user_id] then out[#out + 1] = report(true, user_id, after, devices) end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _presence(reply: Sequence[Any]) -> tuple[bool, UserPresence]:
    """A script's report: whether the user's combined state changed, and the user's presence now."""
    changed, user_id, state, seen = int(reply[0]), _text(reply[1]), _text(reply[2]), _text(reply[3])
    flat = [_text(v) for v in reply[4:]]
    devices = tuple(
        DevicePresence(device_id=flat[i], kind=flat[i + 1], state=cast(DeviceState, flat[i + 2]))
        for i in range(0, len(flat), 3)
    )
    return bool(changed), UserPresence(user_id=user_id, state=cast(PresenceState, state), devices=devices,
                                       last_seen_at=int(seen) if seen else None)


@dataclass
class _LocalDevice:
    """A device with sockets on this node: what it takes to restore it if Redis loses it."""

    user_id: str
    kind: str
    state: DeviceState
    sids: set[str] = field(default_factory=set)


class RedisPresence:
    """Presence for a cluster: device states in Redis, shared by every node."""

    def __init__(self, redis: Redis, prefix: str, *, ttl: int) -> None:
        self._base = f"{prefix}:presence"
        self._ttl_ms = ttl * 1000
        self._node = new_id()  # this process's name in the expiry set
        self._local: dict[str, _LocalDevice] = {}
        self._restored: list[UserPresence] = []
        # Calls for one device run one at a time, so they reach Redis in the order this node made them.
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._set_state = redis.register_script(_SET_STATE)
        self._get = redis.register_script(_GET)
        self._refresh = redis.register_script(_REFRESH)
        self._expire = redis.register_script(_EXPIRE)

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks[hash(device_id) % _LOCK_STRIPES]

    async def _run(self, script: AsyncScript, *args: str | int) -> Any:
        return await script(args=[self._base, *args])

    def _changed(self, reply: Any) -> UserPresence | None:
        if not reply:
            return None
        changed, presence = _presence(reply)
        for device in presence.devices:  # remember the states the cluster holds, to restore them
            local = self._local.get(device.device_id)
            if local is not None:
                local.state = device.state
        return presence if changed else None

    async def connect(self, *, user_id: str, device_id: str, kind: str, sid: str) -> UserPresence | None:
        async with self._lock(device_id):
            local = self._local.get(device_id)
            if local is None:
                local = self._local[device_id] = _LocalDevice(user_id=user_id, kind=kind, state="online")
            local.sids.add(sid)
            try:
                return await self._upsert(device_id, local)
            except RedisError as exc:
                # The socket is accepted all the same; refresh() restores the device once Redis answers.
                log.warning("presence not recorded: redis unavailable", device_id=device_id, error=str(exc))
                return None

    async def _upsert(self, device_id: str, local: _LocalDevice) -> UserPresence | None:
        reply = await self._run(self._connect, local.user_id, device_id, local.kind, local.state, self._node,
                                len(local.sids), self._ttl_ms)
        return self._changed(reply)

    async def disconnect(self, *, user_id: str, device_id: str, sid: str) -> UserPresence | None:
        async with self._lock(device_id):
            local = self._local.get(device_id)
            if local is None or sid not in local.sids:
                return None
            local.sids.discard(sid)
            if not local.sids:
                del self._local[device_id]
            try:
                reply = await self._run(self._disconnect, user_id, device_id, self._node, len(local.sids))
            except RedisError as exc:
                # The share expires by itself: this node no longer refreshes it once it has no socket.
                log.warning("presence not cleared: redis unavailable", device_id=device_id, error=str(exc))
                return None
            return self._changed(reply)

    async def set_state(self, *, user_id: str, device_id: str, state: DeviceState) -> UserPresence | None:
        async with self._lock(device_id), redis_or_503():
            reply = await self._run(self._set_state, user_id, device_id, state)
            local = self._local.get(device_id)
            if reply and local is not None:
                local.state = state
            return self._changed(reply)

    async def get(self, user_ids: list[str]) -> dict[str, UserPresence]:
        found: dict[str, UserPresence] = {}
        for start in range(0, len(user_ids), _BATCH):
            async with redis_or_503():
                replies = await self._run(self._get, *user_ids[start:start + _BATCH])
            for reply in replies:
                _, presence = _presence(reply)
                found[presence.user_id] = presence
        return found

    async def refresh(self) -> None:
        """Push this node's shares forward; restore those Redis lost (reported by the next `expire`)."""
        devices = list(self._local)
        try:
            missing: list[str] = []
            for start in range(0, len(devices), _BATCH):
                reply = await self._run(self._refresh, self._node, self._ttl_ms, *devices[start:start + _BATCH])
                missing += [_text(d) for d in reply]
            for device_id in missing:
                async with self._lock(device_id):
                    local = self._local.get(device_id)
                    if local is None:  # its last socket closed meanwhile
                        continue
                    change = await self._upsert(device_id, local)
                if change is not None:
                    self._restored.append(change)
            if missing:
                log.info("presence restored in redis", devices=len(missing))
        except RedisError as exc:
            log.warning("presence refresh failed: redis unavailable", error=str(exc))

    async def expire(self) -> list[UserPresence]:
        """Remove the shares of nodes that stopped refreshing; return the users whose state changed.

        Also returns the users whose devices `refresh` had to restore, so their return is pushed too.
        """
        changes, self._restored = self._restored, []
        try:
            while True:
                reply = await self._run(self._expire, self._ttl_ms, _BATCH)
                removed, reports = int(reply[0]), reply[1:]
                for report in reports:
                    _, presence = _presence(report)
                    changes.append(presence)
                if removed < _BATCH:
                    break
        except RedisError as exc:
            log.warning("presence expiry failed: redis unavailable", error=str(exc))
        return changes

    async def close(self) -> None:
        """Remove this node's shares: a node that stops cleanly does not wait for them to expire."""
        devices, self._local = self._local, {}
        for device_id, local in devices.items():
            try:
                await self._run(self._disconnect, local.user_id, device_id, self._node, 0)
            except RedisError as exc:
                log.warning("presence not cleared on close: redis unavailable", error=str(exc))
                return
