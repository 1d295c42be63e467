"""Socket events of calls (thin: validate, call the service, answer).

Client to server (each answered by an ack `{"data"}` or `{"error"}`):
`call.start`, `call.join` (→ ice_servers, the call), `call.publish` (→ publication, offer),
`call.subscribe` / `call.unsubscribe` (→ offer), `call.answer`, `call.mute`, `call.mode`
(`audio_only` for weak networks), `call.reconnect` (network changed → a fresh offer), `call.leave`;
hosts: `call.host_mute`, `call.remove`, `call.end`, `call.invite` (→ invitation), `call.record`;
commanders: `call.monitor`.

Server to client: `call.offer` {call_id, sdp, type}, `call.joined`, `call.left`, `call.published`,
`call.unpublished`, `call.muted`, `call.recording`, `call.removed`, `call.ended`, `call.invited`,
`call.monitored` (to the person being monitored).
"""

from __future__ import annotations

from typing import Any

from media.models import (
    AnswerBody,
    CallRef,
    JoinCall,
    ModeBody,
    MuteBody,
    ParticipantRef,
    PublicationRef,
    PublishBody,
    RecordBody,
    StartCall,
    UserRef,
)
from media.service import CallService, call_out, publication_out
from server.gateway.server import Gateway, SocketContext


class GatewayCallNotifier:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def to_sid(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self._gateway.emit(event, data, room=sid)

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        await self._gateway.emit(event, data, room=f"user:{user_id}")


def register_call_events(gateway: Gateway, calls: CallService) -> None:
    on = gateway.on
    gateway.on_disconnected(lambda ctx: calls.disconnected(ctx.sid))

    @on("call.start", StartCall)
    async def start(ctx: SocketContext, p: StartCall) -> dict[str, Any]:
        return {"call": call_out(await calls.start(ctx.principal, p.room_id, kind=p.kind))}

    @on("call.join", JoinCall)
    async def join(ctx: SocketContext, p: JoinCall) -> dict[str, Any]:
        call, participant = await calls.join(ctx.principal, p.call_id, sid=ctx.sid, invitation=p.invitation)
        return {"call": call_out(call), "participant_id": participant.id, "ice_servers": calls.ice(ctx.principal)}

    @on("call.publish", PublishBody)
    async def publish(ctx: SocketContext, p: PublishBody) -> dict[str, Any]:
        publication, offer = await calls.publish(ctx.principal, p.call_id, kind=p.kind, source=p.source)
        return {"publication": publication_out(publication), "offer": offer}

    @on("call.subscribe", PublicationRef)
    async def subscribe(ctx: SocketContext, p: PublicationRef) -> dict[str, Any]:
        return {"offer": await calls.subscribe(ctx.principal, p.call_id, p.publication_id)}

    @on("call.unsubscribe", PublicationRef)
    async def unsubscribe(ctx: SocketContext, p: PublicationRef) -> dict[str, Any]:
        return {"offer": await calls.unsubscribe(ctx.principal, p.call_id, p.publication_id)}

    @on("call.answer", AnswerBody)
    async def answer(ctx: SocketContext, p: AnswerBody) -> dict[str, Any]:
        await calls.answer(ctx.principal, p.call_id, p.sdp)
        return {}

    @on("call.mute", MuteBody)
    async def mute(ctx: SocketContext, p: MuteBody) -> dict[str, Any]:
        return {"publication": publication_out(await calls.mute_self(ctx.principal, p.call_id, p.publication_id,
                                                                      p.muted))}

    @on("call.mode", ModeBody)
    async def mode(ctx: SocketContext, p: ModeBody) -> dict[str, Any]:
        return {"offer": await calls.set_mode(ctx.principal, p.call_id, p.mode)}

    @on("call.reconnect", CallRef)
    async def reconnect(ctx: SocketContext, p: CallRef) -> dict[str, Any]:
        return {"offer": await calls.reconnect(ctx.principal, p.call_id)}

    @on("call.leave", CallRef)
    async def leave(ctx: SocketContext, p: CallRef) -> dict[str, Any]:
        await calls.leave(ctx.principal, p.call_id)
        return {}

    @on("call.host_mute", MuteBody)
    async def host_mute(ctx: SocketContext, p: MuteBody) -> dict[str, Any]:
        return {"publication": publication_out(await calls.host_mute(ctx.principal, p.call_id, p.publication_id,
                                                                      p.muted))}

    @on("call.remove", ParticipantRef)
    async def remove(ctx: SocketContext, p: ParticipantRef) -> dict[str, Any]:
        await calls.remove(ctx.principal, p.call_id, p.participant_id)
        return {}

    @on("call.end", CallRef)
    async def end(ctx: SocketContext, p: CallRef) -> dict[str, Any]:
        await calls.end(ctx.principal, p.call_id)
        return {}

    @on("call.invite", UserRef)
    async def invite(ctx: SocketContext, p: UserRef) -> dict[str, Any]:
        return {"invitation": await calls.invite(ctx.principal, p.call_id, p.user_id)}

    @on("call.record", RecordBody)
    async def record(ctx: SocketContext, p: RecordBody) -> dict[str, Any]:
        return await calls.record(ctx.principal, p.call_id, p.on)

    @on("call.monitor", UserRef)
    async def monitor(ctx: SocketContext, p: UserRef) -> dict[str, Any]:
        return {"publications": await calls.monitor(ctx.principal, p.call_id, p.user_id)}
