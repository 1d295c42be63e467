"""Incidents, tasks and projects on MongoDB.

Each record is one document keyed by its id. Every update is one `replace_one` whose filter is
the compare-and-set, `{"_id": id, "version": expected_version}`: of two updates expecting the
same version the server applies one, and the other's filter no longer matches. Task
acknowledgements are their own collection, kept one per task and user by `task_acks_unique`;
project codes are kept unique by `projects_code_unique`.

`DeadLetter.payload` is stored as a JSON string, not as a sub-document: it is whatever a webhook
was sent, and a key with a dot or a leading `$` would otherwise be a field path or an operator.
`Project.planned` / `actual` are sub-documents: their keys are phase names (checked).

Choices where the port is silent (the same as on SQLite):
- Every `create_*` and `add_progress_report` / `add_task_progress` / `add_dead_letter` raises
  StorageConflict when the id exists (and `create_project` when the code is taken). Incidents and
  both kinds of progress report also do when the reporter's `client_id` is taken (a partial unique
  index on (reporter_id, client_id) over string client ids; documents with null are not in it).
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
from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.storage.checks import check_float, check_phase_dates, check_version
from server.storage.mongo.db import (
    DEAD_LETTERS,
    INCIDENTS,
    PROBLEMS,
    PROGRESS_REPORTS,
    PROJECTS,
    TASK_ACKS,
    TASK_PROGRESS,
    TASKS,
    Doc,
    MongoBase,
    conflicts_as_storage_conflict,
)
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

_OLDEST_FIRST = [("_id", 1)]
_NEWEST_FIRST = [("created_at", -1), ("_id", -1)]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- documents <-> records -------------------------------------------------------------


def _incident_doc(incident: Incident) -> Doc:
    return {
        "_id": incident.id,
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
        "attachments": list(incident.attachments),
        "room_id": incident.room_id,
        "verified_by": incident.verified_by,
        "verified_at": incident.verified_at,
        "resolved_at": incident.resolved_at,
        "closed_at": incident.closed_at,
        "client_id": incident.client_id,
    }


def _incident(doc: Mapping[str, Any]) -> Incident:
    return Incident(
        id=doc["_id"],
        title=doc["title"],
        type=doc["type"],
        level=int(doc["level"]),
        description=doc["description"],
        address=doc["address"],
        latitude=_float(doc.get("latitude")),
        longitude=_float(doc.get("longitude")),
        reporter_id=doc["reporter_id"],
        reporter_device_id=doc.get("reporter_device_id"),
        state=doc["state"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
        attachments=tuple(doc.get("attachments") or ()),
        room_id=doc.get("room_id"),
        verified_by=doc.get("verified_by"),
        verified_at=doc.get("verified_at"),
        resolved_at=doc.get("resolved_at"),
        closed_at=doc.get("closed_at"),
        client_id=doc.get("client_id"),
    )


def _task_doc(task: Task) -> Doc:
    return {
        "_id": task.id,
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
        "chain_active": bool(task.chain_active),
        "supervised": bool(task.supervised),
        "supervised_at": task.supervised_at,
        "supervise_deadline": task.supervise_deadline,
        "result_text": task.result_text,
        "result_attachments": list(task.result_attachments),
        "submitted_at": task.submitted_at,
        "submitted_by": task.submitted_by,
        "review_comment": task.review_comment,
        "reviewed_by": task.reviewed_by,
        "reviewed_at": task.reviewed_at,
        "sent_back_count": task.sent_back_count,
        "completed_at": task.completed_at,
        "problem_id": task.problem_id,
    }


def _task(doc: Mapping[str, Any]) -> Task:
    return Task(
        id=doc["_id"],
        case_type=doc["case_type"],
        case_id=doc["case_id"],
        title=doc["title"],
        instructions=doc["instructions"],
        priority=doc["priority"],
        deadline=doc["deadline"],
        assigned_by=doc["assigned_by"],
        state=doc["state"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
        department_id=doc.get("department_id"),
        assignee_id=doc.get("assignee_id"),
        accepted_by=doc.get("accepted_by"),
        accepted_at=doc.get("accepted_at"),
        urge_count=int(doc["urge_count"]),
        last_urged_at=doc.get("last_urged_at"),
        chain_active=bool(doc["chain_active"]),
        supervised=bool(doc["supervised"]),
        supervised_at=doc.get("supervised_at"),
        supervise_deadline=doc.get("supervise_deadline"),
        result_text=doc["result_text"],
        result_attachments=tuple(doc.get("result_attachments") or ()),
        submitted_at=doc.get("submitted_at"),
        submitted_by=doc.get("submitted_by"),
        review_comment=doc["review_comment"],
        reviewed_by=doc.get("reviewed_by"),
        reviewed_at=doc.get("reviewed_at"),
        sent_back_count=int(doc["sent_back_count"]),
        completed_at=doc.get("completed_at"),
        problem_id=doc.get("problem_id"),
    )


def _ack(doc: Mapping[str, Any]) -> TaskAck:
    return TaskAck(task_id=doc["task_id"], user_id=doc["user_id"], device_id=doc.get("device_id"), at=doc["at"])


def _project_doc(project: Project) -> Doc:
    return {
        "_id": project.id,
        "code": project.code,
        "name": project.name,
        "owner_department_id": project.owner_department_id,
        "responsible_department_ids": list(project.responsible_department_ids),
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
        "planned": check_phase_dates("planned", project.planned),
        "actual": check_phase_dates("actual", project.actual),
        "progress": project.progress,
        "room_id": project.room_id,
    }


def _project(doc: Mapping[str, Any]) -> Project:
    return Project(
        id=doc["_id"],
        code=doc["code"],
        name=doc["name"],
        owner_department_id=doc["owner_department_id"],
        responsible_department_ids=tuple(doc.get("responsible_department_ids") or ()),
        investment=float(doc["investment"]),
        address=doc["address"],
        latitude=_float(doc.get("latitude")),
        longitude=_float(doc.get("longitude")),
        phase=doc["phase"],
        created_by=doc["created_by"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
        description=doc["description"],
        planned={str(key): int(value) for key, value in (doc.get("planned") or {}).items()},
        actual={str(key): int(value) for key, value in (doc.get("actual") or {}).items()},
        progress=int(doc["progress"]),
        room_id=doc.get("room_id"),
    )


def _report_doc(report: ProgressReport) -> Doc:
    return {
        "_id": report.id,
        "project_id": report.project_id,
        "percent": report.percent,
        "text": report.text,
        "reporter_id": report.reporter_id,
        "created_at": report.created_at,
        "attachments": list(report.attachments),
        "client_id": report.client_id,
    }


def _report(doc: Mapping[str, Any]) -> ProgressReport:
    return ProgressReport(
        id=doc["_id"],
        project_id=doc["project_id"],
        percent=int(doc["percent"]),
        text=doc["text"],
        reporter_id=doc["reporter_id"],
        created_at=doc["created_at"],
        attachments=tuple(doc.get("attachments") or ()),
        client_id=doc.get("client_id"),
    )


def _task_progress_doc(progress: TaskProgress) -> Doc:
    return {
        "_id": progress.id,
        "task_id": progress.task_id,
        "reporter_id": progress.reporter_id,
        "text": progress.text,
        "created_at": progress.created_at,
        "percent": progress.percent,
        "attachments": list(progress.attachments),
        "client_id": progress.client_id,
    }


def _task_progress(doc: Mapping[str, Any]) -> TaskProgress:
    percent = doc.get("percent")
    return TaskProgress(
        id=doc["_id"],
        task_id=doc["task_id"],
        reporter_id=doc["reporter_id"],
        text=doc["text"],
        created_at=doc["created_at"],
        percent=None if percent is None else int(percent),
        attachments=tuple(doc.get("attachments") or ()),
        client_id=doc.get("client_id"),
    )


def _problem_doc(problem: Problem) -> Doc:
    return {
        "_id": problem.id,
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


def _problem(doc: Mapping[str, Any]) -> Problem:
    return Problem(
        id=doc["_id"],
        project_id=doc["project_id"],
        title=doc["title"],
        description=doc["description"],
        reporter_id=doc["reporter_id"],
        state=doc["state"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
        task_id=doc.get("task_id"),
        resolved_at=doc.get("resolved_at"),
    )


def _letter_doc(letter: DeadLetter) -> Doc:
    return {
        "_id": letter.id,
        "channel": letter.channel,
        "event": letter.event,
        "payload": json.dumps(letter.payload, ensure_ascii=False),
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "created_at": letter.created_at,
    }


def _letter(doc: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        id=doc["_id"],
        channel=doc["channel"],
        event=doc["event"],
        payload=json.loads(doc["payload"]),
        attempts=int(doc["attempts"]),
        last_error=doc["last_error"],
        created_at=doc["created_at"],
    )


class MongoWorkflows(MongoBase):
    async def _insert(self, name: str, doc: Doc) -> None:
        with conflicts_as_storage_conflict():
            await self.collection(name).insert_one(doc)

    async def _compare_and_set(self, name: str, doc: Doc, expected_version: int) -> bool:
        check_version(doc["version"], expected_version)
        with conflicts_as_storage_conflict():
            result = await self.collection(name).replace_one({"_id": doc["_id"], "version": expected_version}, doc)
        return result.matched_count == 1

    # -- incidents -------------------------------------------------------------------

    async def create_incident(self, incident: Incident) -> None:
        await self._insert(INCIDENTS, _incident_doc(incident))

    async def get_incident(self, incident_id: str) -> Incident | None:
        doc = await self.collection(INCIDENTS).find_one({"_id": incident_id})
        return _incident(doc) if doc else None

    async def find_incident_by_client_id(self, reporter_id: str, client_id: str) -> Incident | None:
        doc = await self.collection(INCIDENTS).find_one({"reporter_id": reporter_id, "client_id": client_id})
        return _incident(doc) if doc else None

    async def update_incident(self, incident: Incident, *, expected_version: int) -> bool:
        return await self._compare_and_set(INCIDENTS, _incident_doc(incident), expected_version)

    async def list_incidents(
        self, *, states: list[IncidentState] | None = None, before_id: str | None = None, limit: int = 50
    ) -> list[Incident]:
        if limit <= 0 or states == []:  # MongoDB reads a limit of 0 as "no limit"
            return []
        query: Doc = {}
        if states is not None:
            query["state"] = {"$in": list(states)}
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        cursor = self.collection(INCIDENTS).find(query, sort=[("_id", -1)], limit=limit)
        return [_incident(doc) async for doc in cursor]

    # -- tasks -----------------------------------------------------------------------

    async def create_task(self, task: Task) -> None:
        await self._insert(TASKS, _task_doc(task))

    async def get_task(self, task_id: str) -> Task | None:
        doc = await self.collection(TASKS).find_one({"_id": task_id})
        return _task(doc) if doc else None

    async def update_task(self, task: Task, *, expected_version: int) -> bool:
        return await self._compare_and_set(TASKS, _task_doc(task), expected_version)

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
        query: Doc = {}
        for field, value in (
            ("case_type", case_type),
            ("case_id", case_id),
            ("assignee_id", assignee_id),
            ("department_id", department_id),
        ):
            if value is not None:
                query[field] = value
        if states is not None:
            query["state"] = {"$in": list(states)}
        if supervised is not None:
            query["supervised"] = supervised
        cursor = self.collection(TASKS).find(query, sort=_OLDEST_FIRST, limit=limit)
        return [_task(doc) async for doc in cursor]

    async def add_task_ack(self, ack: TaskAck) -> bool:
        doc: Doc = {"task_id": ack.task_id, "user_id": ack.user_id, "device_id": ack.device_id, "at": ack.at}
        try:
            await self.collection(TASK_ACKS).insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def list_task_acks(self, task_id: str) -> list[TaskAck]:
        cursor = self.collection(TASK_ACKS).find({"task_id": task_id}, sort=[("at", 1), ("user_id", 1)])
        return [_ack(doc) async for doc in cursor]

    # -- projects --------------------------------------------------------------------

    async def create_project(self, project: Project) -> None:
        await self._insert(PROJECTS, _project_doc(project))

    async def get_project(self, project_id: str) -> Project | None:
        doc = await self.collection(PROJECTS).find_one({"_id": project_id})
        return _project(doc) if doc else None

    async def update_project(self, project: Project, *, expected_version: int) -> bool:
        return await self._compare_and_set(PROJECTS, _project_doc(project), expected_version)

    async def list_projects(self, *, phases: list[ProjectPhase] | None = None, limit: int = 500) -> list[Project]:
        if limit <= 0 or phases == []:
            return []
        query: Doc = {} if phases is None else {"phase": {"$in": list(phases)}}
        cursor = self.collection(PROJECTS).find(query, sort=_OLDEST_FIRST, limit=limit)
        return [_project(doc) async for doc in cursor]

    async def add_progress_report(self, report: ProgressReport) -> None:
        await self._insert(PROGRESS_REPORTS, _report_doc(report))

    async def find_progress_report_by_client_id(self, reporter_id: str, client_id: str) -> ProgressReport | None:
        doc = await self.collection(PROGRESS_REPORTS).find_one({"reporter_id": reporter_id, "client_id": client_id})
        return _report(doc) if doc else None

    async def list_progress_reports(self, project_id: str, *, limit: int = 200) -> list[ProgressReport]:
        if limit <= 0:
            return []
        cursor = self.collection(PROGRESS_REPORTS).find({"project_id": project_id}, sort=_NEWEST_FIRST, limit=limit)
        return [_report(doc) async for doc in cursor]

    # -- task progress ---------------------------------------------------------------

    async def add_task_progress(self, progress: TaskProgress) -> None:
        await self._insert(TASK_PROGRESS, _task_progress_doc(progress))

    async def find_task_progress_by_client_id(self, reporter_id: str, client_id: str) -> TaskProgress | None:
        doc = await self.collection(TASK_PROGRESS).find_one({"reporter_id": reporter_id, "client_id": client_id})
        return _task_progress(doc) if doc else None

    async def list_task_progress(self, task_id: str, *, limit: int = 200) -> list[TaskProgress]:
        if limit <= 0:
            return []
        cursor = self.collection(TASK_PROGRESS).find({"task_id": task_id}, sort=_NEWEST_FIRST, limit=limit)
        return [_task_progress(doc) async for doc in cursor]

    # -- problems --------------------------------------------------------------------

    async def create_problem(self, problem: Problem) -> None:
        await self._insert(PROBLEMS, _problem_doc(problem))

    async def get_problem(self, problem_id: str) -> Problem | None:
        doc = await self.collection(PROBLEMS).find_one({"_id": problem_id})
        return _problem(doc) if doc else None

    async def update_problem(self, problem: Problem, *, expected_version: int) -> bool:
        return await self._compare_and_set(PROBLEMS, _problem_doc(problem), expected_version)

    async def list_problems(self, project_id: str | None = None, *, limit: int = 500) -> list[Problem]:
        if limit <= 0:
            return []
        query: Doc = {} if project_id is None else {"project_id": project_id}
        cursor = self.collection(PROBLEMS).find(query, sort=_OLDEST_FIRST, limit=limit)
        return [_problem(doc) async for doc in cursor]

    # -- dead letters ----------------------------------------------------------------

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._insert(DEAD_LETTERS, _letter_doc(letter))

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        cursor = self.collection(DEAD_LETTERS).find({}, sort=_NEWEST_FIRST, limit=limit)
        return [_letter(doc) async for doc in cursor]
