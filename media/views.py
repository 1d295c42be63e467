"""HTTP routes of calls (the signalling itself is on the socket: media/events.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from media.service import CallService, call_out
from rooms.views import ROOMS
from server.http.api import Api, ApiRequest
from server.schemas import Out

api = Api()
CALLS = web.AppKey("muster.calls", CallService)


class RoomCallOut(Out):
    call: dict[str, Any] | None


@api.route("GET", "/api/rooms/{room_id}/call", summary="The room's live call (consultation), if any",
           tags=["calls"], response=RoomCallOut)
async def room_call(req: ApiRequest[None, None]) -> RoomCallOut:
    """Members only. `call` is null when nobody is in a call in this room; join it with `call.join` on the socket."""
    await req.app[ROOMS].access(req.principal, req.path["room_id"])
    for call in req.app[CALLS].calls.values():
        if call.room.id == req.path["room_id"] and call.ended_at is None:
            return RoomCallOut(call=call_out(call))
    return RoomCallOut(call=None)
