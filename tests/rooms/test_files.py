"""Uploads (tus 1.0 over a real port), downloads, attachments and who may see a file."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from rooms.files.views import FILES
from tests.factories import Muster, make_settings, running_muster
from tests.rooms.conftest import connect, make_room, new_client, send, until
from tests.rooms.files_helpers import (
    OCTETS,
    TUS,
    call,
    create,
    download,
    patch,
    sha256,
    upload,
)

PAYLOAD = os.urandom(300_000)


def png_bytes(size: tuple[int, int] = (800, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def test_options_announces_the_protocol(muster: Muster) -> None:
    reply = await call(muster, "OPTIONS", "/api/uploads")
    assert reply.status == 204
    assert reply.headers["Tus-Resumable"] == "1.0.0"
    assert reply.headers["Tus-Version"] == "1.0.0"
    assert set(reply.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "checksum", "expiration"}
    assert int(reply.headers["Tus-Max-Size"]) == muster.app[FILES].settings.max_upload_size
    assert "sha256" in reply.headers["Tus-Checksum-Algorithm"].split(",")


async def test_upload_in_parts_then_download_identical(muster: Muster) -> None:
    s = await muster.session("responder")
    created = await create(muster, s, len(PAYLOAD), name="堤坝裂缝.bin")
    assert created.status == 201 and created.headers["Tus-Resumable"] == "1.0.0"
    location = created.headers["Location"]
    assert location.startswith("/api/uploads/") and "Upload-Expires" in created.headers
    head = await call(muster, "HEAD", location, s, headers=TUS)
    assert (head.status, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (200, "0",
                                                                                          str(len(PAYLOAD)))
    assert head.headers["Cache-Control"] == "no-store"
    first = await patch(muster, s, location, 0, PAYLOAD[:100_000])
    assert first.status == 204 and first.headers["Upload-Offset"] == "100000"
    assert "Muster-File-Id" not in first.headers
    head = await call(muster, "HEAD", location, s, headers=TUS)
    assert head.headers["Upload-Offset"] == "100000"
    last = await patch(muster, s, location, 100_000, PAYLOAD[100_000:])
    assert last.status == 204 and last.headers["Upload-Offset"] == str(len(PAYLOAD))
    file_id = last.headers["Muster-File-Id"]

    info = await call(muster, "GET", f"/api/files/{file_id}", s)
    assert info.status == 200
    assert info.body["sha256"] == sha256(PAYLOAD) and info.body["size"] == len(PAYLOAD)
    assert info.body["name"] == "堤坝裂缝.bin" and info.body["status"] == "ready"
    assert info.body["mime"] == "application/octet-stream"  # random bytes: nothing claimed is believed
    got = await download(muster, s, file_id)
    assert got.status == 200 and got.body == PAYLOAD
    assert got.headers["ETag"] == f'"{sha256(PAYLOAD)}"'
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    state = await call(muster, "GET", location, s)
    assert state.status == 200 and state.body["offset"] == len(PAYLOAD) and state.body["file"]["id"] == file_id


async def test_creation_with_upload_and_checksums(muster: Muster) -> None:
    s = await muster.session()
    created = await create(muster, s, 20, data=b"0123456789")
    assert created.status == 201 and created.headers["Upload-Offset"] == "10"
    location = created.headers["Location"]
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    bad = await patch(muster, s, location, 10, b"abcdefghij", **{"Upload-Checksum": f"sha256 {wrong}"})
    assert bad.status == 460 and bad.body["error"]["code"] == "upload.checksum_mismatch"
    head = await call(muster, "HEAD", location, s, headers=TUS)
    assert head.headers["Upload-Offset"] == "10"  # the mismatching body was dropped
    unknown = await patch(muster, s, location, 10, b"abcdefghij", **{"Upload-Checksum": "crc32 AAAA"})
    assert unknown.status == 400 and unknown.body["error"]["code"] == "upload.bad_checksum_algorithm"
    right = base64.b64encode(hashlib.sha256(b"abcdefghij").digest()).decode()
    ok = await patch(muster, s, location, 10, b"abcdefghij", **{"Upload-Checksum": f"sha256 {right}"})
    assert ok.status == 204 and ok.headers["Upload-Offset"] == "20"
    assert (await download(muster, s, ok.headers["Muster-File-Id"])).body == b"0123456789abcdefghij"


async def test_an_empty_file_is_complete_when_created(muster: Muster) -> None:
    s = await muster.session()
    created = await create(muster, s, 0, name="空.txt")
    assert created.status == 201 and created.headers["Upload-Offset"] == "0"
    file_id = created.headers["Muster-File-Id"]
    got = await download(muster, s, file_id)
    assert got.status == 200 and got.body == b"" and got.headers["ETag"] == f'"{sha256(b"")}"'
    assert (await patch(muster, s, created.headers["Location"], 0, b"")).status == 204


async def test_wrong_offset_is_409_with_the_right_one(muster: Muster) -> None:
    s = await muster.session()
    location = (await create(muster, s, 100)).headers["Location"]
    assert (await patch(muster, s, location, 0, b"x" * 40)).status == 204
    for offset in (0, 39, 41, 100):
        reply = await patch(muster, s, location, offset, b"y" * 10)
        assert reply.status == 409, offset
        assert reply.body["error"]["code"] == "upload.offset_mismatch"
        assert reply.headers["Upload-Offset"] == "40"
    past = await patch(muster, s, location, 40, b"z" * 61)
    assert past.status == 413 and past.body["error"]["code"] == "upload.exceeds_length"
    assert (await call(muster, "HEAD", location, s, headers=TUS)).headers["Upload-Offset"] == "40"


async def test_protocol_errors(muster: Muster) -> None:
    s = await muster.session()
    no_version = await call(muster, "POST", "/api/uploads", s, headers={"Upload-Length": "10"})
    assert no_version.status == 412 and no_version.headers["Tus-Version"] == "1.0.0"
    assert no_version.body["error"]["code"] == "upload.unsupported_version"
    for headers, code in [
        ({"Upload-Length": "-1"}, "upload.bad_header"),
        ({"Upload-Length": "ten"}, "upload.bad_header"),
        ({}, "upload.bad_header"),
        ({"Upload-Defer-Length": "1"}, "upload.defer_unsupported"),
        ({"Upload-Length": "10", "Upload-Metadata": "filename not-base64!"}, "upload.bad_metadata"),
        ({"Upload-Length": "10", "Upload-Metadata": "a YQ==,a YQ=="}, "upload.bad_metadata"),
    ]:
        reply = await call(muster, "POST", "/api/uploads", s, headers={**TUS, **headers})
        assert reply.status == 400 and reply.body["error"]["code"] == code, headers
        assert reply.headers["Tus-Resumable"] == "1.0.0"
    location = (await create(muster, s, 10)).headers["Location"]
    wrong_type = await call(muster, "PATCH", location, s, data=b"abc",
                            headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/json"})
    assert wrong_type.status == 415 and wrong_type.body["error"]["code"] == "upload.bad_content_type"
    unsigned = await call(muster, "POST", "/api/uploads", headers={**TUS, "Upload-Length": "10"})
    assert unsigned.status == 401


async def test_method_override_and_termination(muster: Muster) -> None:
    s = await muster.session()
    location = (await create(muster, s, 6)).headers["Location"]
    written = await call(muster, "POST", location, s, data=b"abc",
                         headers={**TUS, **OCTETS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"})
    assert written.status == 204 and written.headers["Upload-Offset"] == "3"
    gone = await call(muster, "DELETE", location, s, headers=TUS)
    assert gone.status == 204
    assert (await call(muster, "HEAD", location, s, headers=TUS)).status == 404
    assert (await patch(muster, s, location, 3, b"def")).status == 404
    spool = Path(muster.app[FILES]._spool)
    assert not (spool / location.rsplit("/", 1)[1]).exists()


async def test_expired_upload_is_410_and_cleaned_up(muster: Muster) -> None:
    s = await muster.session()
    location = (await create(muster, s, 10)).headers["Location"]
    assert (await patch(muster, s, location, 0, b"12345")).status == 204
    files = muster.app[FILES]
    real = files.clock
    files.clock = lambda: real() + files.settings.upload_expiry * 1000 + 1
    for method in ("HEAD", "PATCH"):
        reply = await call(muster, method, location, s, data=b"67890" if method == "PATCH" else None,
                           headers={**TUS, **OCTETS, "Upload-Offset": "5"})
        assert reply.status == 410, method
    reply = await patch(muster, s, location, 5, b"67890")
    assert reply.body["error"]["code"] == "upload.expired"
    upload_id = location.rsplit("/", 1)[1]
    assert (files._spool / upload_id).exists()
    from server.storage.records import Job

    await files._expire_job(Job(id="files.expire_uploads", kind="files.expire_uploads", due_at=0))
    assert not (files._spool / upload_id).exists()
    assert (await call(muster, "HEAD", location, s, headers=TUS)).status == 404


async def test_size_limit_and_quota(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, files={"max_upload_size": 1000, "user_quota": 2500})
    async with running_muster(settings) as muster:
        s = await muster.session()
        too_big = await create(muster, s, 1001)
        assert too_big.status == 413 and too_big.body["error"]["code"] == "upload.too_large"
        await upload(muster, s, b"a" * 1000)
        open_upload = (await create(muster, s, 1000)).headers["Location"]  # reserved while unfinished
        over = await create(muster, s, 501)
        assert over.status == 403 and over.body["error"]["code"] == "upload.quota_exceeded"
        assert (await create(muster, s, 500)).status == 201
        other = await muster.session()  # quotas are per user
        assert (await create(muster, other, 1000)).status == 201
        assert (await call(muster, "DELETE", open_upload, s, headers=TUS)).status == 204
        assert (await create(muster, s, 1000)).status == 201


async def test_uploads_are_bound_to_user_and_device(muster: Muster) -> None:
    s = await muster.session()
    location = (await create(muster, s, 10)).headers["Location"]
    phone = await muster.login(s.username, device_kind="mobile", device_name="手机")
    stranger = await muster.session()
    mine_elsewhere = await patch(muster, phone, location, 0, b"x")
    assert mine_elsewhere.status == 403 and mine_elsewhere.body["error"]["code"] == "upload.other_device"
    for method in ("HEAD", "PATCH", "DELETE"):
        reply = await call(muster, method, location, stranger, data=b"x" if method == "PATCH" else None,
                           headers={**TUS, **OCTETS, "Upload-Offset": "0"})
        assert reply.status == 404, method
    assert (await call(muster, "GET", location, stranger)).status == 404
    assert (await call(muster, "HEAD", location, s, headers=TUS)).headers["Upload-Offset"] == "0"


async def test_hostile_file_names_stay_text(muster: Muster, tmp_path: Path) -> None:
    s = await muster.session()
    names = ["../../escape.txt", "/etc/passwd", "..\\..\\win.ini", "a\x00b\r\nc.txt", "正常的名字.docx"]
    ids = [await upload(muster, s, f"content {i}".encode(), name=name) for i, name in enumerate(names)]
    shown = [(await call(muster, "GET", f"/api/files/{i}", s)).body["name"] for i in ids]
    assert shown == ["../../escape.txt", "/etc/passwd", "..\\..\\win.ini", "abc.txt", "正常的名字.docx"]
    # Nothing was written anywhere but Muster's own folders, and no stored path holds a client's name.
    for path in tmp_path.parent.rglob("*"):
        assert path.name not in ("escape.txt", "passwd", "win.ini")
    files_dir = muster.app[FILES]._spool.parent
    for path in files_dir.rglob("*"):
        assert "escape" not in str(path) and "passwd" not in str(path)
    got = await download(muster, s, ids[0])
    disposition = got.headers["Content-Disposition"]
    assert "/" not in disposition.split("filename*=")[0] and "escape.txt" in disposition


async def test_identical_content_is_stored_once(muster: Muster) -> None:
    a, b = await muster.session(), await muster.session()
    first = await upload(muster, a, PAYLOAD, name="a.bin")
    second = await upload(muster, b, PAYLOAD, name="b.bin")
    assert first != second
    fa = (await call(muster, "GET", f"/api/files/{first}", a)).body
    fb = (await call(muster, "GET", f"/api/files/{second}", b)).body
    assert fa["sha256"] == fb["sha256"] and (fa["name"], fb["name"]) == ("a.bin", "b.bin")
    blobs = [p for p in (muster.app[FILES]._spool.parent / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == [fa["sha256"]]


async def test_ranges_etags_and_head(muster: Muster) -> None:
    s = await muster.session()
    data = bytes(range(256)) * 40  # 10240 bytes
    file_id = await upload(muster, s, data)
    etag = f'"{sha256(data)}"'
    for header, want in [
        ("bytes=10-19", (10, 20)), ("bytes=10240-", None), ("bytes=10230-", (10230, 10240)),
        ("bytes=-5", (10235, 10240)), ("bytes=0-0", (0, 1)), ("bytes=100-999999", (100, 10240)),
    ]:
        got = await download(muster, s, file_id, Range=header)
        if want is None:
            assert got.status == 416 and got.headers["Content-Range"] == "bytes */10240", header
            continue
        assert got.status == 206, header
        assert got.body == data[want[0]:want[1]], header
        assert got.headers["Content-Range"] == f"bytes {want[0]}-{want[1] - 1}/10240"
        assert int(got.headers["Content-Length"]) == want[1] - want[0]
    several = await download(muster, s, file_id, Range="bytes=0-1,5-6")
    assert several.status == 200 and several.body == data
    stale = await download(muster, s, file_id, Range="bytes=0-9", **{"If-Range": '"other"'})
    assert stale.status == 200 and stale.body == data
    fresh = await download(muster, s, file_id, Range="bytes=0-9", **{"If-Range": etag})
    assert fresh.status == 206 and fresh.body == data[:10]
    cached = await download(muster, s, file_id, **{"If-None-Match": etag})
    assert cached.status == 304 and cached.body == b""
    head = await call(muster, "HEAD", f"/api/files/{file_id}/content", s)
    assert head.status == 200 and head.headers["Content-Length"] == "10240" and head.body == b""


async def test_who_may_download(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    member, outsider = await new_client(muster), await new_client(muster)
    room = await make_room(owner, member)
    file_id = await upload(muster, owner.session, PAYLOAD)
    # Not attached yet: the uploader only.
    for who in (member, outsider):
        assert (await download(muster, who.session, file_id)).status == 403
        assert (await call(muster, "GET", f"/api/files/{file_id}", who.session)).status == 403
    assert (await download(muster, None, file_id)).status == 401
    await send(owner, room, "现场照片", attachments=[{"file_id": file_id}])
    assert (await download(muster, member.session, file_id)).body == PAYLOAD
    refused = await download(muster, outsider.session, file_id)
    assert refused.status == 403 and refused.body["error"]["code"] == "file.forbidden"
    assert (await download(muster, outsider.session, "nosuchfile")).status == 404
    # The outsider cannot attach a file they cannot see.
    other_room = await make_room(outsider)
    ack = await outsider.call("message.send", {"room_id": other_room, "client_id": "steal", "text": "x",
                                               "attachments": [{"file_id": file_id}]})
    assert ack["error"]["code"] == "message.bad_attachment"


async def test_signed_links_work_without_a_header_and_expire(muster: Muster) -> None:
    s = await muster.session()
    file_id = await upload(muster, s, png_bytes(), name="map.png")
    info = (await call(muster, "GET", f"/api/files/{file_id}", s)).body
    got = await call(muster, "GET", info["download_url"])
    assert got.status == 200 and got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"].startswith("inline;")
    thumb = await call(muster, "GET", info["thumbnail_url"])
    assert thumb.status == 200 and thumb.headers["Content-Type"] in ("image/jpeg", "image/png")
    assert max(Image.open(io.BytesIO(thumb.body)).size) <= 320
    forged = info["download_url"].replace("sig=", "sig=0")
    assert (await call(muster, "GET", forged)).status in (400, 401)
    tampered = info["download_url"].replace(f"/files/{file_id}/", "/files/other/")
    assert (await call(muster, "GET", tampered)).status in (401, 404)
    as_thumbnail = info["download_url"].replace("/content?", "/thumbnail?")
    assert (await call(muster, "GET", as_thumbnail)).status == 401  # a link is for one resource
    files = muster.app[FILES]
    real = files.clock
    files.clock = lambda: real() + files.settings.link_ttl * 1000 + 1
    expired = await call(muster, "GET", info["download_url"])
    assert expired.status == 401 and expired.body["error"]["code"] == "file.link_expired"


async def test_type_comes_from_content(muster: Muster) -> None:
    s = await muster.session()
    png = await upload(muster, s, png_bytes((40, 30)), name="virus.exe",
                       extra={"filetype": "application/x-msdownload"})
    info = (await call(muster, "GET", f"/api/files/{png}", s)).body
    assert (info["mime"], info["kind"], info["width"], info["height"]) == ("image/png", "image", 40, 30)
    html = await upload(muster, s, b"<!doctype html><html><script>alert(1)</script></html>", name="photo.jpg",
                        extra={"filetype": "image/jpeg"})
    got = await download(muster, s, html)
    assert "html" not in got.headers["Content-Type"] and "image" not in got.headers["Content-Type"]
    assert "sandbox" in got.headers["Content-Security-Policy"]


async def test_attachments_in_messages_and_recall(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    alice, bob = await new_client(muster), await new_client(muster)
    room_a = await make_room(owner, alice)
    room_b = await make_room(owner, bob)
    evidence = await upload(muster, owner.session, PAYLOAD, name="水位记录.xlsx")
    photo_only = await upload(muster, owner.session, b"only in room a", name="a.txt")
    sent = await send(owner, room_a, "", attachments=[{"file_id": evidence}, {"file_id": photo_only}])
    attached = sent["body"]["attachments"]
    assert [a["file_id"] for a in attached] == [evidence, photo_only]
    assert attached[0]["name"] == "水位记录.xlsx" and attached[0]["size"] == len(PAYLOAD)
    await send(owner, room_b, "同一份记录", attachments=[{"file_id": evidence}])
    await until(lambda: any(e["body"].get("attachments") for e in alice.room_events(room_a)), what="delivery")
    # Resending with the same client id does not attach twice.
    again = await owner.ok("message.send", {"room_id": room_a, "client_id": "f1", "text": "再发",
                                            "attachments": [{"file_id": photo_only}]})
    same = await owner.ok("message.send", {"room_id": room_a, "client_id": "f1", "text": "再发",
                                           "attachments": [{"file_id": photo_only}]})
    assert again["event"]["id"] == same["event"]["id"]
    listed = await call(muster, "GET", f"/api/rooms/{room_a}/files", alice.session)
    ids = [f["id"] for f in listed.body["files"]]
    assert set(ids) == {evidence, photo_only}
    assert (await call(muster, "GET", f"/api/rooms/{room_a}/files", bob.session)).status == 403

    await owner.ok("message.recall", {"room_id": room_a, "message_id": sent["id"]})
    await owner.ok("message.recall", {"room_id": room_a, "message_id": again["event"]["id"]})
    # Alice saw the files through room A only: gone with the messages. Bob still sees the evidence through B.
    assert (await download(muster, alice.session, photo_only)).status == 403
    assert (await download(muster, alice.session, evidence)).status == 403
    assert (await download(muster, bob.session, evidence)).body == PAYLOAD
    assert (await download(muster, owner.session, photo_only)).status == 200  # never deleted
    history = await call(muster, "GET", f"/api/rooms/{room_a}/events", alice.session)
    recalled = next(e for e in history.body["events"] if e["id"] == sent["id"])
    assert recalled["body"] == {} and recalled["recalled_at"]


async def test_upload_for_a_room_is_posted_there_and_devices_are_told(muster: Muster) -> None:
    owner = await new_client(muster, "commander")
    member = await new_client(muster)
    room = await make_room(owner, member)
    phone_session = await muster.login(member.session.username, device_kind="mobile")
    phone = await connect(muster, phone_session)
    console_events: list[Any] = []
    member.sio.on("upload.progress", lambda d: console_events.append(("progress", d)))
    member.sio.on("file.ready", lambda d: console_events.append(("ready", d)))
    created = await create(muster, phone_session, len(PAYLOAD), name="现场.jpg",
                           extra={"room_id": room, "client_id": "photo-1"})
    location = created.headers["Location"]
    await patch(muster, phone_session, location, 0, PAYLOAD[:1000])
    done = await patch(muster, phone_session, location, 1000, PAYLOAD[1000:])
    file_id = done.headers["Muster-File-Id"]
    await until(lambda: any(e["body"].get("attachments") for e in owner.room_events(room)), what="room message")
    message = next(e for e in owner.room_events(room) if e["body"].get("attachments"))
    assert message["sender_id"] == member.user_id and message["client_id"] == "photo-1"
    assert message["body"]["attachments"][0]["file_id"] == file_id
    await until(lambda: any(kind == "ready" for kind, _ in console_events), what="file.ready on the console")
    progress = [d["offset"] for kind, d in console_events if kind == "progress"]
    assert progress == [1000, len(PAYLOAD)]
    assert (await download(muster, owner.session, file_id)).body == PAYLOAD
    outsider = await muster.session()
    refused = await create(muster, outsider, 10, extra={"room_id": room})
    assert refused.status == 403 and refused.body["error"]["code"] == "room.not_member"
    assert phone.user_id == member.user_id


async def test_files_muster_makes_itself_are_kept_like_uploads(muster: Muster, tmp_path: Path) -> None:
    owner = await new_client(muster, "commander")
    member = await new_client(muster)
    room = await make_room(owner, member)
    made = tmp_path / "recording.png"
    made.write_bytes(png_bytes((32, 24)))
    files = muster.app[FILES]
    file = await files.store_local_file(made, name="会商录像.png", owner_id=owner.user_id, device_id=None)
    assert (file.mime, file.size, file.status) == ("image/png", made.stat().st_size, "ready")
    assert file.thumbnail_sha256 is not None  # previews and scans apply as to uploads
    assert (await download(muster, member.session, file.id)).status == 403
    await files.link([file.id], scope_type="room", scope_id=room, target_type="recording", target_id="call-1",
                     actor=None)
    got = await download(muster, member.session, file.id)
    assert got.status == 200 and got.body == made.read_bytes()
    records = await muster.kernel.storage.list_audit_records(action="file.store")
    assert [r.subject_id for r in records] == [file.id]
