"""The dashboard figures on a crafted set of incidents, tasks and projects in a real SQLite storage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.storage.records import Department, Incident, Problem, Project, Task, TaskState
from server.storage.sqlite import SqliteStorage
from workflows.dashboard import OPEN_TASK_STATES, dashboard_figures, effective_deadline, is_overdue
from workflows.engine import OPEN_TASK

NOW = 1_700_000_000_000
HOUR = 3_600_000


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "m.sqlite3")
    await s.open()
    yield s
    await s.close()


def incident(n: int, level: int, state: str) -> Incident:
    return Incident(id=f"inc{n:02d}", title=f"事件{n}", type="flood", level=level, description="", address="",
                    latitude=None, longitude=None, reporter_id="u1", reporter_device_id=None,
                    state=state, created_at=NOW - HOUR, updated_at=NOW - HOUR)  # type: ignore[arg-type]


_TASK = Task(id="", case_type="incident", case_id="inc01", title="任务", instructions="", priority="normal",
             deadline=NOW + HOUR, assigned_by="u1", state="assigned", created_at=NOW - 10 * HOUR,
             updated_at=NOW - 10 * HOUR, department_id="water")


def task(task_id: str, state: TaskState, **kw: Any) -> Task:
    return replace(_TASK, id=task_id, state=state, **kw)


def project(n: int, phase: str, progress: int) -> Project:
    return Project(id=f"p{n}", code=f"XM-{n:03d}", name=f"项目{n}", owner_department_id="water",
                   responsible_department_ids=("housing",), investment=1000.0, address="", latitude=None,
                   longitude=None, phase=phase, created_by="u1", created_at=NOW, updated_at=NOW,  # type: ignore[arg-type]
                   progress=progress)


def problem(n: int, project_id: str, state: str) -> Problem:
    return Problem(id=f"pr{n:02d}", project_id=project_id, title=f"问题{n}", description="", reporter_id="u1",
                   state=state, created_at=NOW, updated_at=NOW)  # type: ignore[arg-type]


async def craft(storage: SqliteStorage) -> None:
    for n, (dep_id, name) in enumerate((("water", "水利局"), ("housing", "住建局"), ("rescue", "应急局"))):
        await storage.create_department(Department(id=dep_id, name=name, kind="department", parent_id=None,
                                                   created_at=NOW + n, updated_at=NOW + n))
    for inc in (incident(1, 1, "reported"), incident(2, 2, "responding"), incident(3, 2, "resolved"),
                incident(4, 4, "verified"), incident(5, 3, "closed"), incident(6, 1, "closed")):
        await storage.create_incident(inc)
    tasks = [
        task("t01", "assigned", deadline=NOW - 1),                       # overdue by a millisecond
        task("t02", "in_progress", deadline=NOW + HOUR),                 # in time
        task("t03", "accepted", deadline=NOW),                           # due exactly now: not yet overdue
        # Supervised: the supervise deadline is the one that counts.
        task("t04", "accepted", deadline=NOW - 5 * HOUR, supervised=True, supervised_at=NOW - 4 * HOUR,
             supervise_deadline=NOW + HOUR),                             # original deadline past, new one not
        task("t05", "sent_back", deadline=NOW - 5 * HOUR, supervised=True, supervised_at=NOW - 4 * HOUR,
             supervise_deadline=NOW - HOUR),                             # past the supervise deadline too
        task("t06", "submitted", deadline=NOW - HOUR),                   # awaits inspection, not overdue
        task("t07", "submitted", deadline=NOW + HOUR, supervised=True, supervise_deadline=NOW - 1),
        task("t08", "cancelled", deadline=NOW - HOUR),                   # counts nowhere
        # Passed tasks of the water bureau: 3 of 4 on time (one exactly at its deadline).
        task("t09", "passed", deadline=NOW - HOUR, completed_at=NOW - 2 * HOUR),
        task("t10", "passed", deadline=NOW - HOUR, completed_at=NOW - HOUR),
        task("t11", "passed", deadline=NOW, completed_at=NOW - 1),
        task("t12", "passed", deadline=NOW - 2 * HOUR, completed_at=NOW - HOUR),
        # The housing bureau: one passed, late.
        task("t13", "passed", department_id="housing", deadline=NOW - 2 * HOUR, completed_at=NOW - HOUR),
        # A passed task given to a person with no department is in no department's rate.
        task("t14", "passed", department_id=None, assignee_id="u9", deadline=NOW, completed_at=NOW - HOUR),
    ]
    for t in tasks:
        await storage.create_task(t)
    for p in (project(1, "planning", 0), project(2, "construction", 40), project(3, "construction", 75),
              project(4, "operation", 100)):
        await storage.create_project(p)
    for pr in (problem(1, "p2", "open"), problem(2, "p2", "tasked"), problem(3, "p2", "resolved"),
               problem(4, "p3", "open"), problem(5, "p4", "resolved")):
        await storage.create_problem(pr)


async def test_figures_on_a_crafted_county(storage: SqliteStorage) -> None:
    await craft(storage)
    figures = await dashboard_figures(storage, now=NOW)
    assert json.loads(json.dumps(figures)) == figures  # plain JSON values only
    assert figures["generated_at"] == NOW

    assert figures["incidents"] == {
        "open": 4,
        "by_level": {"1": 1, "2": 2, "3": 0, "4": 1},
        "by_state": {"reported": 1, "verified": 1, "responding": 1, "resolved": 1},
    }
    assert figures["tasks"] == {
        "open": 5,
        "overdue": 2,            # t01, t05
        "supervised_open": 2,    # t04, t05 (t07 is submitted)
        "supervised_overdue": 1,
        "awaiting_inspection": 2,
        "by_state": {"assigned": 1, "accepted": 2, "in_progress": 1, "sent_back": 1},
    }
    assert figures["on_time"] == {
        "departments": [
            {"department_id": "water", "department_name": "水利局", "passed": 4, "on_time": 3, "rate": 0.75},
            {"department_id": "housing", "department_name": "住建局", "passed": 1, "on_time": 0, "rate": 0.0},
        ],
        "passed": 5,
        "on_time": 3,
        "rate": 0.6,
    }
    assert figures["projects"] == {
        "total": 4,
        "by_phase": {"planning": 1, "start": 0, "construction": 2, "completion": 0, "operation": 1},
        "open_problems": 3,
        "items": [
            {"project_id": "p1", "code": "XM-001", "name": "项目1", "phase": "planning", "progress": 0,
             "open_problems": 0},
            {"project_id": "p2", "code": "XM-002", "name": "项目2", "phase": "construction", "progress": 40,
             "open_problems": 2},
            {"project_id": "p3", "code": "XM-003", "name": "项目3", "phase": "construction", "progress": 75,
             "open_problems": 1},
            {"project_id": "p4", "code": "XM-004", "name": "项目4", "phase": "operation", "progress": 100,
             "open_problems": 0},
        ],
    }


async def test_time_moves_tasks_into_overdue(storage: SqliteStorage) -> None:
    await craft(storage)
    later = await dashboard_figures(storage, now=NOW + 2 * HOUR)
    # t02, t03 and t04 (its supervise deadline) are now past too.
    assert later["tasks"]["overdue"] == 5 and later["tasks"]["supervised_overdue"] == 2


async def test_an_empty_county(storage: SqliteStorage) -> None:
    figures = await dashboard_figures(storage, now=NOW)
    assert figures["incidents"]["open"] == 0
    assert figures["incidents"]["by_level"] == {"1": 0, "2": 0, "3": 0, "4": 0}
    assert figures["tasks"]["open"] == figures["tasks"]["overdue"] == 0
    assert figures["on_time"] == {"departments": [], "passed": 0, "on_time": 0, "rate": None}
    assert figures["projects"]["items"] == [] and figures["projects"]["total"] == 0


async def test_open_incidents_are_all_counted_past_one_page(storage: SqliteStorage) -> None:
    for n in range(520):
        await storage.create_incident(replace(incident(0, 3, "reported"), id=f"inc{n:04d}"))
    figures = await dashboard_figures(storage, now=NOW)
    assert figures["incidents"]["open"] == 520 and figures["incidents"]["by_level"]["3"] == 520


def test_open_states_match_the_engine() -> None:
    assert frozenset(OPEN_TASK_STATES) == OPEN_TASK


@pytest.mark.parametrize(
    ("kw", "now", "deadline", "overdue"),
    [
        ({"state": "assigned"}, NOW + 1, NOW, True),
        ({"state": "assigned"}, NOW, NOW, False),
        ({"state": "submitted"}, NOW + HOUR, NOW, False),
        ({"state": "passed"}, NOW + HOUR, NOW, False),
        ({"state": "in_progress", "supervised": True, "supervise_deadline": NOW + HOUR}, NOW + 1, NOW + HOUR, False),
        ({"state": "in_progress", "supervised": True, "supervise_deadline": NOW - HOUR}, NOW, NOW - HOUR, True),
        # Supervised with no supervise deadline recorded: the task's own deadline counts.
        ({"state": "sent_back", "supervised": True}, NOW + 1, NOW, True),
    ],
)
def test_overdue_rule(kw: dict[str, Any], now: int, deadline: int, overdue: bool) -> None:
    t = replace(_TASK, id="t", deadline=NOW, **kw)
    assert effective_deadline(t) == deadline
    assert is_overdue(t, now) is overdue
