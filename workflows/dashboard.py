"""The figures of the dashboard (数据大脑 / 驾驶舱): plain dicts and lists of JSON values.

Choices, so that every number means one thing:

- An open incident is one not `closed` (a `resolved` incident still counts, under its state).
- Open tasks are `assigned`, `accepted`, `in_progress` and `sent_back`. A `submitted` task waits for
  inspection: it is counted there, never as open nor as overdue (the unit has done its part).
- An open task is overdue when `now` is past its deadline; for a supervised task the deadline that
  counts is the supervise deadline (督办时限) when one is set, as in the task chain
  (`workflows.tasks.chain_plan`).
- The on-time rate (效能评价) of a department is over its `passed` tasks: the share completed
  (`completed_at`, else `reviewed_at`) no later than the task's deadline (as extended). A passed task with
  neither time counts as late. Cancelled tasks count nowhere.
- A project's open problems are those not yet resolved (`open` and `tasked`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from server.storage.ports import Storage
from server.storage.records import Incident, IncidentState, Task, TaskState
from workflows.engine import OPEN_TASK, PHASES

# list_tasks, list_projects and list_problems take a limit but no page position: ask for everything.
_ALL = 1_000_000
_PAGE = 500
OPEN_INCIDENT_STATES: tuple[IncidentState, ...] = ("reported", "verified", "responding", "resolved")
OPEN_TASK_STATES: tuple[TaskState, ...] = ("assigned", "accepted", "in_progress", "sent_back")


def effective_deadline(task: Task) -> int:
    """The deadline that counts now: the supervise deadline of a supervised task, else the task's own."""
    if task.supervised and task.supervise_deadline is not None:
        return task.supervise_deadline
    return task.deadline


def is_overdue(task: Task, now: int) -> bool:
    """An open task past the deadline that counts (a submitted task is never overdue)."""
    return task.state in OPEN_TASK and now > effective_deadline(task)


def finished_on_time(task: Task) -> bool:
    done = task.completed_at if task.completed_at is not None else task.reviewed_at
    return done is not None and done <= task.deadline


async def _open_incidents(storage: Storage) -> list[Incident]:
    incidents: list[Incident] = []
    before: str | None = None
    while True:
        page = await storage.list_incidents(states=list(OPEN_INCIDENT_STATES), before_id=before, limit=_PAGE)
        incidents += page
        if len(page) < _PAGE:
            return incidents
        before = page[-1].id


def _rate(on_time: int, passed: int) -> float | None:
    return on_time / passed if passed else None


async def dashboard_figures(storage: Storage, *, now: int) -> dict[str, Any]:
    """Open incidents by level and state; task counts (open, overdue, supervised, awaiting inspection);
    the on-time rate of each department; projects by phase with their open problems."""
    incidents = await _open_incidents(storage)
    by_level = Counter(i.level for i in incidents)
    by_state = Counter(i.state for i in incidents)

    open_tasks = await storage.list_tasks(states=list(OPEN_TASK_STATES), limit=_ALL)
    submitted = await storage.list_tasks(states=["submitted"], limit=_ALL)
    passed = await storage.list_tasks(states=["passed"], limit=_ALL)

    departments = await storage.list_departments()
    names = {d.id: d.name for d in departments}
    order = {d.id: n for n, d in enumerate(departments)}
    done: Counter[str] = Counter()
    in_time: Counter[str] = Counter()
    for task in passed:
        if task.department_id is None:
            continue
        done[task.department_id] += 1
        in_time[task.department_id] += finished_on_time(task)
    on_time = [
        {"department_id": dep, "department_name": names.get(dep, dep), "passed": done[dep], "on_time": in_time[dep],
         "rate": _rate(in_time[dep], done[dep])}
        for dep in sorted(done, key=lambda dep: (order.get(dep, len(order)), dep))
    ]
    total_done, total_in_time = sum(done.values()), sum(in_time.values())

    projects = await storage.list_projects(limit=_ALL)
    unresolved = Counter(p.project_id for p in await storage.list_problems(None, limit=_ALL) if p.state != "resolved")
    by_phase: Counter[str] = Counter(p.phase for p in projects)

    return {
        "generated_at": now,
        "incidents": {
            "open": len(incidents),
            "by_level": {str(level): by_level[level] for level in (1, 2, 3, 4)},
            "by_state": {state: by_state[state] for state in OPEN_INCIDENT_STATES},
        },
        "tasks": {
            "open": len(open_tasks),
            "overdue": sum(is_overdue(t, now) for t in open_tasks),
            "supervised_open": sum(t.supervised for t in open_tasks),
            "supervised_overdue": sum(t.supervised and is_overdue(t, now) for t in open_tasks),
            "awaiting_inspection": len(submitted),
            "by_state": {state: sum(t.state == state for t in open_tasks) for state in OPEN_TASK_STATES},
        },
        "on_time": {
            "departments": on_time,
            "passed": total_done,
            "on_time": total_in_time,
            "rate": _rate(total_in_time, total_done),
        },
        "projects": {
            "total": len(projects),
            "by_phase": {phase: by_phase[phase] for phase in PHASES},
            "open_problems": sum(unresolved.values()),
            "items": [
                {"project_id": p.id, "code": p.code, "name": p.name, "phase": p.phase, "progress": p.progress,
                 "open_problems": unresolved[p.id]}
                for p in projects
            ],
        },
    }
