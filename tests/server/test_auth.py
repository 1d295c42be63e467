"""Sign-in, refresh rotation, sign-out, throttling, and every bad token refused on HTTP and at socket connect."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.settings import DEFAULT_JWT_SECRET
from tests.factories import PASSWORD, Muster, Session, make_settings, running_muster


async def audit_actions(muster: Muster, user_id: str) -> list[str]:
    records = await muster.kernel.storage.list_audit_records(chain=f"user:{user_id}", limit=1000)
    return [r.action for r in reversed(records)]


async def test_login_returns_tokens_bound_to_a_device(muster: Muster) -> None:
    user = await muster.create_user(roles=["commander"])
    s = await muster.login(user["username"], device_kind="mobile", device_name="王磊的手机")
    assert s.device["kind"] == "mobile" and s.device["name"] == "王磊的手机"
    assert s.refresh_token.startswith(s.device_id + ".")
    status, me = await muster.request("GET", "/api/me", s)
    assert status == 200
    assert me["user"]["id"] == user["id"] and me["device"]["id"] == s.device_id
    assert "password_hash" not in me["user"]
    assert "auth.login" in await audit_actions(muster, user["id"])


async def test_login_again_with_device_id_keeps_one_device(muster: Muster) -> None:
    user = await muster.create_user()
    first = await muster.login(user["username"])
    again = await muster.login(user["username"], device_id=first.device_id)
    assert again.device_id == first.device_id
    status, body = await muster.request("GET", "/api/me/devices", again)
    assert status == 200 and [d["id"] for d in body["devices"]] == [first.device_id]
    # the first refresh token was replaced by the second sign-in
    status, _ = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": first.refresh_token})
    assert status == 401


@pytest.mark.parametrize("username", ["nobody", "known"])
async def test_wrong_credentials_are_refused_alike(muster: Muster, username: str) -> None:
    user = await muster.create_user(username="known")
    status, body = await muster.request("POST", "/api/auth/login", json={
        "username": username, "password": "wrong-password", "device_name": "x", "device_kind": "console"})
    assert status == 401
    assert body["error"]["code"] == "auth.bad_credentials"
    if username == "known":
        assert "auth.login_failed" in await audit_actions(muster, user["id"])


async def test_disabled_account_cannot_sign_in(muster: Muster) -> None:
    admin = await muster.session("admin")
    user = await muster.create_user()
    status, _ = await muster.request("PATCH", f"/api/admin/users/{user['id']}", admin, json={"disabled": True})
    assert status == 200
    status, body = await muster.request("POST", "/api/auth/login", json={
        "username": user["username"], "password": PASSWORD, "device_name": "x", "device_kind": "console"})
    assert status == 403 and body["error"]["code"] == "auth.account_disabled"


async def test_failed_logins_are_throttled_per_account(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"max_failures_per_account": 3, "max_failures_per_address": 100})
    async with running_muster(settings) as muster:
        user = await muster.create_user()
        bad = {"username": user["username"], "password": "nope-nope", "device_name": "x", "device_kind": "console"}
        for _ in range(3):
            assert (await muster.request("POST", "/api/auth/login", json=bad))[0] == 401
        status, body = await muster.request("POST", "/api/auth/login", json={**bad, "password": PASSWORD})
        assert status == 429 and body["error"]["code"] == "auth.throttled"
        # another account from the same address is not affected
        other = await muster.create_user()
        await muster.login(other["username"])


async def test_failed_logins_are_throttled_per_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"max_failures_per_account": 100, "max_failures_per_address": 4})
    async with running_muster(settings) as muster:
        victims = [await muster.create_user() for _ in range(5)]
        for v in victims[:4]:
            status, _ = await muster.request("POST", "/api/auth/login", json={
                "username": v["username"], "password": "bad-bad-bad", "device_name": "x", "device_kind": "console"})
            assert status == 401
        async with muster.http.post(f"{muster.url}/api/auth/login", json={
            "username": victims[4]["username"], "password": PASSWORD, "device_name": "x", "device_kind": "console",
        }) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) > 0


async def test_successful_login_resets_the_account_counter(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth={"max_failures_per_account": 3})
    async with running_muster(settings) as muster:
        user = await muster.create_user()
        bad = {"username": user["username"], "password": "nope-nope", "device_name": "x", "device_kind": "console"}
        for _ in range(2):
            await muster.request("POST", "/api/auth/login", json=bad)
        await muster.login(user["username"])
        for _ in range(2):
            assert (await muster.request("POST", "/api/auth/login", json=bad))[0] == 401
        await muster.login(user["username"])


async def test_refresh_rotates_and_reuse_signs_the_device_out(muster: Muster) -> None:
    s = await muster.session()
    status, fresh = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": s.refresh_token})
    assert status == 200
    assert fresh["refresh_token"] != s.refresh_token and fresh["device"]["id"] == s.device_id
    # a stolen copy of the old token is presented: the device is signed out
    status, body = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": s.refresh_token})
    assert status == 401 and body["error"]["code"] == "auth.invalid_refresh"
    status, body = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert status == 401
    status, body = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert status == 401 and body["error"]["code"] == "auth.device_revoked"
    assert "auth.device_revoked" in await audit_actions(muster, s.user_id)


@pytest.mark.parametrize("token", ["", "nodot", "unknown.secret", "a" * 199])
async def test_garbage_refresh_tokens_are_refused(muster: Muster, token: str) -> None:
    status, body = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": token})
    assert 400 <= status < 500 and "code" in body["error"]


async def test_expired_refresh_token_is_refused(muster: Muster) -> None:
    s = await muster.session()
    device = await muster.kernel.storage.get_device(s.device_id)
    assert device is not None and device.refresh_hash is not None
    await muster.kernel.storage.set_refresh(s.device_id, expected_hash=device.refresh_hash,
                                            new_hash=device.refresh_hash, expires_at=1, at=2)
    status, body = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": s.refresh_token})
    assert status == 401 and body["error"]["code"] == "auth.refresh_expired"


async def test_logout_revokes_the_device_only(muster: Muster) -> None:
    user = await muster.create_user()
    console = await muster.login(user["username"], device_kind="console")
    phone = await muster.login(user["username"], device_kind="mobile")
    assert (await muster.request("POST", "/api/auth/logout", console))[0] == 204
    assert (await muster.request("GET", "/api/me", console))[0] == 401
    assert (await muster.request("GET", "/api/me", phone))[0] == 200
    status, body = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": console.refresh_token})
    assert status == 401


async def test_user_cannot_revoke_someone_elses_device(muster: Muster) -> None:
    alice = await muster.session()
    bob = await muster.session()
    status, body = await muster.request("DELETE", f"/api/me/devices/{bob.device_id}", alice)
    assert status == 404 and body["error"]["code"] == "device.not_found"
    assert (await muster.request("GET", "/api/me", bob))[0] == 200


async def test_change_password(muster: Muster) -> None:
    s = await muster.session()
    status, body = await muster.request("POST", "/api/me/password", s, json={
        "current_password": "wrong-one", "new_password": "a-new-password"})
    assert status == 403
    status, _ = await muster.request("POST", "/api/me/password", s, json={
        "current_password": PASSWORD, "new_password": "short"})
    assert status == 400
    status, _ = await muster.request("POST", "/api/me/password", s, json={
        "current_password": PASSWORD, "new_password": "a-new-password"})
    assert status == 204
    await muster.login(s.username, "a-new-password")


# -- bad tokens: HTTP and socket connect refuse them all ------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def expired(s: Session) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "muster", "aud": "muster", "sub": s.user_id, "did": s.device_id, "iat": now - 100,
                       "exp": now - 60}, DEFAULT_JWT_SECRET, algorithm="HS256")


def tampered(s: Session) -> str:
    header, payload, signature = s.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = claims["exp"] + 86400
    return ".".join([header, _b64(claims), signature])


def alg_none(s: Session) -> str:
    now = int(time.time())
    claims = {"iss": "muster", "aud": "muster", "sub": s.user_id, "did": s.device_id, "iat": now, "exp": now + 600}
    return ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""])


def wrong_secret(s: Session) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "muster", "aud": "muster", "sub": s.user_id, "did": s.device_id, "iat": now,
                       "exp": now + 600}, "another-secret-of-sufficient-length", algorithm="HS256")


def wrong_audience(s: Session) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "muster", "aud": "elsewhere", "sub": s.user_id, "did": s.device_id, "iat": now,
                       "exp": now + 600}, DEFAULT_JWT_SECRET, algorithm="HS256")


BAD_TOKENS: dict[str, tuple[Callable[[Session], str], str]] = {
    "expired": (expired, "auth.token_expired"),
    "tampered": (tampered, "auth.invalid_token"),
    "alg_none": (alg_none, "auth.invalid_token"),
    "wrong_secret": (wrong_secret, "auth.invalid_token"),
    "wrong_audience": (wrong_audience, "auth.invalid_token"),
    "garbage": (lambda s: "not-a-jwt", "auth.invalid_token"),
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_refused_on_http(muster: Muster, kind: str) -> None:
    s = await muster.session("admin")
    make, code = BAD_TOKENS[kind]
    status, body = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {make(s)}"})
    assert status == 401 and body["error"]["code"] == code


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_refused_at_socket_connect(muster: Muster, kind: str) -> None:
    s = await muster.session()
    make, code = BAD_TOKENS[kind]
    with pytest.raises(socketio.exceptions.ConnectionError) as info:
        await muster.socket(make(s))
    assert code in str(info.value)


async def test_revoked_device_token_refused_on_http_and_socket(muster: Muster) -> None:
    s = await muster.session()
    assert (await muster.request("POST", "/api/auth/logout", s))[0] == 204
    status, body = await muster.request("GET", "/api/me", s)
    assert status == 401 and body["error"]["code"] == "auth.device_revoked"
    with pytest.raises(socketio.exceptions.ConnectionError, match="auth.device_revoked"):
        await muster.socket(s.access_token)


async def test_socket_without_token_is_refused_with_a_reason(muster: Muster) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError, match="auth.unauthenticated"):
        await muster.socket(None, auth={})


async def test_disabled_users_tokens_stop_working(muster: Muster) -> None:
    admin = await muster.session("admin")
    s = await muster.session()
    await muster.request("PATCH", f"/api/admin/users/{s.user_id}", admin, json={"disabled": True})
    status, body = await muster.request("GET", "/api/me", s)
    assert status == 401 and body["error"]["code"] in ("auth.account_disabled", "auth.device_revoked")


async def test_missing_or_malformed_authorization_header(muster: Muster) -> None:
    for header in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        status, body = await muster.request("GET", "/api/me", headers=header)
        assert status == 401 and body["error"]["code"] == "auth.unauthenticated"


# -- an external identity provider (government SSO) ---------------------------------------------------------


def _keypair(kind: str) -> tuple[Any, str]:
    key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, pem


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_external_identity_provider_tokens(tmp_path: Path, alg: str) -> None:
    key, pem = _keypair(alg)
    issuer = "https://sso.gov.example"
    settings = make_settings(tmp_path, sso={"issuer": issuer, "audience": "muster-sso", "public_key": pem})
    async with running_muster(settings) as muster:
        user = await muster.create_user(username="zhangwei", roles=["commander"])
        now = int(time.time())
        claims = {"iss": issuer, "aud": "muster-sso", "sub": "gov-123", "preferred_username": "zhangwei",
                  "iat": now, "exp": now + 300, "sid": "sso-session-1"}
        token = jwt.encode(claims, key, algorithm=alg)
        status, me = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert status == 200, me
        assert me["user"]["id"] == user["id"] and me["device"]["sso"] is True
        client = await muster.socket(token)
        ack = await client.call("whoami", timeout=5)
        assert ack["data"]["device_id"] == me["device"]["id"]

        # an SSO session can be signed out like any device
        admin = await muster.session("admin")
        assert (await muster.request("DELETE", f"/api/admin/devices/{me['device']['id']}", admin))[0] == 204
        status, body = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert status == 401 and body["error"]["code"] == "auth.device_revoked"

        # wrong audience, unknown user, or a key the SSO does not hold: refused
        other_key, _ = _keypair(alg)
        for bad in (
            jwt.encode({**claims, "aud": "other"}, key, algorithm=alg),
            jwt.encode({**claims, "preferred_username": "ghost", "sid": "s2"}, key, algorithm=alg),
            jwt.encode({**claims, "sid": "s3"}, other_key, algorithm=alg),
            jwt.encode({**claims, "sid": "s4"}, DEFAULT_JWT_SECRET, algorithm="HS256"),
        ):
            status, body = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {bad}"})
            assert status == 401, body


async def test_socket_event_after_token_expiry_is_refused_until_renewed(muster: Muster) -> None:
    s = await muster.session()
    client = await muster.socket(s.access_token)
    ctx = next(iter(muster.kernel.gateway._contexts.values()))
    ctx.expires_at = time.time() - 1  # the token ran out while the socket stayed open
    ack = await client.call("whoami", timeout=5)
    assert ack["error"]["code"] == "auth.token_expired"
    # a token of another user cannot be slipped in
    other = await muster.session()
    ack = await client.call("auth.renew", {"token": other.access_token}, timeout=5)
    assert ack["error"]["code"] in ("auth.token_mismatch", "auth.token_expired")
    status, fresh = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": s.refresh_token})
    assert status == 200
    # auth.renew must itself be reachable with an expired token
    ack = await client.call("auth.renew", {"token": fresh["access_token"]}, timeout=5)
    assert "data" in ack, ack
    ack = await client.call("whoami", timeout=5)
    assert ack["data"]["user_id"] == s.user_id
    await asyncio.sleep(0)
