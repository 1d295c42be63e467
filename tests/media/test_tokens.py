"""TURN credentials (coturn use-auth-secret) and signed consultation invitations."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace

import jwt
import pytest

from media.tokens import Invitation, ice_servers, read_invitation, sign_invitation, turn_credentials
from server.errors import Unauthorized
from server.settings import load_settings

SECRET = "a-long-enough-secret-for-tests-0123456789"
INVITE = Invitation(call_id="c1", room_id="r1", user_id="u1", invited_by="h1", expires_at=2_000_000_000)


def test_turn_credentials_follow_coturn() -> None:
    username, credential = turn_credentials("coturn-secret", user_id="u1", now_s=1_700_000_000, ttl=3600)
    assert username == "1700003600:u1"
    expected = base64.b64encode(hmac.new(b"coturn-secret", username.encode(), hashlib.sha1).digest()).decode()
    assert credential == expected


def test_ice_servers_from_settings() -> None:
    media = load_settings(environ={}).media
    assert ice_servers(media, user_id="u1", now_s=0) == []
    media = replace(media, stun_urls=["stun:stun.example:3478"], turn_urls=["turn:turn.example:3478"],
                    turn_secret="s", turn_ttl=600)
    servers = ice_servers(media, user_id="u1", now_s=1000)
    assert servers[0] == {"urls": ["stun:stun.example:3478"]}
    assert servers[1]["urls"] == ["turn:turn.example:3478"] and servers[1]["username"] == "1600:u1"


def test_invitations_round_trip_and_refuse_tampering() -> None:
    token = sign_invitation(SECRET, INVITE)
    assert read_invitation(SECRET, token, now_s=1_900_000_000) == INVITE
    with pytest.raises(Unauthorized) as err:
        read_invitation(SECRET, token, now_s=2_000_000_000)
    assert err.value.code == "call.invitation_expired"
    forged = [
        sign_invitation("another-secret-of-the-same-length-000000", INVITE),
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        jwt.encode({"aud": "muster", "cid": "c1", "rid": "r1", "sub": "u1", "exp": 2_000_000_000}, SECRET,
                   algorithm="HS256"),  # signed with the raw auth secret, like an access token
        jwt.encode({"aud": "muster-consultation-invitation", "cid": "c1", "rid": "r1", "sub": "u1",
                    "exp": 2_000_000_000}, "guessed-" * 5, algorithm="HS256"),  # the right claims, a guessed key
        "", "x" * 3000, "not.a.token",
    ]
    for bad in forged:
        with pytest.raises(Unauthorized) as err:
            read_invitation(SECRET, bad, now_s=1_900_000_000)
        assert err.value.code == "call.bad_invitation", bad[:40]
