"""The upload and file contract for every storage backend (see conftest)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from server.ids import new_id
from server.storage.ports import Storage, StorageConflict
from server.storage.records import FileLink, StoredFile, Upload, UploadSegment

SHA_A = "a" * 64
SHA_B = "b" * 64


def make_upload(user_id: str = "u1", *, length: int = 100, expires_at: int = 10_000, **kw: object) -> Upload:
    base: dict[str, object] = dict(
        id=new_id(),
        user_id=user_id,
        device_id="d1",
        length=length,
        created_at=1000,
        expires_at=expires_at,
        metadata={"filename": "现场照片.jpg", "filetype": "image/jpeg", "room_id": "r1", "a.b": "x", "$k": "y"},
    )
    base.update(kw)
    return Upload(**base)  # type: ignore[arg-type]


def segment(start: int, size: int) -> UploadSegment:
    return UploadSegment(start=start, size=size, key=f"seg-{new_id()}")


def make_file(owner_id: str = "u1", *, size: int = 10, created_at: int = 1000, **kw: object) -> StoredFile:
    base: dict[str, object] = dict(
        id=new_id(),
        sha256=SHA_A,
        size=size,
        mime="image/jpeg",
        name="现场照片.jpg",
        owner_id=owner_id,
        device_id="d1",
        created_at=created_at,
    )
    base.update(kw)
    return StoredFile(**base)  # type: ignore[arg-type]


def make_link(file_id: str, *, target_id: str = "m1", created_at: int = 2000, **kw: object) -> FileLink:
    base: dict[str, object] = dict(
        file_id=file_id,
        scope_type="room",
        scope_id="r1",
        target_type="message",
        target_id=target_id,
        created_by="u1",
        created_at=created_at,
    )
    base.update(kw)
    return FileLink(**base)  # type: ignore[arg-type]


# -- uploads ------------------------------------------------------------------------


async def test_create_and_get_upload(storage: Storage) -> None:
    upload = make_upload()
    assert await storage.get_upload(upload.id) is None
    await storage.create_upload(upload)
    assert await storage.get_upload(upload.id) == upload
    with pytest.raises(StorageConflict):
        await storage.create_upload(replace(upload, user_id="u2"))
    assert await storage.get_upload(upload.id) == upload


async def test_create_keeps_given_segments(storage: Storage) -> None:
    upload = make_upload(length=10, offset=4, segments=(segment(0, 4),))
    await storage.create_upload(upload)
    assert await storage.get_upload(upload.id) == upload


async def test_commit_segments_in_order(storage: Storage) -> None:
    upload = make_upload(length=10)
    await storage.create_upload(upload)
    first, second = segment(0, 4), segment(4, 6)
    assert await storage.commit_upload_segment(upload.id, expected_offset=0, segment=first) is True
    assert await storage.get_upload(upload.id) == replace(upload, offset=4, segments=(first,))
    # a stale offset (a retried request) loses and changes nothing
    assert await storage.commit_upload_segment(upload.id, expected_offset=0, segment=segment(0, 4)) is False
    assert await storage.commit_upload_segment(upload.id, expected_offset=4, segment=second) is True
    assert await storage.get_upload(upload.id) == replace(upload, offset=10, segments=(first, second))


async def test_commit_refuses_unknown_overlong_and_bad_segments(storage: Storage) -> None:
    upload = make_upload(length=10)
    await storage.create_upload(upload)
    assert await storage.commit_upload_segment("nope", expected_offset=0, segment=segment(0, 4)) is False
    # past the declared length: refused, nothing written
    assert await storage.commit_upload_segment(upload.id, expected_offset=0, segment=segment(0, 11)) is False
    with pytest.raises(ValueError):
        await storage.commit_upload_segment(upload.id, expected_offset=0, segment=segment(1, 4))
    with pytest.raises(ValueError):
        await storage.commit_upload_segment(upload.id, expected_offset=0, segment=segment(0, 0))
    assert await storage.get_upload(upload.id) == upload


async def test_concurrent_commits_at_one_offset_exactly_one_wins(storage: Storage) -> None:
    upload = make_upload(length=1000)
    await storage.create_upload(upload)
    contenders = [segment(0, 10 + i) for i in range(8)]
    results = await asyncio.gather(
        *(storage.commit_upload_segment(upload.id, expected_offset=0, segment=s) for s in contenders)
    )
    assert results.count(True) == 1
    winner = contenders[results.index(True)]
    assert await storage.get_upload(upload.id) == replace(upload, offset=winner.size, segments=(winner,))
    # the losers see the moved offset and continue from there, again racing
    offset = winner.size
    next_round = [segment(offset, 5) for _ in range(4)]
    results = await asyncio.gather(
        *(storage.commit_upload_segment(upload.id, expected_offset=offset, segment=s) for s in next_round)
    )
    assert results.count(True) == 1
    stored = await storage.get_upload(upload.id)
    assert stored is not None and stored.offset == offset + 5
    assert stored.segments == (winner, next_round[results.index(True)])


async def test_finish_only_when_complete_and_only_once(storage: Storage) -> None:
    upload = make_upload(length=10)
    await storage.create_upload(upload)
    assert await storage.finish_upload(upload.id, file_id="f1") is False  # nothing received yet
    await storage.commit_upload_segment(upload.id, expected_offset=0, segment=segment(0, 9))
    assert await storage.finish_upload(upload.id, file_id="f1") is False  # one byte short
    last = segment(9, 1)
    assert await storage.commit_upload_segment(upload.id, expected_offset=9, segment=last) is True
    assert await storage.finish_upload(upload.id, file_id="f1") is True
    assert await storage.finish_upload(upload.id, file_id="f2") is False
    stored = await storage.get_upload(upload.id)
    assert stored is not None and stored.file_id == "f1" and stored.offset == 10
    # finished: takes no more segments
    assert await storage.commit_upload_segment(upload.id, expected_offset=10, segment=segment(10, 1)) is False
    assert await storage.finish_upload("nope", file_id="f3") is False


async def test_concurrent_finishes_exactly_one_wins(storage: Storage) -> None:
    upload = make_upload(length=3)
    await storage.create_upload(upload)
    await storage.commit_upload_segment(upload.id, expected_offset=0, segment=segment(0, 3))
    results = await asyncio.gather(*(storage.finish_upload(upload.id, file_id=f"f{i}") for i in range(6)))
    assert results.count(True) == 1
    stored = await storage.get_upload(upload.id)
    assert stored is not None and stored.file_id == f"f{results.index(True)}"


async def test_an_empty_upload_finishes_at_once(storage: Storage) -> None:
    upload = make_upload(length=0)
    await storage.create_upload(upload)
    assert await storage.finish_upload(upload.id, file_id="f1") is True


async def test_delete_upload(storage: Storage) -> None:
    upload = make_upload()
    await storage.create_upload(upload)
    assert await storage.delete_upload(upload.id) is True
    assert await storage.delete_upload(upload.id) is False
    assert await storage.get_upload(upload.id) is None


async def test_list_expired_uploads(storage: Storage) -> None:
    late, early, alive = make_upload(expires_at=3000), make_upload(expires_at=2000), make_upload(expires_at=5001)
    same_time = sorted([make_upload(expires_at=2500), make_upload(expires_at=2500)], key=lambda u: u.id)
    done = make_upload(length=0, expires_at=1000)
    for upload in (late, early, alive, *same_time, done):
        await storage.create_upload(upload)
    assert await storage.finish_upload(done.id, file_id="f1") is True
    expired = await storage.list_expired_uploads(now=5000)
    assert [u.id for u in expired] == [early.id, *(u.id for u in same_time), late.id]
    assert expired[0] == early
    assert [u.id for u in await storage.list_expired_uploads(now=5000, limit=2)] == [early.id, same_time[0].id]
    assert [u.id for u in await storage.list_expired_uploads(now=2000)] == [early.id]  # expires_at <= now
    assert await storage.list_expired_uploads(now=1999) == []
    assert await storage.list_expired_uploads(now=5000, limit=0) == []


async def test_open_upload_bytes(storage: Storage) -> None:
    assert await storage.open_upload_bytes("u1", now=1000) == 0
    mine = [make_upload("u1", length=100), make_upload("u1", length=2**33)]  # sizes past 32 bits add up
    expired = make_upload("u1", length=1000, expires_at=1500)
    finished = make_upload("u1", length=0)
    partial = make_upload("u1", length=7)
    other = make_upload("u2", length=50)
    for upload in (*mine, expired, finished, partial, other):
        await storage.create_upload(upload)
    await storage.finish_upload(finished.id, file_id="f1")
    await storage.commit_upload_segment(partial.id, expected_offset=0, segment=segment(0, 3))
    # the declared length counts, however much has arrived
    assert await storage.open_upload_bytes("u1", now=1000) == 100 + 2**33 + 1000 + 7
    assert await storage.open_upload_bytes("u1", now=1500) == 100 + 2**33 + 7
    assert await storage.open_upload_bytes("u2", now=1500) == 50
    assert await storage.open_upload_bytes("u3", now=1500) == 0


# -- files --------------------------------------------------------------------------


async def test_create_and_get_files(storage: Storage) -> None:
    a, b, c = make_file(), make_file(sha256=SHA_B, size=2**40, device_id=None), make_file(status="scanning")
    for file in (a, b, c):
        await storage.create_file(file)
    assert await storage.get_file(a.id) == a
    assert await storage.get_file(b.id) == b
    assert await storage.get_file("nope") is None
    with pytest.raises(StorageConflict):
        await storage.create_file(replace(a, name="other"))
    assert await storage.get_files([c.id, "nope", a.id, b.id]) == [c, a, b]
    assert await storage.get_files([b.id, a.id, b.id]) == [b, a]  # each file once
    assert await storage.get_files([]) == []
    assert await storage.get_files(["nope"]) == []


async def test_get_many_files(storage: Storage) -> None:
    files = [make_file(created_at=i) for i in range(1200)]
    for file in files:
        await storage.create_file(file)
    asked = [f.id for f in reversed(files)]
    assert [f.id for f in await storage.get_files(asked)] == asked


async def test_file_status(storage: Storage) -> None:
    file = make_file(status="scanning")
    await storage.create_file(file)
    assert await storage.set_file_status(file.id, status="quarantined", scan_result="Eicar-Signature", scanned_at=5)
    bad = replace(file, status="quarantined", scan_result="Eicar-Signature", scanned_at=5)
    assert await storage.get_file(file.id) == bad
    # a clean rescan clears the old signature
    assert await storage.set_file_status(file.id, status="ready", scanned_at=9)
    assert await storage.get_file(file.id) == replace(file, status="ready", scanned_at=9)
    assert await storage.set_file_status(file.id, status="ready", scanned_at=9)  # no change: still there
    assert await storage.set_file_status("nope", status="ready") is False


async def test_file_preview(storage: Storage) -> None:
    file = make_file()
    await storage.create_file(file)
    assert await storage.set_file_preview(file.id, thumbnail_sha256=SHA_B, width=640, height=480)
    assert await storage.get_file(file.id) == replace(file, thumbnail_sha256=SHA_B, width=640, height=480)
    assert await storage.set_file_preview(file.id, thumbnail_sha256=None, width=None, height=None)
    assert await storage.get_file(file.id) == file
    assert await storage.set_file_preview("nope", thumbnail_sha256=SHA_B, width=1, height=1) is False


async def test_list_files_by_status(storage: Storage) -> None:
    late, early, ready = (
        make_file(status="scanning", created_at=30),
        make_file(status="scanning", created_at=10),
        make_file(),
    )
    for file in (late, early, ready):
        await storage.create_file(file)
    assert await storage.list_files_by_status("scanning") == [early, late]
    assert await storage.list_files_by_status("scanning", limit=1) == [early]
    assert await storage.list_files_by_status("ready") == [ready]
    assert await storage.list_files_by_status("quarantined") == []
    await storage.set_file_status(early.id, status="ready")
    assert await storage.list_files_by_status("scanning") == [late]


async def test_owned_file_bytes(storage: Storage) -> None:
    assert await storage.owned_file_bytes("u1") == 0
    # the same content twice counts twice: each file is the owner's
    for file in (make_file(size=10), make_file(size=10), make_file(size=2**35, sha256=SHA_B), make_file("u2", size=3)):
        await storage.create_file(file)
    assert await storage.owned_file_bytes("u1") == 20 + 2**35
    assert await storage.owned_file_bytes("u2") == 3
    assert await storage.owned_file_bytes("u3") == 0


# -- links --------------------------------------------------------------------------


async def test_links_are_idempotent_and_listed_oldest_first(storage: Storage) -> None:
    file = make_file()
    await storage.create_file(file)
    late = make_link(file.id, target_id="m2", created_at=3000)
    early = make_link(file.id, target_id="m1", created_at=2000)
    case = make_link(file.id, scope_type="case:incident", scope_id="i1", target_type="incident", target_id="i1")
    assert await storage.add_file_link(late) is True
    assert await storage.add_file_link(early) is True
    assert await storage.add_file_link(case) is True
    assert await storage.add_file_link(late) is False
    assert await storage.add_file_link(replace(late, created_at=9000, scope_id="r2")) is False  # same target
    assert await storage.list_file_links(file.id) == [case, early, late]  # same time: by target type, id
    assert await storage.list_file_links("nope") == []


async def test_remove_file_links(storage: Storage) -> None:
    a, b = make_file(), make_file()
    for file in (a, b):
        await storage.create_file(file)
    a_m1, b_m1 = make_link(a.id, target_id="m1"), make_link(b.id, target_id="m1", created_at=2001)
    a_m2 = make_link(a.id, target_id="m2", created_at=2002)
    a_case = make_link(a.id, scope_type="case:incident", scope_id="i1", target_type="incident", target_id="m1")
    for link in (a_m1, b_m1, a_m2, a_case):
        assert await storage.add_file_link(link)
    # a recalled message: its links go, the file's other links stay (same id, other type)
    assert await storage.remove_file_links("message", "m1", at=5000) == 2
    assert await storage.remove_file_links("message", "m1", at=6000) == 0  # already removed
    assert await storage.remove_file_links("message", "nope", at=6000) == 0
    assert await storage.list_file_links(a.id) == [a_case, a_m2]
    assert await storage.list_file_links(a.id, include_removed=True) == [
        a_case,
        replace(a_m1, removed_at=5000),
        a_m2,
    ]
    assert await storage.list_file_links(b.id) == []
    assert await storage.list_file_links(b.id, include_removed=True) == [replace(b_m1, removed_at=5000)]
    # a removed link still counts: adding it again changes nothing
    assert await storage.add_file_link(a_m1) is False
    assert await storage.list_file_links(a.id) == [a_case, a_m2]


async def test_list_scope_files(storage: Storage) -> None:
    files = [make_file(created_at=i) for i in range(5)]
    for file in files:
        await storage.create_file(file)
    links = [make_link(file.id, target_id=f"m{i}", created_at=1000 + i) for i, file in enumerate(files)]
    for link in links:
        await storage.add_file_link(link)
    # other scopes and removed links stay out
    await storage.add_file_link(make_link(files[0].id, scope_id="r2", target_id="x1"))
    await storage.add_file_link(
        make_link(files[1].id, scope_type="case:incident", scope_id="r1", target_type="incident", target_id="i")
    )
    await storage.add_file_link(make_link(files[2].id, target_id="gone", created_at=5000))
    await storage.remove_file_links("message", "gone", at=6000)
    newest_first = [(link, file) for link, file in zip(reversed(links), reversed(files), strict=True)]
    assert await storage.list_scope_files("room", "r1") == newest_first
    assert await storage.list_scope_files("room", "r1", limit=2) == newest_first[:2]
    assert await storage.list_scope_files("room", "r1", before=1003, limit=2) == newest_first[2:4]
    assert await storage.list_scope_files("room", "r1", before=1001) == newest_first[4:]
    assert await storage.list_scope_files("room", "r1", before=1000) == []
    assert await storage.list_scope_files("room", "r1", limit=0) == []
    assert await storage.list_scope_files("room", "nope") == []
    # a file shared into the room twice is listed once per link
    await storage.add_file_link(make_link(files[0].id, target_id="again", created_at=9000))
    page = await storage.list_scope_files("room", "r1", limit=1)
    assert [(link.target_id, file.id) for link, file in page] == [("again", files[0].id)]


async def test_scope_paging_never_splits_a_millisecond(storage: Storage) -> None:
    # A message with four attachments: four links at the same time.
    files = [make_file() for _ in range(6)]
    for file in files:
        await storage.create_file(file)
    for file in files[:4]:
        await storage.add_file_link(make_link(file.id, target_id="m1", created_at=2000))
    await storage.add_file_link(make_link(files[4].id, target_id="m2", created_at=3000))
    await storage.add_file_link(make_link(files[5].id, target_id="m0", created_at=1000))
    first = await storage.list_scope_files("room", "r1", limit=2)
    # the page ends inside the millisecond 2000: it runs on to finish it
    assert [link.created_at for link, _ in first] == [3000, 2000, 2000, 2000, 2000]
    assert {file.id for _, file in first[1:]} == {f.id for f in files[:4]}
    second = await storage.list_scope_files("room", "r1", before=first[-1][0].created_at, limit=2)
    assert [file.id for _, file in second] == [files[5].id]
    # the same order every time
    assert await storage.list_scope_files("room", "r1", limit=2) == first
    everything = await storage.list_scope_files("room", "r1")
    assert everything == [*first, *second]
