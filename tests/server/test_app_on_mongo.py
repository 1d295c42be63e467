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


async def test_chat_on_mongo_standin(tmp_path: Path, standin_url: str) -> None:
    from tests.rooms.conftest import make_room, new_client, send

    settings = make_settings(tmp_path, storage={"backend": "mongo", "mongo_url": standin_url,
                                                "mongo_database": f"muster_chat_{uuid.uuid4().hex[:12]}"})
    store = MongoStorage(settings.storage.mongo_url, settings.storage.mongo_database)
    async with running_muster(settings, storage=store) as muster:
        a = await new_client(muster, "commander")
        b = await new_client(muster)
        room = await make_room(a, b, name="防汛")
        first = await send(a, room, "东沟水库水位上涨", client_id="k1")
        again = await a.ok("message.send", {"room_id": room, "client_id": "k1", "text": "东沟水库水位上涨"})
        assert again["duplicate"] is True and again["event"]["seq"] == first["seq"]
        for i in range(5):
            await send(a, room, f"第{i}次报告", client_id=f"r{i}")
        sync = await b.ok("sync", {"rooms": {room: first["seq"]}})
        assert [e["seq"] for e in sync["rooms"][0]["events"]] == list(range(first["seq"] + 1, first["seq"] + 6))
        assert sync["rooms"][0]["unread"] == 6
        found = (await b.ok("search", {"query": "水位"}))["events"]
        assert [e["id"] for e in found] == [first["id"]]
        await a.ok("message.recall", {"room_id": room, "message_id": first["id"]})
        assert (await b.ok("search", {"query": "水位"}))["events"] == []
        await store.db.client.drop_database(settings.storage.mongo_database)


async def test_files_in_gridfs_on_mongo_standin(tmp_path: Path, standin_url: str) -> None:
    """Resumable upload, attachment and ranged download with file contents in GridFS (through the stand-in)."""
    import asyncio
    import os

    from rooms.files.views import FILES
    from tests.rooms.conftest import make_room, new_client, send
    from tests.rooms.files_helpers import create, download, patch, sha256

    settings = make_settings(tmp_path, storage={"backend": "mongo", "mongo_url": standin_url,
                                                "mongo_database": f"muster_files_{uuid.uuid4().hex[:12]}"})
    store = MongoStorage(settings.storage.mongo_url, settings.storage.mongo_database)
    data = os.urandom(700_000)  # several GridFS chunks
    async with running_muster(settings, storage=store) as muster:
        assert muster.app[FILES].blobs.name == "gridfs"
        a = await new_client(muster, "commander")
        b = await new_client(muster)
        room = await make_room(a, b, name="现场")
        created = await create(muster, a.session, len(data), name="航拍.bin")
        location = created.headers["Location"]
        assert (await patch(muster, a.session, location, 0, data[:300_000])).status == 204
        assert (await patch(muster, a.session, location, 0, data[:10])).status == 409
        done = await patch(muster, a.session, location, 300_000, data[300_000:])
        file_id = done.headers["Muster-File-Id"]
        assert (await download(muster, b.session, file_id)).status == 403
        await send(a, room, "航拍图", attachments=[{"file_id": file_id}])
        got = await download(muster, b.session, file_id)
        assert got.status == 200 and sha256(got.body) == sha256(data)
        part = await download(muster, b.session, file_id, Range="bytes=261000-262999")
        assert part.status == 206 and part.body == data[261_000:263_000]
        assert await store.db["blobs.files"].count_documents({}) == 1
        on_disk = await asyncio.to_thread(lambda: [p for p in tmp_path.rglob("blobs/*/*/*") if p.is_file()])
        assert on_disk == []  # nothing on local disk
        await store.db.client.drop_database(settings.storage.mongo_database)


async def test_workflows_on_mongo_standin(tmp_path: Path, standin_url: str) -> None:
    """An incident verified, a task assigned, accepted, submitted and passed, and the record verified, on the
    MongoDB adapter through the stand-in."""
    import time

    settings = make_settings(tmp_path, storage={"backend": "mongo", "mongo_url": standin_url,
                                                "mongo_database": f"muster_flow_{uuid.uuid4().hex[:12]}"})
    store = MongoStorage(settings.storage.mongo_url, settings.storage.mongo_database)
    async with running_muster(settings, storage=store) as muster:
        commander = await muster.session("commander")
        inspector = await muster.session("inspector")
        worker = await muster.session("responder")
        status, incident = await muster.request("POST", "/api/incidents", worker,
                                                json={"title": "道路塌陷", "type": "collapse", "latitude": 30.5,
                                                      "longitude": 120.25})
        assert status == 201
        status, verified = await muster.request("POST", f"/api/incidents/{incident['id']}/verify", commander,
                                                json={})
        assert status == 200 and verified["room_id"]
        status, task = await muster.request("POST", f"/api/incidents/{incident['id']}/tasks", commander, json={
            "title": "设置围挡", "deadline": int(time.time() * 1000) + 86400_000, "assignee_id": worker.user_id})
        assert status == 201
        for who, action, body in ((worker, "accept", {}), (worker, "submit", {"result": "已设置"}),
                                  (inspector, "pass", {})):
            status, out = await muster.request("POST", f"/api/tasks/{task['id']}/{action}", who, json=body)
            assert status == 200, out
        assert out["state"] == "passed"
        status, record = await muster.request("GET", f"/api/incidents/{incident['id']}/record", commander)
        assert status == 200 and record["verification"]["ok"]
        assert {"incident.report", "incident.verify", "task.assign", "task.accept", "task.submit",
                "task.inspect_pass"} <= {e["action"] for e in record["entries"]}
        await store.db.client.drop_database(settings.storage.mongo_database)
