"""Credentials for consultations: time-limited TURN credentials and signed invitation links. Pure.

TURN follows coturn's `use-auth-secret` (the "TURN REST API" draft): the username is
`<expiry unix seconds>:<user id>` and the password is base64(HMAC-SHA1(static-auth-secret, username)),
so coturn accepts it until the expiry without knowing Muster's users.

An invitation lets one named user (a department lead who is not in the room) join one
consultation until it expires: an HS256 token with its own audience, signed with a key derived
from the auth secret, so it can never pass for an access token or the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import jwt

from server.errors import Unauthorized
from server.settings import MediaSettings

INVITATION_AUDIENCE = "muster-consultation-invitation"


@dataclass(frozen=True, slots=True)
class Invitation:
    call_id: str
    room_id: str
    user_id: str
    invited_by: str
    expires_at: int  # unix seconds


def ice_servers(settings: MediaSettings, *, user_id: str, now_s: int) -> list[dict[str, Any]]:
    """The RTCIceServer list for a browser (`new RTCPeerConnection({iceServers})`)."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret, user_id=user_id, now_s=now_s,
                                                ttl=settings.turn_ttl)
        servers.append({"urls": list(settings.turn_urls), "username": username, "credential": credential})
    return servers


def turn_credentials(secret: str, *, user_id: str, now_s: int, ttl: int) -> tuple[str, str]:
    username = f"{now_s + ttl}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"muster consultation invitations", hashlib.sha256).digest()


def sign_invitation(secret: str, invitation: Invitation) -> str:
    claims = {"aud": INVITATION_AUDIENCE, "cid": invitation.call_id, "rid": invitation.room_id,
              "sub": invitation.user_id, "by": invitation.invited_by, "exp": invitation.expires_at}
    return jwt.encode(claims, _key(secret), algorithm="HS256")


def read_invitation(secret: str, token: str, *, now_s: int) -> Invitation:
    """The invitation a token carries; Unauthorized when it is forged, altered or expired."""
    if not token or len(token) > 2048:
        raise Unauthorized("this invitation is not valid", code="call.bad_invitation")
    try:
        claims = jwt.decode(token, _key(secret), algorithms=["HS256"], audience=INVITATION_AUDIENCE,
                            options={"require": ["exp", "aud", "sub", "cid", "rid"], "verify_exp": False})
    except jwt.PyJWTError:
        raise Unauthorized("this invitation is not valid", code="call.bad_invitation") from None
    # Expiry is checked against the caller's clock (tests move it), not the machine's.
    if int(claims["exp"]) <= now_s:
        raise Unauthorized("this invitation has expired", code="call.invitation_expired")
    return Invitation(call_id=str(claims["cid"]), room_id=str(claims["rid"]), user_id=str(claims["sub"]),
                      invited_by=str(claims.get("by", "")), expires_at=int(claims["exp"]))
