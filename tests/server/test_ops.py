"""Operations: health, readiness, metrics, request ids, CORS and security headers."""

from __future__ import annotations

from pathlib import Path

from tests.factories import Muster, make_settings, running_muster


async def test_health_and_readiness(muster: Muster) -> None:
    assert await muster.request("GET", "/healthz") == (200, {"status": "ok"})
    assert await muster.request("GET", "/readyz") == (200, {"status": "ok", "storage": "ok", "redis": "off"})


async def test_readiness_fails_when_storage_is_gone(muster: Muster) -> None:
    await muster.kernel.storage.close()
    status, body = await muster.request("GET", "/readyz")
    assert status == 503
    assert body["error"]["code"] == "not_ready" and body["storage"] == "unavailable"
    await muster.kernel.storage.open()


async def test_metrics_count_requests_sockets_events_and_errors(muster: Muster) -> None:
    s = await muster.session()
    await muster.request("GET", "/api/me", s)
    await muster.request("GET", "/api/me")
    client = await muster.socket(s.access_token)
    await client.call("whoami", timeout=5)
    await client.call("nope", timeout=5)
    status, text = await muster.request("GET", "/metrics")
    assert status == 200
    assert 'muster_http_requests_total{method="GET",route="/api/me",status="200"} 1.0' in text
    assert 'muster_http_requests_total{method="GET",route="/api/me",status="401"} 1.0' in text
    assert "muster_sockets_connected 1.0" in text
    assert 'muster_socket_events_total{event="whoami",outcome="ok"} 1.0' in text
    assert 'muster_socket_events_total{event="(unknown)",outcome="refused"} 1.0' in text
    assert "muster_errors_total" in text


async def test_request_id_is_echoed_or_made(muster: Muster) -> None:
    async with muster.http.get(f"{muster.url}/healthz", headers={"X-Request-Id": "abc-123"}) as resp:
        assert resp.headers["X-Request-Id"] == "abc-123"
    async with muster.http.get(f"{muster.url}/healthz", headers={"X-Request-Id": "bad id\twith tab"}) as resp:
        assert resp.headers["X-Request-Id"] != "bad id\twith tab" and len(resp.headers["X-Request-Id"]) == 26


async def test_api_responses_are_not_cached_and_not_sniffed(muster: Muster) -> None:
    async with muster.http.get(f"{muster.url}/api/openapi.json") as resp:
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_cors_allows_listed_origins_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"cors_origins": ["https://console.example"]})
    async with running_muster(settings) as muster:
        preflight = {"Origin": "https://console.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type, authorization"}
        async with muster.http.options(f"{muster.url}/api/auth/login", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://console.example"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        async with muster.http.get(f"{muster.url}/healthz", headers={"Origin": "https://evil.example"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_unexpected_errors_are_a_generic_500(muster: Muster) -> None:
    async def broken_ping() -> None:
        raise RuntimeError("secret internals")

    s = await muster.session("admin")
    # the audit store fails underneath a route: the client sees no internals
    original = muster.kernel.storage.list_audit_records
    muster.kernel.storage.list_audit_records = broken_ping  # type: ignore[method-assign,assignment]
    try:
        status, body = await muster.request("GET", "/api/audit", s)
    finally:
        muster.kernel.storage.list_audit_records = original  # type: ignore[method-assign]
    assert status == 500
    assert body == {"error": {"code": "internal", "message": "internal server error"}}
