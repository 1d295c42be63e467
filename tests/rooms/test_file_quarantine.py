"""Uploads scanned by a real ClamAV daemon (tests/clamd.py: the test signatures only, nothing downloaded)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rooms.files.views import FILES
from tests.clamd import HARMLESS_PROBE, HARMLESS_SIGNATURE, eicar
from tests.factories import make_settings, running_muster
from tests.rooms.conftest import make_room, new_client, send, until
from tests.rooms.files_helpers import call, create, download, patch, upload


async def test_a_hit_is_quarantined_never_served_and_audited(tmp_path: Path, clamd_address: str) -> None:
    settings = make_settings(tmp_path, files={"clamd": clamd_address},
                             gateway={"events_per_second": 1000.0, "event_burst": 1000})
    async with running_muster(settings) as muster:
        owner = await new_client(muster, "commander")
        member = await new_client(muster)
        room = await make_room(owner, member)
        events: list[Any] = []
        owner.sio.on("file.quarantined", events.append)

        clean = await upload(muster, owner.session, b"ordinary report " * 1000, name="report.txt")
        assert (await call(muster, "GET", f"/api/files/{clean}", owner.session)).body["status"] == "ready"
        assert (await download(muster, owner.session, clean)).status == 200

        infected = await upload(muster, owner.session, b"prefix " + HARMLESS_PROBE + b" suffix", name="x.doc")
        info = (await call(muster, "GET", f"/api/files/{infected}", owner.session)).body
        assert info["status"] == "quarantined"
        refused = await download(muster, owner.session, infected)
        assert refused.status == 403 and refused.body["error"]["code"] == "file.quarantined"
        ack = await owner.call("message.send", {"room_id": room, "client_id": "q1", "text": "看看",
                                                "attachments": [{"file_id": infected}]})
        assert ack["error"]["code"] == "file.quarantined"
        await until(lambda: bool(events), what="file.quarantined event")
        assert events[0]["id"] == infected

        records = await muster.kernel.storage.list_audit_records(action="file.quarantine")
        assert [(r.subject_id, r.details["signature"]) for r in records] == [(infected, HARMLESS_SIGNATURE)]

        eicar_id = await upload(muster, owner.session, eicar(), name="eicar.com")
        assert (await call(muster, "GET", f"/api/files/{eicar_id}", owner.session)).body["status"] == "quarantined"
        # A clean file can still be shared as usual.
        sent = await send(owner, room, "报告", attachments=[{"file_id": clean}])
        assert sent["body"]["attachments"][0]["file_id"] == clean


async def test_an_unreachable_daemon_holds_the_file_until_a_later_scan(tmp_path: Path) -> None:
    socket_path = tmp_path / "no-clamd.sock"
    settings = make_settings(tmp_path, files={"clamd": f"unix:{socket_path}", "clamd_timeout": 2.0})
    async with running_muster(settings) as muster:
        s = await muster.session()
        created = await create(muster, s, 11, extra={})
        done = await patch(muster, s, created.headers["Location"], 0, b"hello world")
        file_id = done.headers["Muster-File-Id"]
        assert (await call(muster, "GET", f"/api/files/{file_id}", s)).body["status"] == "scanning"
        held = await download(muster, s, file_id)
        assert held.status == 409 and held.body["error"]["code"] == "file.scanning"
        assert held.headers["Retry-After"]
        job = await muster.kernel.storage.get_job(f"scan:{file_id}")
        assert job is not None and job.payload == {"file_id": file_id}

        # The daemon comes back (a stand-in that answers like clamd does for clean content).
        async def fake_clamd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readexactly(10) == b"zINSTREAM\0"
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                if size == 0:
                    break
                await reader.readexactly(size)
            writer.write(b"stream: OK\0")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(fake_clamd, path=str(socket_path))
        try:
            files = muster.app[FILES]
            await files._scan_job(job)
        finally:
            server.close()
        assert (await call(muster, "GET", f"/api/files/{file_id}", s)).body["status"] == "ready"
        assert (await download(muster, s, file_id)).body == b"hello world"
