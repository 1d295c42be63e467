"""A real tus client (the `tuspy` package) uploads 50 MiB through a network that drops, and resumes.

Between tuspy and Muster sits a TCP proxy that aborts the connection (RST) in the middle of the
PATCH body, as a phone losing its mobile network would. The server keeps the bytes that arrived;
a new tuspy uploader asks for the offset (HEAD) and sends only the rest. The file downloaded
afterwards must be byte-identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from tests.factories import Muster
from tests.rooms.files_helpers import TUS, CuttingProxy, call

SIZE = 50 * 1024 * 1024


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "现场视频.mp4"
    with path.open("wb") as out:
        for _ in range(SIZE // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    return path


async def test_tuspy_resumes_a_50_mib_upload_after_the_connection_drops(muster: Muster, big_file: Path) -> None:
    session = await muster.session("responder", device_kind="mobile")
    port = muster.server.port
    assert port is not None
    async with CuttingProxy(port) as proxy:
        through_proxy = tus_client.TusClient(f"http://127.0.0.1:{proxy.port}/api/uploads",
                                             headers=session.headers)
        # One PATCH for the whole file, so the drop lands in the middle of a request body.
        first = through_proxy.uploader(str(big_file), chunk_size=SIZE, metadata={"filename": big_file.name})
        proxy.cut_after = 20 * 1024 * 1024
        with pytest.raises((TusCommunicationError, TusUploadFailed)):
            await asyncio.to_thread(first.upload)
        assert proxy.cuts == 1
        assert first.url is not None
        location = "/api/uploads/" + first.url.rsplit("/", 1)[1]

        # The server keeps what arrived before the drop (it notices the reset a moment later).
        kept = 0
        for _ in range(500):
            head = await call(muster, "HEAD", location, session, headers=TUS)
            kept = int(head.headers["Upload-Offset"])
            if kept:
                break
            await asyncio.sleep(0.02)
        assert 0 < kept < SIZE

        # A new uploader for the same upload URL asks the offset and sends the rest only.
        # (In a thread: the constructor already asks the server, which runs in this event loop.)
        resumed = await asyncio.to_thread(through_proxy.uploader, str(big_file), url=first.url,
                                          chunk_size=8 * 1024 * 1024)
        assert resumed.offset == kept
        await asyncio.to_thread(resumed.upload)
        assert resumed.offset == SIZE

    state = await call(muster, "GET", location, session)
    assert state.status == 200 and state.body["offset"] == SIZE
    file = state.body["file"]
    expected = hashlib.sha256(await asyncio.to_thread(big_file.read_bytes)).hexdigest()
    assert file["sha256"] == expected and file["size"] == SIZE and file["name"] == "现场视频.mp4"
    digest = hashlib.sha256()
    received = 0
    async with muster.http.get(f"{muster.url}/api/files/{file['id']}/content", headers=session.headers) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(1 << 20):
            digest.update(chunk)
            received += len(chunk)
    assert received == SIZE and digest.hexdigest() == expected
