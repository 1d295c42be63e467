"""One contract for every storage backend (see conftest for which backends run)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.ids import new_id
from server.storage.ports import Storage, StorageConflict
from server.storage.records import AuditRecord, Department, Device, User


def make_user(username: str, **kw: object) -> User:
    base = dict(
        id=new_id(), username=username, display_name=username.title(), department_id=None, title="",
        roles=("responder",), disabled=False, password_hash="h", created_at=1000, updated_at=1000,
    )
    base.update(kw)
    return User(**base)  # type: ignore[arg-type]


def make_device(user_id: str, **kw: object) -> Device:
    base = dict(id=new_id(), user_id=user_id, name="phone", kind="mobile", created_at=1000, last_seen_at=1000)
    base.update(kw)
    return Device(**base)  # type: ignore[arg-type]


def make_audit(chain: str, seq: int, **kw: object) -> AuditRecord:
    base = dict(
        id=new_id(), chain=chain, seq=seq, at=1000 + seq, actor_id="u1", device_id="d1", action="user.create",
        subject_type="user", subject_id="u2", details={"名字": "张伟", "n": 1, "nested": {"a": [1, 2]}},
        prev_hash="p", hash=f"h{seq}",
    )
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


async def test_departments_round_trip(storage: Storage) -> None:
    county = Department(id=new_id(), name="示范县", kind="county", parent_id=None, created_at=1, updated_at=1)
    water = Department(id=new_id(), name="水利局", kind="department", parent_id=county.id, created_at=2, updated_at=2)
    await storage.create_department(county)
    await storage.create_department(water)
    assert await storage.get_department(water.id) == water
    assert [d.id for d in await storage.list_departments()] == [county.id, water.id]
    with pytest.raises(StorageConflict):
        await storage.create_department(county)

    renamed = replace(water, name="水务局", updated_at=5)
    assert await storage.update_department(renamed) is True
    assert (await storage.get_department(water.id)) == renamed
    assert await storage.update_department(replace(water, id="missing")) is False

    assert await storage.delete_department(water.id) is True
    assert await storage.delete_department(water.id) is False
    assert await storage.get_department(water.id) is None


async def test_users_unique_username_and_lookup(storage: Storage) -> None:
    alice = make_user("alice", roles=("commander", "inspector"), title="指挥长")
    await storage.create_user(alice)
    assert await storage.get_user(alice.id) == alice
    assert await storage.get_user_by_username("alice") == alice
    assert await storage.get_user_by_username("ALICE") is None
    assert await storage.get_user("nobody") is None
    with pytest.raises(StorageConflict):
        await storage.create_user(make_user("alice"))
    assert await storage.count_users() == 1


async def test_users_filter_and_page(storage: Storage) -> None:
    users = [
        make_user(f"user{i}", department_id="d1" if i % 2 else "d2", roles=("dept_lead",) if i == 3 else ("responder",))
        for i in range(7)
    ]
    for user in users:
        await storage.create_user(user)
    by_id = sorted(users, key=lambda u: u.id)
    first = await storage.list_users(limit=3)
    assert [u.id for u in first] == [u.id for u in by_id[:3]]
    rest = await storage.list_users(after_id=first[-1].id, limit=10)
    assert [u.id for u in rest] == [u.id for u in by_id[3:]]
    assert {u.username for u in await storage.list_users(department_id="d1")} == {"user1", "user3", "user5"}
    assert [u.username for u in await storage.list_users(role="dept_lead")] == ["user3"]
    assert [u.username for u in await storage.list_users(role="dept_lead", department_id="d2")] == []


async def test_users_update(storage: Storage) -> None:
    bob = make_user("bob")
    await storage.create_user(bob)
    changed = replace(bob, disabled=True, roles=("admin",), password_hash="new", updated_at=2000)
    assert await storage.update_user(changed) is True
    assert await storage.get_user(bob.id) == changed
    assert await storage.update_user(make_user("ghost")) is False
    carol = make_user("carol")
    await storage.create_user(carol)
    with pytest.raises(StorageConflict):
        await storage.update_user(replace(carol, username="bob"))


async def test_devices_refresh_compare_and_set(storage: Storage) -> None:
    device = make_device("u1")
    await storage.create_device(device)
    assert await storage.get_device(device.id) == device
    assert await storage.set_refresh(device.id, expected_hash=None, new_hash="r1", expires_at=9, at=1001) is True
    assert await storage.set_refresh(device.id, expected_hash="wrong", new_hash="r2", expires_at=9, at=1002) is False
    assert await storage.set_refresh(device.id, expected_hash="r1", new_hash="r2", expires_at=10, at=1003) is True
    stored = await storage.get_device(device.id)
    assert stored is not None
    assert (stored.refresh_hash, stored.refresh_prev_hash, stored.refresh_expires_at) == ("r2", "r1", 10)
    assert stored.last_seen_at == 1003
    # a replay of the old secret loses the race
    assert await storage.set_refresh(device.id, expected_hash="r1", new_hash="r3", expires_at=10, at=1004) is False


async def test_devices_revoke_and_list(storage: Storage) -> None:
    phone = make_device("u1", created_at=1)
    console = make_device("u1", name="console", kind="console", created_at=2, last_seen_at=2)
    other = make_device("u2", created_at=3)
    for d in (phone, console, other):
        await storage.create_device(d)
    await storage.set_refresh(phone.id, expected_hash=None, new_hash="r", expires_at=5, at=2)
    assert [d.id for d in await storage.list_devices("u1")] == [phone.id, console.id]
    assert await storage.revoke_device(phone.id, at=50) is True
    assert await storage.revoke_device(phone.id, at=60) is False
    revoked = await storage.get_device(phone.id)
    assert revoked is not None and revoked.revoked_at == 50 and revoked.refresh_hash is None
    assert await storage.set_refresh(phone.id, expected_hash=None, new_hash="x", expires_at=5, at=3) is False
    await storage.touch_device(console.id, at=99)
    await storage.touch_device(console.id, at=10)  # never moves backwards
    touched = await storage.get_device(console.id)
    assert touched is not None and touched.last_seen_at == 99


async def test_devices_external_session_lookup(storage: Storage) -> None:
    sso = make_device("u1", external_session="sess-1", kind="console")
    await storage.create_device(sso)
    assert await storage.find_external_device("u1", "sess-1") == sso
    assert await storage.find_external_device("u1", "sess-2") is None
    assert await storage.find_external_device("u2", "sess-1") is None


async def test_audit_append_and_conflict(storage: Storage) -> None:
    assert await storage.last_audit_record("admin") is None
    first = make_audit("admin", 1)
    assert await storage.insert_audit_record(first) is True
    assert await storage.insert_audit_record(make_audit("admin", 1)) is False
    assert await storage.insert_audit_record(make_audit("user:u1", 1)) is True
    second = make_audit("admin", 2)
    assert await storage.insert_audit_record(second) is True
    assert await storage.last_audit_record("admin") == second
    assert [r.seq async for r in storage.iter_audit_chain("admin")] == [1, 2]
    assert next(iter([r async for r in storage.iter_audit_chain("admin")])) == first
    assert await storage.list_audit_chains() == ["admin", "user:u1"]


async def test_audit_iterates_long_chain_in_order(storage: Storage) -> None:
    for seq in range(1, 1203):
        assert await storage.insert_audit_record(make_audit("case:x", seq))
    assert [r.seq async for r in storage.iter_audit_chain("case:x")] == list(range(1, 1203))


async def test_audit_query_filters_and_paging(storage: Storage) -> None:
    records = [
        make_audit("admin", 1, action="user.create", actor_id="a", subject_id="s1", at=100),
        make_audit("admin", 2, action="user.update", actor_id="a", subject_id="s1", at=200),
        make_audit("admin", 3, action="user.create", actor_id="b", subject_id="s2", at=300),
        make_audit("user:x", 1, action="auth.login", actor_id="x", subject_type="device", subject_id="d", at=400),
    ]
    for record in records:
        await storage.insert_audit_record(record)
    newest_first = [r.id for r in sorted(records, key=lambda r: r.id, reverse=True)]
    assert [r.id for r in await storage.list_audit_records()] == newest_first
    assert {r.seq for r in await storage.list_audit_records(chain="admin", action="user.create")} == {1, 3}
    assert [r.actor_id for r in await storage.list_audit_records(actor_id="b")] == ["b"]
    assert len(await storage.list_audit_records(subject_type="user", subject_id="s1")) == 2
    assert {r.at for r in await storage.list_audit_records(since=200, until=400)} == {200, 300}
    page1 = await storage.list_audit_records(limit=2)
    page2 = await storage.list_audit_records(limit=2, before_id=page1[-1].id)
    assert [r.id for r in page1 + page2] == newest_first
