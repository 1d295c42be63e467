"""Payloads and responses of the sign-in API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from server.org.models import DeviceOut, UserOut
from server.schemas import Id, Name, Out, Password, Payload


class Login(Payload):
    username: Name
    password: Password
    device_name: Name
    device_kind: Literal["console", "mobile"]
    # Give the id returned by an earlier sign-in on this device to keep it one device.
    device_id: Id | None = None
    # "cookie" (web pages): the refresh token goes into an HttpOnly cookie, never into the page's hands.
    session: Literal["token", "cookie"] = "token"


class Refresh(Payload):
    # Absent: the refresh token is taken from the muster_refresh cookie (a "cookie" session).
    refresh_token: Annotated[str, StringConstraints(min_length=3, max_length=200)] | None = None


class ChangePassword(Payload):
    current_password: Password
    new_password: Password


class SessionOut(Out):
    access_token: str
    access_expires_at: int
    # Empty for a "cookie" session: the refresh token is in the muster_refresh cookie.
    refresh_token: str
    refresh_expires_at: int
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme name, not a secret)
    device: DeviceOut
    user: UserOut


class Me(Out):
    user: UserOut
    device: DeviceOut
    permissions: list[str]
