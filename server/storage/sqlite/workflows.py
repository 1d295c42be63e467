"""Incidents, tasks and projects on SQLite.

Every update is one `UPDATE ... WHERE id = ? AND version = ?` writing every field of the record
it is given: the WHERE clause is the compare-and-set. Writers take turns on one connection, so of
two updates expecting the same version the second finds the version moved and changes nothing.

Tuples and dicts are stored as JSON text, booleans as 0/1. Coordinates and investment sit in
columns without a declared type, so each float is kept as the exact double it is (-0.0 too).

Choices where the port is silent:
- Every `create_*` and `add_progress_report` / `add_task_progress` / `add_dead_letter` raises
  StorageConflict when the id exists (and `create_project` when the code is taken). Incidents and
  both kinds of progress report also do when the reporter's `client_id` is taken (a partial unique
  index on (reporter_id, client_id); rows without a client id are not in it).
- An `update_*` whose record does not carry `version = expected_version + 1` raises ValueError
  (a caller's mistake, not a lost race). `update_project` raises StorageConflict when the new
  code belongs to another project.
- Coordinates and investment must be finite (ValueError otherwise: SQLite cannot keep NaN).
  `Project.planned` / `actual` keys must be phase names (`ProjectPhase`), else ValueError.
- An empty `states` / `phases` list matches nothing; `limit <= 0` returns [].
- `add_task_ack` does not check that the task exists. Acks are listed by time, then user id.
- Progress reports and dead letters are "newest first" by `created_at`, then id (both
  descending); problems and tasks are oldest first by id, incidents newest first by id.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from server.storage.checks import check_float, check_phase_dates, check_version
from server.storage.records import (
    DeadLetter,
    Incident,
    IncidentState,
    Problem,
    ProgressReport,
    Project,
    ProjectPhase,
    Task,
    TaskAck,
    TaskProgress,
    TaskState,
)
from server.storage.sqlite.db import SqliteBase


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _required_float(value: Any) -> float:
    return float(value)


# -- rows <-> records ------------------------------------------------------------------
# Each `_x_row` gives every column of a record, id first; `_x` reads a row back.


def _incident_row(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "title": incident.title,
        "type": incident.type,
        "level": incident.level,
        "description": incident.description,
        "address": incident.address,
        "latitude": check_float("latitude", incident.latitude),
        "longitude": check_float("longitude", incident.longitude),
        "reporter_id": incident.reporter_id,
        "reporter_device_id": incident.reporter_device_id,
        "state": incident.state,
        "created_at": incident.created_at,
        "updated_at": incident.updated_at,
        "version": incident.version,
        "attachments": _json(list(incident.attachments)),
        "room_id": incident.room_id,
        "verified_by": incident.verified_by,
        "verified_at": incident.verified_at,
        "resolved_at": incident.resolved_at,
        "closed_at": incident.closed_at,
        "client_id": incident.client_id,
    }


def _incident(row: sqlite3.Row) -> Incident:
    return Incident(
        id=row["id"],
        title=row["title"],
        type=row["type"],
        level=row["level"],
        description=row["description"],
        address=row["address"],
        latitude=_float(row["latitude"]),
        longitude=_float(row["longitude"]),
        reporter_id=row["reporter_id"],
        reporter_device_id=row["reporter_device_id"],
        state=row["state"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        attachments=tuple(json.loads(row["attachments"])),
        room_id=row["room_id"],
        verified_by=row["verified_by"],
        verified_at=row["verified_at"],
        resolved_at=row["resolved_at"],
        closed_at=row["closed_at"],
        client_id=row["client_id"],
    )


def _task_row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "case_type": task.case_type,
        "case_id": task.case_id,
        "title": task.title,
        "instructions": task.instructions,
        "priority": task.priority,
        "deadline": task.deadline,
        "assigned_by": task.assigned_by,
        "state": task.state,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "version": task.version,
        "department_id": task.department_id,
        "assignee_id": task.assignee_id,
        "accepted_by": task.accepted_by,
        "accepted_at": task.accepted_at,
        "urge_count": task.urge_count,
        "last_urged_at": task.last_urged_at,
        "chain_active": int(task.chain_active),
        "supervised": int(task.supervised),
        "supervised_at": task.supervised_at,
        "supervise_deadline": task.supervise_deadline,
        "result_text": task.result_text,
        "result_attachments": _json(list(task.result_attachments)),
        "submitted_at": task.submitted_at,
        "submitted_by": task.submitted_by,
        "review_comment": task.review_comment,
        "reviewed_by": task.reviewed_by,
        "reviewed_at": task.reviewed_at,
        "sent_back_count": task.sent_back_count,
        "completed_at": task.completed_at,
        "problem_id": task.problem_id,
    }


def _task(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"],
        case_type=row["case_type"],
        case_id=row["case_id"],
        title=row["title"],
        instructions=row["instructions"],
        priority=row["priority"],
        deadline=row["deadline"],
        assigned_by=row["assigned_by"],
        state=row["state"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        department_id=row["department_id"],
        assignee_id=row["assignee_id"],
        accepted_by=row["accepted_by"],
        accepted_at=row["accepted_at"],
        urge_count=row["urge_count"],
        last_urged_at=row["last_urged_at"],
        chain_active=bool(row["chain_active"]),
        supervised=bool(row["supervised"]),
        supervised_at=row["supervised_at"],
        supervise_deadline=row["supervise_deadline"],
        result_text=row["result_text"],
        result_attachments=tuple(json.loads(row["result_attachments"])),
        submitted_at=row["submitted_at"],
        submitted_by=row["submitted_by"],
        review_comment=row["review_comment"],
        reviewed_by=row["reviewed_by"],
        reviewed_at=row["reviewed_at"],
        sent_back_count=row["sent_back_count"],
        completed_at=row["completed_at"],
        problem_id=row["problem_id"],
    )


def _ack(row: sqlite3.Row) -> TaskAck:
    return TaskAck(task_id=row["task_id"], user_id=row["user_id"], device_id=row["device_id"], at=row["at"])


def _project_row(project: Project) -> dict[str, Any]:
    check_phase_dates("planned", project.planned)
    check_phase_dates("actual", project.actual)
    return {
        "id": project.id,
        "code": project.code,
        "name": project.name,
        "owner_department_id": project.owner_department_id,
        "responsible_department_ids": _json(list(project.responsible_department_ids)),
        "investment": check_float("investment", project.investment),
        "address": project.address,
        "latitude": check_float("latitude", project.latitude),
        "longitude": check_float("longitude", project.longitude),
        "phase": project.phase,
        "created_by": project.created_by,
        "created_at": project.created_at,
        "updated_at": project.updated_at,
        "version": project.version,
        "description": project.description,
        "planned": _json(project.planned),
        "actual": _json(project.actual),
        "progress": project.progress,
        "room_id": project.room_id,
    }


def _project(row: sqlite3.Row) -> Project:
    return Project(
        id=row["id"],
        code=row["code"],
        name=row["name"],
        owner_department_id=row["owner_department_id"],
        responsible_department_ids=tuple(json.loads(row["responsible_department_ids"])),
        investment=_required_float(row["investment"]),
        address=row["address"],
        latitude=_float(row["latitude"]),
        longitude=_float(row["longitude"]),
        phase=row["phase"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        description=row["description"],
        planned=json.loads(row["planned"]),
        actual=json.loads(row["actual"]),
        progress=row["progress"],
        room_id=row["room_id"],
    )


def _report_row(report: ProgressReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "project_id": report.project_id,
        "percent": report.percent,
        "text": report.text,
        "reporter_id": report.reporter_id,
        "created_at": report.created_at,
        "attachments": _json(list(report.attachments)),
        "client_id": report.client_id,
    }


def _report(row: sqlite3.Row) -> ProgressReport:
    return ProgressReport(
        id=row["id"],
        project_id=row["project_id"],
        percent=row["percent"],
        text=row["text"],
        reporter_id=row["reporter_id"],
        created_at=row["created_at"],
        attachments=tuple(json.loads(row["attachments"])),
        client_id=row["client_id"],
    )


def _task_progress_row(progress: TaskProgress) -> dict[str, Any]:
    return {
        "id": progress.id,
        "task_id": progress.task_id,
        "reporter_id": progress.reporter_id,
        "text": progress.text,
        "created_at": progress.created_at,
        "percent": progress.percent,
        "attachments": _json(list(progress.attachments)),
        "client_id": progress.client_id,
    }


def _task_progress(row: sqlite3.Row) -> TaskProgress:
    return TaskProgress(
        id=row["id"],
        task_id=row["task_id"],
        reporter_id=row["reporter_id"],
        text=row["text"],
        created_at=row["created_at"],
        percent=row["percent"],
        attachments=tuple(json.loads(row["attachments"])),
        client_id=row["client_id"],
    )


def _problem_row(problem: Problem) -> dict[str, Any]:
    return {
        "id": problem.id,
        "project_id": problem.project_id,
        "title": problem.title,
        "description": problem.description,
        "reporter_id": problem.reporter_id,
        "state": problem.state,
        "created_at": problem.created_at,
        "updated_at": problem.updated_at,
        "version": problem.version,
        "task_id": problem.task_id,
        "resolved_at": problem.resolved_at,
    }


def _problem(row: sqlite3.Row) -> Problem:
    return Problem(
        id=row["id"],
        project_id=row["project_id"],
        title=row["title"],
        description=row["description"],
        reporter_id=row["reporter_id"],
        state=row["state"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        task_id=row["task_id"],
        resolved_at=row["resolved_at"],
    )


def _letter_row(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "channel": letter.channel,
        "event": letter.event,
        "payload": _json(letter.payload),
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "created_at": letter.created_at,
    }


def _letter(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        channel=row["channel"],
        event=row["event"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
    )


# Table and column names below come from this module only, never from a caller.


def _insert_sql(table: str, row: dict[str, Any]) -> str:
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"  # noqa: S608


def _update_sql(table: str, row: dict[str, Any]) -> str:
    assignments = ", ".join(f"{column} = ?" for column in row if column != "id")
    return f"UPDATE {table} SET {assignments} WHERE id = ? AND version = ?"  # noqa: S608


class SqliteWorkflows(SqliteBase):
    async def _insert(self, table: str, row: dict[str, Any]) -> None:
        await self.write(_insert_sql(table, row), list(row.values()))

    async def _compare_and_set(self, table: str, row: dict[str, Any], version: int, expected_version: int) -> bool:
        check_version(version, expected_version)
        params = [value for column, value in row.items() if column != "id"]
        return await self.write(_update_sql(table, row), [*params, row["id"], expected_version]) == 1

    # -- incidents -------------------------------------------------------------------

    async def create_incident(self, incident: Incident) -> None:
        await self._insert("incidents", _incident_row(incident))

    async def get_incident(self, incident_id: str) -> Incident | None:
        row = await self.fetch_one("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return _incident(row) if row else None

    async def find_incident_by_client_id(self, reporter_id: str, client_id: str) -> Incident | None:
        row = await self.fetch_one(
            "SELECT * FROM incidents WHERE reporter_id = ? AND client_id = ?", (reporter_id, client_id)
        )
        return _incident(row) if row else None

    async def update_incident(self, incident: Incident, *, expected_version: int) -> bool:
        return await self._compare_and_set("incidents", _incident_row(incident), incident.version, expected_version)

    async def list_incidents(
        self, *, states: list[IncidentState] | None = None, before_id: str | None = None, limit: int = 50
    ) -> list[Incident]:
        if limit <= 0 or states == []:
            return []
        conditions: list[str] = []
        params: list[Any] = []
        if states is not None:
            conditions.append("state IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(states)))
        if before_id is not None:
            conditions.append("id < ?")
            params.append(before_id)
        sql = "SELECT * FROM incidents"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        rows = await self.fetch_all(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [_incident(row) for row in rows]

    # -- tasks -----------------------------------------------------------------------

    async def create_task(self, task: Task) -> None:
        await self._insert("tasks", _task_row(task))

    async def get_task(self, task_id: str) -> Task | None:
        row = await self.fetch_one("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return _task(row) if row else None

    async def update_task(self, task: Task, *, expected_version: int) -> bool:
        return await self._compare_and_set("tasks", _task_row(task), task.version, expected_version)

    async def list_tasks(
        self,
        *,
        case_type: str | None = None,
        case_id: str | None = None,
        assignee_id: str | None = None,
        department_id: str | None = None,
        states: list[TaskState] | None = None,
        supervised: bool | None = None,
        limit: int = 500,
    ) -> list[Task]:
        if limit <= 0 or states == []:
            return []
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("case_type", case_type),
            ("case_id", case_id),
            ("assignee_id", assignee_id),
            ("department_id", department_id),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if states is not None:
            conditions.append("state IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(states)))
        if supervised is not None:
            conditions.append("supervised = ?")
            params.append(int(supervised))
        sql = "SELECT * FROM tasks"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        rows = await self.fetch_all(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [_task(row) for row in rows]

    async def add_task_ack(self, ack: TaskAck) -> bool:
        changed = await self.write(
            "INSERT INTO task_acks (task_id, user_id, device_id, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (task_id, user_id) DO NOTHING",
            (ack.task_id, ack.user_id, ack.device_id, ack.at),
        )
        return changed == 1

    async def list_task_acks(self, task_id: str) -> list[TaskAck]:
        rows = await self.fetch_all("SELECT * FROM task_acks WHERE task_id = ? ORDER BY at, user_id", (task_id,))
        return [_ack(row) for row in rows]

    # -- projects --------------------------------------------------------------------

    async def create_project(self, project: Project) -> None:
        await self._insert("projects", _project_row(project))

    async def get_project(self, project_id: str) -> Project | None:
        row = await self.fetch_one("SELECT * FROM projects WHERE id = ?", (project_id,))
        return _project(row) if row else None

    async def update_project(self, project: Project, *, expected_version: int) -> bool:
        return await self._compare_and_set("projects", _project_row(project), project.version, expected_version)

    async def list_projects(self, *, phases: list[ProjectPhase] | None = None, limit: int = 500) -> list[Project]:
        if limit <= 0 or phases == []:
            return []
        if phases is None:
            rows = await self.fetch_all("SELECT * FROM projects ORDER BY id LIMIT ?", (limit,))
        else:
            rows = await self.fetch_all(
                "SELECT * FROM projects WHERE phase IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
                (json.dumps(list(phases)), limit),
            )
        return [_project(row) for row in rows]

    async def add_progress_report(self, report: ProgressReport) -> None:
        await self._insert("progress_reports", _report_row(report))

    async def find_progress_report_by_client_id(self, reporter_id: str, client_id: str) -> ProgressReport | None:
        row = await self.fetch_one(
            "SELECT * FROM progress_reports WHERE reporter_id = ? AND client_id = ?", (reporter_id, client_id)
        )
        return _report(row) if row else None

    async def list_progress_reports(self, project_id: str, *, limit: int = 200) -> list[ProgressReport]:
        if limit <= 0:
            return []
        rows = await self.fetch_all(
            "SELECT * FROM progress_reports WHERE project_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (project_id, limit),
        )
        return [_report(row) for row in rows]

    # -- task progress ---------------------------------------------------------------

    async def add_task_progress(self, progress: TaskProgress) -> None:
        await self._insert("task_progress", _task_progress_row(progress))

    async def find_task_progress_by_client_id(self, reporter_id: str, client_id: str) -> TaskProgress | None:
        row = await self.fetch_one(
            "SELECT * FROM task_progress WHERE reporter_id = ? AND client_id = ?", (reporter_id, client_id)
        )
        return _task_progress(row) if row else None

    async def list_task_progress(self, task_id: str, *, limit: int = 200) -> list[TaskProgress]:
        if limit <= 0:
            return []
        rows = await self.fetch_all(
            "SELECT * FROM task_progress WHERE task_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (task_id, limit),
        )
        return [_task_progress(row) for row in rows]

    # -- problems --------------------------------------------------------------------

    async def create_problem(self, problem: Problem) -> None:
        await self._insert("problems", _problem_row(problem))

    async def get_problem(self, problem_id: str) -> Problem | None:
        row = await self.fetch_one("SELECT * FROM problems WHERE id = ?", (problem_id,))
        return _problem(row) if row else None

    async def update_problem(self, problem: Problem, *, expected_version: int) -> bool:
        return await self._compare_and_set("problems", _problem_row(problem), problem.version, expected_version)

    async def list_problems(self, project_id: str | None = None, *, limit: int = 500) -> list[Problem]:
        if limit <= 0:
            return []
        if project_id is None:
            rows = await self.fetch_all("SELECT * FROM problems ORDER BY id LIMIT ?", (limit,))
        else:
            rows = await self.fetch_all(
                "SELECT * FROM problems WHERE project_id = ? ORDER BY id LIMIT ?", (project_id, limit)
            )
        return [_problem(row) for row in rows]

    # -- dead letters ----------------------------------------------------------------

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._insert("dead_letters", _letter_row(letter))

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        rows = await self.fetch_all("SELECT * FROM dead_letters ORDER BY created_at DESC, id DESC LIMIT ?", (limit,))
        return [_letter(row) for row in rows]
