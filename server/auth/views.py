"""HTTP routes for signing in, refreshing, signing out and managing one's own devices."""

from __future__ import annotations

from aiohttp import web

from server.auth.models import ChangePassword, Login, Me, Refresh, SessionOut
from server.auth.service import Session
from server.errors import Unauthorized
from server.http.api import Api, ApiRequest
from server.kernel import KERNEL
from server.org.models import DeviceList
from server.org.views import device_out, user_out

api = Api()
# A web page's refresh token lives in this cookie: HttpOnly (no script reads it), SameSite=Strict (no other site
# sends it) and sent only to /api/auth (refresh and logout), never with the rest of the API.
REFRESH_COOKIE = "muster_refresh"
COOKIE_PATH = "/api/auth"


def client_address(request: web.Request) -> str:
    if request.app[KERNEL].settings.auth.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.remote or "unknown"


def is_https(request: web.Request) -> bool:
    """Whether the client reached us over HTTPS (as told by a trusted proxy's X-Forwarded-Proto, when trusted)."""
    if request.secure:
        return True
    if request.app[KERNEL].settings.auth.trust_forwarded_for:
        proto = request.headers.get("X-Forwarded-Proto", "")
        return proto.split(",")[0].strip().lower() == "https"
    return False


def refresh_cookie(request: web.Request, value: str, *, max_age: int) -> str:
    """The Set-Cookie value carrying a refresh token (max_age=0 and an empty value clear it)."""
    cookie = f"{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; Max-Age={max_age}"
    return cookie + "; Secure" if is_https(request) else cookie


def clear_refresh_cookie(request: web.Request) -> str:
    return refresh_cookie(request, "", max_age=0)


def session_out(session: Session, *, cookie: bool = False) -> SessionOut:
    return SessionOut(
        access_token=session.access_token, access_expires_at=session.access_expires_at,
        refresh_token="" if cookie else session.refresh_token, refresh_expires_at=session.refresh_expires_at,
        device=device_out(session.device), user=user_out(session.user),
    )


def cookie_session_out(req: ApiRequest[Login, None] | ApiRequest[Refresh, None], session: Session) -> SessionOut:
    """The answer of a "cookie" session: the refresh token in the HttpOnly cookie, not in the body."""
    ttl = req.app[KERNEL].settings.auth.refresh_ttl
    req.response_headers.add("Set-Cookie", refresh_cookie(req.request, session.refresh_token, max_age=ttl))
    return session_out(session, cookie=True)


@api.route("POST", "/api/auth/login", summary="Sign in with a password from a named device", tags=["auth"],
           body=Login, response=SessionOut, auth=False, errors=[401, 403, 429, 503])
async def login(req: ApiRequest[Login, None]) -> SessionOut:
    """Returns a short-lived access token and a refresh token bound to the device.

    With `"session": "cookie"` (web pages) the refresh token is not in the body (`refresh_token` is "") but in the
    answer's `Set-Cookie: muster_refresh=…; HttpOnly; SameSite=Strict; Path=/api/auth; Max-Age=<auth.refresh_ttl>`
    (with `Secure` over HTTPS), so page scripts never hold it."""
    b = req.body
    session = await req.app[KERNEL].auth.login(
        username=b.username, password=b.password, device_name=b.device_name, device_kind=b.device_kind,
        device_id=b.device_id, address=client_address(req.request),
    )
    if b.session == "cookie":
        return cookie_session_out(req, session)
    return session_out(session)


@api.route("POST", "/api/auth/refresh", summary="Trade a refresh token for new tokens (it rotates)",
           tags=["auth"], body=Refresh, response=SessionOut, auth=False, errors=[401])
async def refresh(req: ApiRequest[Refresh, None]) -> SessionOut:
    """Each refresh token works once. Presenting a used one signs the device out.

    Without `refresh_token` in the body (send `{}`), the token is taken from the `muster_refresh` cookie set by a
    `"cookie"` sign-in: the rotated token is set in that cookie again and the body's `refresh_token` is "". A refused
    cookie is cleared (`Max-Age=0`). With neither, the answer is 401."""
    k = req.app[KERNEL]
    address = client_address(req.request)
    if req.body.refresh_token is not None:
        return session_out(await k.auth.refresh(req.body.refresh_token, address=address))
    token = req.request.cookies.get(REFRESH_COOKIE, "")
    if not token:
        raise Unauthorized("no refresh token: send refresh_token, or sign in with \"session\": \"cookie\"",
                           code="auth.unauthenticated")
    try:
        if len(token) > 200:
            raise Unauthorized("refresh token is not valid", code="auth.invalid_refresh")
        session = await k.auth.refresh(token, address=address)
    except Unauthorized as exc:
        exc.headers = {**(exc.headers or {}), "Set-Cookie": clear_refresh_cookie(req.request)}
        raise
    return cookie_session_out(req, session)


@api.route("POST", "/api/auth/logout", summary="Sign this device out", tags=["auth"])
async def logout(req: ApiRequest[None, None]) -> None:
    """Also clears the `muster_refresh` cookie of a `"cookie"` sign-in (`Max-Age=0`)."""
    await req.app[KERNEL].auth.logout(req.principal)
    req.response_headers.add("Set-Cookie", clear_refresh_cookie(req.request))


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
