"""HTTP routes for signing in, refreshing, signing out and managing one's own devices."""

from __future__ import annotations

from aiohttp import web

from server.auth.models import ChangePassword, Login, Me, Refresh, SessionOut
from server.auth.service import Session
from server.http.api import Api, ApiRequest
from server.kernel import KERNEL
from server.org.models import DeviceList
from server.org.views import device_out, user_out

api = Api()


def client_address(request: web.Request) -> str:
    if request.app[KERNEL].settings.auth.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.remote or "unknown"


def session_out(session: Session) -> SessionOut:
    return SessionOut(
        access_token=session.access_token, access_expires_at=session.access_expires_at,
        refresh_token=session.refresh_token, refresh_expires_at=session.refresh_expires_at,
        device=device_out(session.device), user=user_out(session.user),
    )


@api.route("POST", "/api/auth/login", summary="Sign in with a password from a named device", tags=["auth"],
           body=Login, response=SessionOut, auth=False, errors=[401, 403, 429, 503])
async def login(req: ApiRequest[Login, None]) -> SessionOut:
    """Returns a short-lived access token and a refresh token bound to the device."""
    b = req.body
    session = await req.app[KERNEL].auth.login(
        username=b.username, password=b.password, device_name=b.device_name, device_kind=b.device_kind,
        device_id=b.device_id, address=client_address(req.request),
    )
    return session_out(session)


@api.route("POST", "/api/auth/refresh", summary="Trade a refresh token for new tokens (it rotates)",
           tags=["auth"], body=Refresh, response=SessionOut, auth=False, errors=[401])
async def refresh(req: ApiRequest[Refresh, None]) -> SessionOut:
    """Each refresh token works once. Presenting a used one signs the device out."""
    session = await req.app[KERNEL].auth.refresh(req.body.refresh_token, address=client_address(req.request))
    return session_out(session)


@api.route("POST", "/api/auth/logout", summary="Sign this device out", tags=["auth"])
async def logout(req: ApiRequest[None, None]) -> None:
    await req.app[KERNEL].auth.logout(req.principal)


@api.route("GET", "/api/me", summary="Who I am, on which device, and what I may do", tags=["auth"], response=Me)
async def me(req: ApiRequest[None, None]) -> Me:
    k = req.app[KERNEL]
    p = req.principal
    allowed = [a for a in k.permissions.role_actions if k.permissions.allows(p, a, None)]
    return Me(user=user_out(p.user), device=device_out(p.device), permissions=allowed)


@api.route("POST", "/api/me/password", summary="Change my password", tags=["auth"], body=ChangePassword)
async def change_password(req: ApiRequest[ChangePassword, None]) -> None:
    await req.app[KERNEL].auth.change_password(
        req.principal, current=req.body.current_password, new=req.body.new_password
    )


@api.route("GET", "/api/me/devices", summary="My devices", tags=["auth"], response=DeviceList)
async def my_devices(req: ApiRequest[None, None]) -> DeviceList:
    devices = await req.app[KERNEL].auth.list_devices(req.principal.user_id)
    return DeviceList(devices=[device_out(d) for d in devices])


@api.route("DELETE", "/api/me/devices/{device_id}", summary="Sign one of my devices out (its sockets close at once)",
           tags=["auth"])
async def revoke_my_device(req: ApiRequest[None, None]) -> None:
    k = req.app[KERNEL]
    device = await k.auth.get_device_of(req.principal.user_id, req.path["device_id"])
    await k.permissions.require(req.principal, "device.revoke_own", device, subject_type="device",
                                subject_id=device.id)
    await k.auth.revoke_device(device, actor_id=req.principal.user_id, actor_device_id=req.principal.device_id,
                               reason="user")
