"""Web pages keep the refresh token in an HttpOnly cookie: sign in, refresh (it rotates), reuse, sign out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from server.auth.views import REFRESH_COOKIE
from tests.factories import PASSWORD, Muster, make_settings, running_muster


def login_body(username: str, **extra: Any) -> dict[str, Any]:
    return {"username": username, "password": PASSWORD, "device_name": "浏览器", "device_kind": "console", **extra}


def cookie_attributes(header: str) -> tuple[str, dict[str, str]]:
    """`name=value; A; B=c` -> ("name=value", {"a": "", "b": "c"}), attribute names lower-cased."""
    first, *rest = [part.strip() for part in header.split(";")]
    attributes = {}
    for part in rest:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return first, attributes


def refresh_set_cookie(resp: aiohttp.ClientResponse) -> tuple[str, dict[str, str]]:
    headers = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(f"{REFRESH_COOKIE}=")]
    assert len(headers) == 1, resp.headers.getall("Set-Cookie", [])
    first, attributes = cookie_attributes(headers[0])
    return first.partition("=")[2], attributes


@pytest.fixture
async def browser(muster: Muster) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies like a browser (unsafe=True: the server is on 127.0.0.1, an IP address)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def jar_cookie(session: aiohttp.ClientSession, muster: Muster) -> str | None:
    cookies = session.cookie_jar.filter_cookies(URL(f"{muster.url}/api/auth/refresh"))
    morsel = cookies.get(REFRESH_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


async def cookie_login(muster: Muster, browser: aiohttp.ClientSession) -> dict[str, Any]:
    user = await muster.create_user(roles=["commander"])
    async with browser.post(f"{muster.url}/api/auth/login", json=login_body(user["username"], session="cookie")) as r:
        assert r.status == 200
        return dict(await r.json())


async def test_cookie_login_keeps_the_refresh_token_out_of_the_body(muster: Muster,
                                                                    browser: aiohttp.ClientSession) -> None:
    user = await muster.create_user()
    async with browser.post(f"{muster.url}/api/auth/login", json=login_body(user["username"], session="cookie")) as r:
        assert r.status == 200
        body = await r.json()
        value, attributes = refresh_set_cookie(r)
    assert body["refresh_token"] == ""
    assert body["access_token"] and body["refresh_expires_at"] > 0
    assert value.startswith(body["device"]["id"] + ".")
    assert "httponly" in attributes
    assert attributes["samesite"] == "Strict"
    assert attributes["path"] == "/api/auth"
    assert attributes["max-age"] == str(muster.kernel.settings.auth.refresh_ttl)
    assert "secure" not in attributes  # plain HTTP here
    assert jar_cookie(browser, muster) == value
    # Path-scoped: the cookie is not sent with the rest of the API.
    assert not browser.cookie_jar.filter_cookies(URL(f"{muster.url}/api/me"))


async def test_refresh_with_the_cookie_rotates_it(muster: Muster, browser: aiohttp.ClientSession) -> None:
    await cookie_login(muster, browser)
    first = jar_cookie(browser, muster)
    async with browser.post(f"{muster.url}/api/auth/refresh", json={}) as r:
        assert r.status == 200
        body = await r.json()
        value, attributes = refresh_set_cookie(r)
    assert body["refresh_token"] == ""
    assert value != first and value.startswith(body["device"]["id"] + ".")
    assert "httponly" in attributes and attributes["samesite"] == "Strict" and attributes["path"] == "/api/auth"
    assert jar_cookie(browser, muster) == value
    status, me = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert status == 200 and me["device"]["id"] == body["device"]["id"]
    # and again: each rotated cookie works once
    async with browser.post(f"{muster.url}/api/auth/refresh", json={}) as r:
        assert r.status == 200
    assert jar_cookie(browser, muster) not in (first, value)


async def test_an_old_cookie_is_refused_and_signs_the_device_out(muster: Muster,
                                                                 browser: aiohttp.ClientSession) -> None:
    await cookie_login(muster, browser)
    old = jar_cookie(browser, muster)
    async with browser.post(f"{muster.url}/api/auth/refresh", json={}) as r:
        assert r.status == 200
        fresh = await r.json()
    # Someone presents the used cookie value again: taken as stolen, the device is signed out.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as thief:
        async with thief.post(f"{muster.url}/api/auth/refresh", json={},
                              headers={"Cookie": f"{REFRESH_COOKIE}={old}"}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "auth.invalid_refresh"
            value, attributes = refresh_set_cookie(r)
            assert value == "" and attributes["max-age"] == "0" and attributes["path"] == "/api/auth"
    status, body = await muster.request("GET", "/api/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert status == 401 and body["error"]["code"] == "auth.device_revoked"
    # The current cookie died with the device; the refused refresh clears it from the browser.
    async with browser.post(f"{muster.url}/api/auth/refresh", json={}) as r:
        assert r.status == 401
    assert jar_cookie(browser, muster) is None
    records = await muster.kernel.storage.list_audit_records(chain=f"user:{fresh['user']['id']}", limit=100)
    assert any(r.action == "auth.device_revoked" for r in records)


async def test_refresh_without_cookie_or_token_is_401(muster: Muster) -> None:
    status, body = await muster.request("POST", "/api/auth/refresh", json={})
    assert status == 401 and body["error"]["code"] == "auth.unauthenticated"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for value in ("garbage", "a" * 300, "01abc.def"):
            async with client.post(f"{muster.url}/api/auth/refresh", json={},
                                   headers={"Cookie": f"{REFRESH_COOKIE}={value}"}) as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "auth.invalid_refresh"
                cleared, attributes = refresh_set_cookie(r)
                assert cleared == "" and attributes["max-age"] == "0"


async def test_logout_clears_the_cookie(muster: Muster, browser: aiohttp.ClientSession) -> None:
    body = await cookie_login(muster, browser)
    assert jar_cookie(browser, muster)
    async with browser.post(f"{muster.url}/api/auth/logout",
                            headers={"Authorization": f"Bearer {body['access_token']}"}) as r:
        assert r.status == 204
        value, attributes = refresh_set_cookie(r)
        assert value == "" and attributes["max-age"] == "0" and attributes["path"] == "/api/auth"
    assert jar_cookie(browser, muster) is None
    async with browser.post(f"{muster.url}/api/auth/refresh", json={}) as r:
        assert r.status == 401


async def test_token_sessions_work_as_before(muster: Muster) -> None:
    user = await muster.create_user()
    for extra in ({}, {"session": "token"}):
        async with muster.http.post(f"{muster.url}/api/auth/login", json=login_body(user["username"], **extra)) as r:
            assert r.status == 200
            body = await r.json()
            assert "Set-Cookie" not in r.headers
        assert body["refresh_token"].startswith(body["device"]["id"] + ".")
        async with muster.http.post(f"{muster.url}/api/auth/refresh",
                                    json={"refresh_token": body["refresh_token"]}) as r:
            assert r.status == 200
            again = await r.json()
            assert "Set-Cookie" not in r.headers
        assert again["refresh_token"] and again["refresh_token"] != body["refresh_token"]
        status, _ = await muster.request("GET", "/api/me",
                                         headers={"Authorization": f"Bearer {again['access_token']}"})
        assert status == 200


async def test_a_bad_session_kind_is_refused(muster: Muster) -> None:
    user = await muster.create_user()
    status, body = await muster.request("POST", "/api/auth/login", json=login_body(user["username"], session="jar"))
    assert status == 400 and body["error"]["code"] == "request.invalid"


@pytest.mark.parametrize(("trust", "headers", "secure"), [
    (False, {}, False),
    (False, {"X-Forwarded-Proto": "https"}, False),
    (True, {"X-Forwarded-Proto": "https"}, True),
    (True, {"X-Forwarded-Proto": "http"}, False),
])
async def test_the_cookie_is_secure_over_https(tmp_path: Path, trust: bool, headers: dict[str, str],
                                               secure: bool) -> None:
    settings = make_settings(tmp_path, auth={"trust_forwarded_for": trust})
    async with running_muster(settings) as muster:
        user = await muster.create_user()
        async with muster.http.post(f"{muster.url}/api/auth/login", headers=headers,
                                    json=login_body(user["username"], session="cookie")) as r:
            assert r.status == 200
            _, attributes = refresh_set_cookie(r)
        assert ("secure" in attributes) is secure
