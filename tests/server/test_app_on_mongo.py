"""The whole app on the MongoDB adapter, served by the wire-protocol stand-in (not a real MongoDB).

The storage contract suite checks each store method; this checks that the app's flows (sign-in,
refresh, the back office, the audit chain) work end to end on the Mongo backend too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.storage.mongo import MongoStorage
from tests.factories import make_settings, running_muster
from tests.storage.mongo_standin import MongoStandin


@pytest.fixture(scope="module")
def standin_url() -> Iterator[str]:
    with MongoStandin() as url:
        yield url


async def test_app_flows_on_mongo_standin(tmp_path: Path, standin_url: str) -> None:
    settings = make_settings(tmp_path, storage={"backend": "mongo", "mongo_url": standin_url,
                                                "mongo_database": f"muster_app_{uuid.uuid4().hex[:12]}"})
    store = MongoStorage(settings.storage.mongo_url, settings.storage.mongo_database)
    async with running_muster(settings, storage=store) as muster:
        assert await muster.request("GET", "/readyz") == (200, {"status": "ok", "storage": "ok",
                                                                "redis": "off"})
        admin = await muster.session("admin")
        status, dept = await muster.request("POST", "/api/admin/departments", admin,
                                            json={"name": "示范县", "kind": "county"})
        assert status == 201
        status, user = await muster.request("POST", "/api/admin/users", admin, json={
            "username": "wang", "display_name": "王磊", "password": "a-long-password", "department_id": dept["id"]})
        assert status == 201
        wang = await muster.login("wang", "a-long-password", device_kind="mobile")
        status, fresh = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": wang.refresh_token})
        assert status == 200
        status, _ = await muster.request("POST", "/api/auth/refresh", json={"refresh_token": wang.refresh_token})
        assert status == 401  # reuse of a rotated token signs the device out
        status, body = await muster.request("GET", "/api/me",
                                            headers={"Authorization": f"Bearer {fresh['access_token']}"})
        assert status == 401 and body["error"]["code"] == "auth.device_revoked"
        status, verify = await muster.request("GET", "/api/audit/verify", admin)
        assert status == 200 and verify["ok"] and verify["records"] >= 6
        status, page = await muster.request("GET", "/api/audit?chain=admin", admin)
        assert [r["action"] for r in page["records"]][:2] == ["user.create", "department.create"]
        await store.db.client.drop_database(settings.storage.mongo_database)
