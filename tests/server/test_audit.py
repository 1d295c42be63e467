"""The audit log: hash chains, tamper detection by `audit verify`, the query API, and who may read it."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.audit.service import GENESIS, AuditLog, record_hash
from server.settings import Settings
from server.storage.sqlite import SqliteStorage
from tests.factories import Muster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "muster.sqlite3")
    await s.open()
    yield s
    await s.close()


async def fill(audit: AuditLog) -> None:
    for i in range(5):
        await audit.record(chain="admin", action="user.create", subject_type="user", subject_id=f"u{i}",
                           actor_id="admin1", device_id="d1", details={"username": f"用户{i}", "roles": ["responder"]})
    for i in range(3):
        await audit.record(chain="case:incident:7", action="task.assign", subject_type="task", subject_id=f"t{i}",
                           actor_id="c1", details={"deadline": 1000 + i})


def tamper(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """What someone with the database file could do: drop the guards and edit."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


async def test_records_link_into_chains(store: SqliteStorage) -> None:
    audit = AuditLog(store)
    await fill(audit)
    chain = [r async for r in store.iter_audit_chain("admin")]
    assert [r.seq for r in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(chain):
        assert after.prev_hash == before.hash
    assert all(record_hash(r) == r.hash for r in chain)
    report = await audit.verify()
    assert report.ok and report.records == 8 and report.chains == 2


async def test_storage_refuses_updates_and_deletes(store: SqliteStorage) -> None:
    await fill(AuditLog(store))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await store.db.execute("UPDATE audit_log SET action = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await store.db.execute("DELETE FROM audit_log")


@pytest.mark.parametrize(
    ("sql", "seq", "reason"),
    [
        ("UPDATE audit_log SET details = '{\"username\": \"mallory\"}' WHERE chain = 'admin' AND seq = 3", 3, "edited"),
        ("UPDATE audit_log SET actor_id = 'someone-else' WHERE chain = 'admin' AND seq = 2", 2, "edited"),
        ("UPDATE audit_log SET at = at + 1 WHERE chain = 'admin' AND seq = 5", 5, "edited"),
        ("DELETE FROM audit_log WHERE chain = 'admin' AND seq = 4", 4, "missing"),
        ("UPDATE audit_log SET hash = (CASE WHEN substr(hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END) || substr(hash, 2)"
         " WHERE chain = 'admin' AND seq = 1", 1, "edited"),
    ],
)
async def test_verify_points_at_the_first_broken_record(store: SqliteStorage, sql: str, seq: int,
                                                         reason: str) -> None:
    audit = AuditLog(store)
    await fill(audit)
    tamper(store.path, sql)
    report = await audit.verify()
    assert not report.ok and report.broken is not None
    assert (report.broken.chain, report.broken.seq) == ("admin", seq)
    assert reason in report.broken.reason
    # the other chain is intact
    assert (await audit.verify("case:incident:7")).ok


async def test_rewriting_a_record_and_its_hash_breaks_the_next_link(store: SqliteStorage) -> None:
    audit = AuditLog(store)
    await fill(audit)
    target = [r async for r in store.iter_audit_chain("admin")][1]
    from dataclasses import replace

    forged = replace(target, details={"username": "mallory"})
    forged = replace(forged, hash=record_hash(forged))
    tamper(store.path, "UPDATE audit_log SET details = ?, hash = ? WHERE id = ?",
           ('{"username": "mallory"}', forged.hash, target.id))
    report = await audit.verify()
    assert report.broken is not None and report.broken.seq == 3 and "prev_hash" in report.broken.reason


async def test_two_nodes_appending_to_one_chain_never_fork(store: SqliteStorage) -> None:
    # two AuditLog instances stand for two nodes: no shared lock, only the storage's (chain, seq) key
    node_a, node_b = AuditLog(store), AuditLog(store)

    async def write(node: AuditLog, who: str) -> None:
        for i in range(25):
            await node.record(chain="case:incident:1", action="task.urge", subject_type="task",
                              subject_id=f"{who}{i}", actor_id=who)

    await asyncio.gather(write(node_a, "a"), write(node_b, "b"), write(node_a, "c"))
    chain = [r async for r in store.iter_audit_chain("case:incident:1")]
    assert [r.seq for r in chain] == list(range(1, 76))
    assert (await node_a.verify()).ok


def run_cli(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"MUSTER_SERVER_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin", "MUSTER_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "server", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)


async def test_cli_audit_verify_reports_the_edited_record(muster: Muster, settings: Settings) -> None:
    admin = await muster.session("admin")
    for i in range(3):
        status, _ = await muster.request("POST", "/api/admin/departments", admin,
                                         json={"name": f"部门{i}", "kind": "county"})
        assert status == 201
    await muster.kernel.storage.close()
    ok = run_cli(settings, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    victim = next(r for r in await _admin_chain(settings.sqlite_file) if r[1] == 2)
    tamper(settings.sqlite_file, "UPDATE audit_log SET details = '{}' WHERE id = ?", (victim[0],))
    broken = run_cli(settings, "audit", "verify")
    assert broken.returncode == 1
    assert "chain 'admin' at record 2" in broken.stdout and victim[0] in broken.stdout
    await muster.kernel.storage.open()


async def _admin_chain(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, seq FROM audit_log WHERE chain = 'admin' ORDER BY seq").fetchall()
    conn.close()
    return [(str(r[0]), int(r[1])) for r in rows]


async def test_admin_actions_are_audited_with_actor_and_device(muster: Muster) -> None:
    admin = await muster.session("admin")
    status, dept = await muster.request("POST", "/api/admin/departments", admin, json={"name": "水利局",
                                                                                       "kind": "county"})
    assert status == 201
    status, user = await muster.request("POST", "/api/admin/users", admin, json={
        "username": "wang", "display_name": "王磊", "password": "a-long-password", "roles": ["responder"],
        "department_id": dept["id"]})
    assert status == 201
    await muster.request("PATCH", f"/api/admin/users/{user['id']}", admin, json={"roles": ["dept_lead"]})
    status, page = await muster.request("GET", "/api/audit?chain=admin", admin)
    assert status == 200
    actions = [(r["action"], r["actor_id"], r["device_id"]) for r in page["records"]]
    assert ("user.update", admin.user_id, admin.device_id) in actions
    assert ("user.create", admin.user_id, admin.device_id) in actions
    assert ("department.create", admin.user_id, admin.device_id) in actions
    update = next(r for r in page["records"] if r["action"] == "user.update")
    assert update["details"]["changes"] == {"roles": ["dept_lead"]}
    assert "password" not in str(page)  # no secrets in the record


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("inspector", True), ("commander", False),
                                               ("dept_lead", False), ("responder", False)])
async def test_who_may_read_and_verify_the_audit_log(muster: Muster, role: str, allowed: bool) -> None:
    s = await muster.session(role)
    for path in ("/api/audit", "/api/audit/verify"):
        status, body = await muster.request("GET", path, s)
        assert status == (200 if allowed else 403), body
    if not allowed:
        denied = await muster.kernel.storage.list_audit_records(chain=f"user:{s.user_id}",
                                                                action="permission.denied")
        assert {r.details["action"] for r in denied} == {"audit.read", "audit.verify"}


async def test_audit_query_filters_and_pages(muster: Muster) -> None:
    inspector = await muster.session("inspector")
    for _ in range(4):
        await muster.create_user()
    status, page = await muster.request("GET", "/api/audit?action=user.create&limit=3", inspector)
    assert status == 200 and len(page["records"]) == 3 and page["next_before"]
    status, rest = await muster.request("GET", f"/api/audit?action=user.create&limit=3&before={page['next_before']}",
                                        inspector)
    ids = [r["id"] for r in page["records"] + rest["records"]]
    assert len(ids) == len(set(ids)) == 5  # four users plus the inspector
    status, verify = await muster.request("GET", "/api/audit/verify", inspector)
    assert verify["ok"] is True and verify["broken"] is None and verify["records"] > 5
