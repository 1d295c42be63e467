"""python-socketio AsyncServer on the aiohttp app.

A connection carries an access token (``auth={"token": ...}``, or an
``Authorization: Bearer`` header); it is checked at connect and refused with a clear
reason. The connection is bound to the user and device, and joins the rooms
``user:<id>`` and ``device:<id>``. Every event is validated into its payload model
and answered with an ack ``{"data": ...}`` or ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import socketio
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError
from socketio import packet as sio_packet

from server.auth.service import AuthService, Principal
from server.bus import Bus
from server.errors import AppError, BadRequest, Unauthorized, error_body
from server.gateway.fastpath import FastManager, deliver_local, install_fastpath
from server.gateway.heartbeat import Heartbeat
from server.gateway.manager import MusterRedisManager
from server.logging import get_logger
from server.metrics import Metrics
from server.schemas import Payload
from server.settings import Settings
from server.storage.records import Device

log = get_logger("muster.gateway")
P = TypeVar("P", bound=BaseModel)
EventHandler = Callable[["SocketContext", Any], Awaitable[Any]]
ConnectionHook = Callable[["SocketContext"], Awaitable[None]]
DISCONNECT_TOPIC = "sockets.disconnect"
ROOMS_TOPIC = "sockets.rooms"
#: Sockets closed at once during a graceful shutdown.
CLOSE_BATCH = 500


_COMPACT_ARGS = {"separators": (",", ":")}
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Utf8Json:
    """The JSON module python-socketio encodes with: UTF-8 text as is, not as \\uXXXX escapes
    (Chinese text would otherwise cost six bytes a character on the wire instead of three)."""

    loads = staticmethod(json.loads)

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        if kwargs == _COMPACT_ARGS:  # how python-socketio encodes every packet: one encoder, made once
            return _COMPACT.encode(obj)
        return json.dumps(obj, ensure_ascii=False, **kwargs)


class MusterPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, with `Utf8Json` and a binary check that walks the data without
    recursion. Every packet sent (each broadcast and each ack) is checked for binary attachments;
    the library's check makes a call, a list and a reduce per item of the data."""

    json = Utf8Json

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        # As the library's: bytes or bytearray anywhere in nested lists and dict values.
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, (bytes, bytearray)):
                return True
        return False


class TokenBucket:
    """Events a device may send: `rate` per second on average, `burst` at once."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class SocketContext:
    """Who is on the other end of a socket, and until when their token is good."""

    sid: str
    principal: Principal
    expires_at: float  # epoch seconds

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def device_id(self) -> str:
        return self.principal.device_id


class RenewToken(Payload):
    token: str


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def device_room(device_id: str) -> str:
    return f"device:{device_id}"


class Gateway:
    def __init__(self, *, settings: Settings, auth: AuthService, metrics: Metrics, bus: Bus) -> None:
        self._auth = auth
        self._metrics = metrics
        self._bus = bus
        manager: socketio.AsyncManager
        if settings.redis.url:
            manager = MusterRedisManager(settings.redis.url, prefix=settings.redis.prefix, metrics=metrics)
        else:
            manager = FastManager()
        origins = settings.server.cors_origins
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            serializer=MusterPacket,
            json=Utf8Json,
            cors_allowed_origins="*" if "*" in origins else (origins or None),
            logger=False,
            engineio_logger=False,
            max_http_buffer_size=1_000_000,
        )
        install_fastpath(self.sio)  # websockets: no permessage-deflate, direct writes (fastpath.py)
        self.heartbeat = Heartbeat(self.sio)  # one timer for every socket's PING and timeout (heartbeat.py)
        self.heartbeat.install()
        self._contexts: dict[str, SocketContext] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._device_sockets: dict[str, int] = {}  # this node's sockets per device
        self._rate = (settings.gateway.events_per_second, settings.gateway.event_burst)
        self._on_connected: list[ConnectionHook] = []
        self._after_accept: list[ConnectionHook] = []
        self._on_disconnected: list[ConnectionHook] = []
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown_event)
        self.on("whoami")(self._whoami)
        self.on("auth.renew", RenewToken, allow_expired=True)(self._renew)
        bus.subscribe(DISCONNECT_TOPIC, self._on_disconnect_request)
        bus.subscribe(ROOMS_TOPIC, self._on_rooms_request)
        bus.on_reconnect(self.recheck_connections)
        auth.on_device_revoked(self._device_revoked)

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    @property
    def local_connections(self) -> int:
        return len(self._contexts)

    # -- connections -----------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = ""
        if isinstance(auth, dict) and isinstance(auth.get("token"), str):
            token = auth["token"]
        else:
            header = str(environ.get("HTTP_AUTHORIZATION", ""))
            if header.lower().startswith("bearer "):
                token = header[7:].strip()
        try:
            if not token:
                raise Unauthorized("connect with auth={token: <access token>}", code="auth.unauthenticated")
            principal = await self._auth.authenticate(token)
            claims_exp = float(self._auth.token_expiry(token))
        except AppError as exc:
            self._metrics.socket_connects.labels("refused").inc()
            log.info("socket refused", code=exc.code, sid=sid)
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.to_dict()) from None
        ctx = SocketContext(sid=sid, principal=principal, expires_at=claims_exp)
        self._contexts[sid] = ctx
        self._device_sockets[ctx.device_id] = self._device_sockets.get(ctx.device_id, 0) + 1
        await self.sio.enter_room(sid, user_room(principal.user_id))
        await self.sio.enter_room(sid, device_room(principal.device_id))
        for hook in self._on_connected:
            await hook(ctx)
        if self._after_accept:
            # The client learns it is connected only when this handler returns; what these hooks
            # send must come after that, so they run as a task.
            self.sio.start_background_task(self._run_after_accept, ctx)
        self._metrics.socket_connects.labels("accepted").inc()
        self._metrics.sockets.inc()
        log.info("socket connected", sid=sid, user_id=principal.user_id, device_id=principal.device_id)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        ctx = self._contexts.pop(sid, None)
        if ctx is not None:
            self._metrics.sockets.dec()
            log.info("socket disconnected", sid=sid, reason=str(reason))
            left = self._device_sockets.get(ctx.device_id, 1) - 1
            if left > 0:
                self._device_sockets[ctx.device_id] = left
            else:  # the device's last socket on this node
                self._device_sockets.pop(ctx.device_id, None)
                self._buckets.pop(ctx.device_id, None)
            for hook in self._on_disconnected:
                try:
                    await hook(ctx)
                except Exception:
                    log.exception("disconnect hook failed", sid=sid)

    def on_connected(self, hook: ConnectionHook, *, after_accept: bool = False) -> None:
        """Run `hook(ctx)` when a socket is accepted: before the client is told (to join rooms), or
        with `after_accept`, once it has been told (for hooks that emit, such as presence)."""
        (self._after_accept if after_accept else self._on_connected).append(hook)

    async def _run_after_accept(self, ctx: SocketContext) -> None:
        for hook in self._after_accept:
            try:
                await hook(ctx)
            except Exception:
                log.exception("connect hook failed", sid=ctx.sid)

    def on_disconnected(self, hook: ConnectionHook) -> None:
        self._on_disconnected.append(hook)

    def contexts_of_user(self, user_id: str) -> list[SocketContext]:
        """This node's connections of a user."""
        return [c for c in self._contexts.values() if c.user_id == user_id]

    async def join_user(self, user_id: str, room: str) -> None:
        """Put every socket of the user, on every node, into `room`."""
        await self._bus.publish(ROOMS_TOPIC, {"user_id": user_id, "room": room, "join": True})

    async def leave_user(self, user_id: str, room: str) -> None:
        await self._bus.publish(ROOMS_TOPIC, {"user_id": user_id, "room": room, "join": False})

    async def _on_rooms_request(self, message: dict[str, Any]) -> None:
        user_id, room = str(message.get("user_id", "")), str(message.get("room", ""))
        for ctx in self.contexts_of_user(user_id):
            if message.get("join"):
                await self.sio.enter_room(ctx.sid, room)
            else:
                await self.sio.leave_room(ctx.sid, room)

    async def emit(self, event: str, data: Any, *, room: str | list[str], skip_sid: str | None = None) -> None:
        """Send to a Socket.IO room (or several: each socket gets one copy) on every node."""
        await self.sio.emit(event, data, room=room, skip_sid=skip_sid)

    async def _device_revoked(self, device: Device) -> None:
        await self.disconnect_room(device_room(device.id), reason="device_revoked")

    async def disconnect_room(self, room: str, *, reason: str) -> None:
        """Close every socket in `room` on every node."""
        await self._bus.publish(DISCONNECT_TOPIC, {"room": room, "reason": reason})

    async def _on_disconnect_request(self, message: dict[str, Any]) -> None:
        room, reason = str(message.get("room", "")), str(message.get("reason", ""))
        for sid, _eio_sid in list(self.sio.manager.get_participants("/", room)):
            if sid not in self._contexts:
                continue
            await self.sio.emit("session.ended", {"reason": reason}, to=sid)
            await self.sio.disconnect(sid, ignore_queue=True)

    async def close_all(self) -> None:
        """Graceful shutdown: tell every local socket (one broadcast, encoded once), then close them,
        many at a time (one by one, 10,000 sockets and their disconnect hooks took minutes)."""
        sids = list(self._contexts)
        try:
            await deliver_local(self.sio, "server.shutdown", {}, namespace="/", room=sids)
        except Exception:  # telling is a courtesy: closing is what matters
            log.warning("could not tell every socket about the shutdown", exc_info=True)
        for start in range(0, len(sids), CLOSE_BATCH):
            await asyncio.gather(*(self._close_socket(sid) for sid in sids[start:start + CLOSE_BATCH]))
        await self.heartbeat.stop()
        # Close the Engine.IO transports too: a client that does not hang up by itself would
        # otherwise keep its websocket handler (and the shutdown) waiting.
        if self.sio.eio.sockets:
            await self.sio.eio.disconnect()
        await self.sio.shutdown()
        await self._stop_manager()

    async def _close_socket(self, sid: str) -> None:
        try:
            await self.sio.disconnect(sid, ignore_queue=True)
        except Exception:  # a socket that is already gone
            log.debug("socket already closed", sid=sid)

    async def start(self) -> None:
        """Start the Socket.IO client manager now, not at the first connection, so a node
        receives what other nodes emit from the moment it is up."""
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        self.heartbeat.start()

    async def _stop_manager(self) -> None:
        # python-socketio's shutdown() leaves its Redis listener running and subscribed.
        manager = self.sio.manager
        listener = getattr(manager, "thread", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        for name in ("pubsub", "redis"):
            client = getattr(manager, name, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def recheck_connections(self) -> None:
        """Close local sockets whose device was revoked or whose user was disabled.

        Run after the control bus reconnects: a revocation published while this node was
        not listening never reached it.
        """
        for ctx in list(self._contexts.values()):
            try:
                await self._auth.authenticate_ids(ctx.user_id, ctx.device_id)
            except AppError as exc:
                log.info("closing a socket whose session ended while the bus was down", sid=ctx.sid, code=exc.code)
                await self.sio.emit("session.ended", {"reason": exc.code}, to=ctx.sid)
                await self.sio.disconnect(ctx.sid, ignore_queue=True)

    # -- events ----------------------------------------------------------------------

    def on(
        self, event: str, model: type[P] | None = None, *, allow_expired: bool = False
    ) -> Callable[[EventHandler], EventHandler]:
        """Register `handler(ctx, payload)`; its return value becomes the ack's `data`.

        Events are refused once the connection's access token has expired, except
        those registered with `allow_expired` (auth.renew, which brings a new one).
        """

        def decorator(handler: EventHandler) -> EventHandler:
            counted = self._metrics.socket_events
            ok, refused, failed = counted.labels(event, "ok"), counted.labels(event, "refused"), counted.labels(
                event, "error")

            async def entry(sid: str, *args: Any) -> dict[str, Any]:
                structlog.contextvars.clear_contextvars()
                structlog.contextvars.bind_contextvars(sid=sid, socket_event=event)
                try:
                    ctx = self._context(sid, allow_expired=allow_expired)
                    structlog.contextvars.bind_contextvars(user_id=ctx.user_id, device_id=ctx.device_id)
                    bucket = self._buckets.get(ctx.device_id)
                    if bucket is None:
                        bucket = self._buckets[ctx.device_id] = TokenBucket(*self._rate)
                    if not bucket.take():
                        raise AppError("too many events from this device; slow down", code="rate_limited",
                                       status=429)
                    if len(args) > 1:
                        raise BadRequest("send one payload object per event", code="request.invalid")
                    data = args[0] if args else None
                    payload = _validate(model, data) if model is not None else None
                    if model is None and data not in (None, {}):
                        raise BadRequest(f"{event} takes no payload", code="request.invalid")
                    result = await handler(ctx, payload)
                except AppError as exc:
                    refused.inc()
                    log.info("event refused", code=exc.code, message=exc.message)
                    return exc.to_dict()
                except Exception:
                    failed.inc()
                    self._metrics.errors.labels("socket").inc()
                    log.exception("unexpected error in socket event")
                    return error_body("internal", "internal server error")
                ok.inc()
                if isinstance(result, BaseModel):
                    result = result.model_dump(mode="json")
                return {"data": result}

            self.sio.on(event, entry)
            return handler

        return decorator

    async def _on_unknown_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        self._metrics.socket_events.labels("(unknown)", "refused").inc()
        log.info("unknown event", socket_event=str(event)[:64], sid=sid)
        return error_body("event.unknown", f"there is no event named {str(event)[:64]!r}")

    def _context(self, sid: str, *, allow_expired: bool = False) -> SocketContext:
        ctx = self._contexts.get(sid)
        if ctx is None:
            raise Unauthorized("this connection is not signed in", code="auth.unauthenticated")
        if ctx.expires_at < time.time() and not allow_expired:
            raise Unauthorized("access token expired: send auth.renew with a new one", code="auth.token_expired")
        return ctx

    async def _whoami(self, ctx: SocketContext, _payload: None) -> dict[str, Any]:
        return {"user_id": ctx.user_id, "device_id": ctx.device_id, "sid": ctx.sid,
                "expires_at": int(ctx.expires_at * 1000)}

    async def _renew(self, ctx: SocketContext, payload: RenewToken) -> dict[str, Any]:
        principal = await self._auth.authenticate(payload.token)
        if principal.user_id != ctx.user_id or principal.device_id != ctx.device_id:
            raise BadRequest("the new token belongs to another user or device", code="auth.token_mismatch")
        ctx.principal = principal
        ctx.expires_at = float(self._auth.token_expiry(payload.token))
        return {"expires_at": int(ctx.expires_at * 1000)}


def _validate(model: type[P], data: Any) -> P:
    if not isinstance(data, dict):
        raise BadRequest("the payload must be an object", code="request.invalid")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        raise BadRequest(f"invalid payload: {loc}: {err['msg']}", code="request.invalid") from None
