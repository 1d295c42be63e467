"""A SQLite file made before client ids (schema 4) opens under the current schema with its rows intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from server.storage.sqlite import SqliteStorage
from server.storage.sqlite.db import _split
from server.storage.sqlite.migrations import MIGRATIONS
from tests.storage.test_workflows_contract import make_report, make_task_progress, minimal_incident


def _schema_4(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
    for version, script in MIGRATIONS:
        if version > 4:
            break
        for statement in _split(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (version,))
    for incident_id in ("i-old-1", "i-old-2"):
        conn.execute(
            "INSERT INTO incidents (id, title, type, level, description, address, reporter_id, state, created_at,"
            " updated_at, version) VALUES (?, '旧事件', 'flood', 4, '', '', 'u1', 'reported', 1000, 1000, 1)",
            (incident_id,),
        )
    conn.execute(
        "INSERT INTO progress_reports (id, project_id, percent, text, reporter_id, created_at)"
        " VALUES ('r-old', 'p1', 10, '旧报告', 'u1', 1000)"
    )
    conn.commit()
    conn.close()


async def test_rows_from_before_client_ids_load_and_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _schema_4(path)
    storage = SqliteStorage(path)
    await storage.open()
    try:
        assert await storage.schema_version() == MIGRATIONS[-1][0]
        old = await storage.get_incident("i-old-1")
        assert old is not None and old.client_id is None and old.title == "旧事件"
        [report] = await storage.list_progress_reports("p1")
        assert report.id == "r-old" and report.client_id is None
        # new rows with and without client ids sit beside the old ones
        await storage.create_incident(minimal_incident(client_id="c-1"))
        await storage.create_incident(minimal_incident())
        await storage.add_progress_report(make_report("p1", client_id="c-1"))
        await storage.add_task_progress(make_task_progress(client_id="c-1"))
        assert await storage.find_incident_by_client_id("u1", "c-1") is not None
        assert len(await storage.list_incidents()) == 4
    finally:
        await storage.close()
