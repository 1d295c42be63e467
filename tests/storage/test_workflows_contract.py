"""The workflow contract (incidents, tasks, projects, problems, dead letters) for every backend (see conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from dataclasses import replace
from typing import Any

import pytest

from server.ids import new_id
from server.storage.ports import Storage, StorageConflict
from server.storage.records import (
    DeadLetter,
    Incident,
    Problem,
    ProgressReport,
    Project,
    Task,
    TaskAck,
    TaskProgress,
)

# Floats that a careless encoding would change: a sign, the smallest subnormal, the largest
# double, digits past what a REAL printed with 15 digits keeps.
AWKWARD_FLOATS = [-0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 117.98765432101234, -33.000000000000014]


def sorted_ids(n: int) -> list[str]:
    """n distinct ids in ascending order (ids made in one millisecond are not ordered by creation)."""
    return sorted(new_id() for _ in range(n))


def shuffled(items: list[Any]) -> list[Any]:
    """The same items in another order: what is listed must not depend on the insertion order."""
    out = list(items)
    random.Random(len(out)).shuffle(out)
    return out


def same_float(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.hex() == b.hex() and math.copysign(1.0, a) == math.copysign(1.0, b)


def assert_every_default_overridden(record: Any) -> None:
    """A "full" record sets every optional field to something other than its default."""
    for f in dataclasses.fields(record):
        if f.default is not dataclasses.MISSING:
            assert getattr(record, f.name) != f.default, f"{type(record).__name__}.{f.name} is left at its default"
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(record, f.name) != f.default_factory(), f"{type(record).__name__}.{f.name} is default"


# -- factories ----------------------------------------------------------------------------
# `minimal_*` leaves every optional field at its default (coordinates None); `full_*` sets them all.


def minimal_incident(incident_id: str | None = None, **kw: Any) -> Incident:
    base: dict[str, Any] = dict(
        id=incident_id or new_id(),
        title="河堤渗水",
        type="flood",
        level=4,
        description="",
        address="",
        latitude=None,
        longitude=None,
        reporter_id="u1",
        reporter_device_id=None,
        state="reported",
        created_at=1000,
        updated_at=1000,
    )
    base.update(kw)
    return Incident(**base)


def full_incident(incident_id: str | None = None, **kw: Any) -> Incident:
    base: dict[str, Any] = dict(
        id=incident_id or new_id(),
        title="城东镇 河堤渗水 'quoted' \"twice\"",
        type="flood",
        level=2,
        description="堤坝出现管涌，需要立即处置。\nSecond line; DROP TABLE incidents; --",
        address="示范县城东镇 12 号",
        latitude=30.123456789012345,
        longitude=-120.98765432109876,
        reporter_id="u-reporter",
        reporter_device_id="d-phone",
        state="resolved",
        created_at=1_700_000_000_123,
        updated_at=1_700_000_500_456,
        version=7,
        attachments=("f1", "f2", "文件3"),
        room_id="room-1",
        verified_by="u-commander",
        verified_at=1_700_000_100_000,
        resolved_at=1_700_000_400_000,
        closed_at=1_700_000_450_000,
        client_id=f"phone-0f3c:{new_id()}",
    )
    base.update(kw)
    return Incident(**base)


def minimal_task(task_id: str | None = None, **kw: Any) -> Task:
    base: dict[str, Any] = dict(
        id=task_id or new_id(),
        case_type="incident",
        case_id="i1",
        title="巡查堤坝",
        instructions="",
        priority="normal",
        deadline=5000,
        assigned_by="u-commander",
        state="assigned",
        created_at=1000,
        updated_at=1000,
    )
    base.update(kw)
    return Task(**base)


def full_task(task_id: str | None = None, **kw: Any) -> Task:
    base: dict[str, Any] = dict(
        id=task_id or new_id(),
        case_type="project",
        case_id="p-9",
        title="督办：征地拆迁",
        instructions="三日内完成，逐户登记。",
        priority="urgent",
        deadline=1_700_100_000_000,
        assigned_by="u-commander",
        state="sent_back",
        created_at=1_700_000_000_000,
        updated_at=1_700_000_900_000,
        version=5,
        department_id="dept-water",
        assignee_id="u-lead",
        accepted_by="u-lead",
        accepted_at=1_700_000_010_000,
        urge_count=3,
        last_urged_at=1_700_000_020_000,
        chain_active=False,
        supervised=True,
        supervised_at=1_700_000_030_000,
        supervise_deadline=1_700_000_040_000,
        result_text="已完成 80%",
        result_attachments=("f-res-1", "f-res-2"),
        submitted_at=1_700_000_050_000,
        submitted_by="u-member",
        review_comment="材料不全，退回补充",
        reviewed_by="u-inspector",
        reviewed_at=1_700_000_060_000,
        sent_back_count=2,
        completed_at=1_700_000_070_000,
        problem_id="prob-1",
    )
    base.update(kw)
    return Task(**base)


def minimal_project(project_id: str | None = None, **kw: Any) -> Project:
    pid = project_id or new_id()
    base: dict[str, Any] = dict(
        id=pid,
        code=f"XM-{pid}",
        name="城东污水处理厂",
        owner_department_id="dept-dev",
        responsible_department_ids=(),
        investment=1200.0,
        address="",
        latitude=None,
        longitude=None,
        phase="planning",
        created_by="u-admin",
        created_at=1000,
        updated_at=1000,
    )
    base.update(kw)
    return Project(**base)


def full_project(project_id: str | None = None, **kw: Any) -> Project:
    pid = project_id or new_id()
    base: dict[str, Any] = dict(
        id=pid,
        code=f"2024-重点-{pid}",
        name="城东污水处理厂二期",
        owner_department_id="dept-dev",
        responsible_department_ids=("dept-water", "dept-land", "dept-town"),
        investment=123456.789012345,
        address="示范县城东工业园",
        latitude=29.99999999999999,
        longitude=121.00000000000001,
        phase="construction",
        created_by="u-admin",
        created_at=1_700_000_000_000,
        updated_at=1_700_000_800_000,
        version=4,
        description="日处理能力 5 万吨。",
        planned={"start": 1_700_100_000_000, "construction": 1_700_200_000_000, "completion": 1_800_000_000_000},
        actual={"start": 1_700_150_000_000},
        progress=42,
        room_id="room-p",
    )
    base.update(kw)
    return Project(**base)


def minimal_problem(problem_id: str | None = None, **kw: Any) -> Problem:
    base: dict[str, Any] = dict(
        id=problem_id or new_id(),
        project_id="p1",
        title="征地受阻",
        description="",
        reporter_id="u1",
        state="open",
        created_at=1000,
        updated_at=1000,
    )
    base.update(kw)
    return Problem(**base)


def full_problem(problem_id: str | None = None, **kw: Any) -> Problem:
    base: dict[str, Any] = dict(
        id=problem_id or new_id(),
        project_id="p-7",
        title="资金缺口",
        description="第二批资金未到位。",
        reporter_id="u-lead",
        state="resolved",
        created_at=1_700_000_000_000,
        updated_at=1_700_000_600_000,
        version=3,
        task_id="t-9",
        resolved_at=1_700_000_600_000,
    )
    base.update(kw)
    return Problem(**base)


def make_report(project_id: str = "p1", *, created_at: int = 1000, **kw: Any) -> ProgressReport:
    base: dict[str, Any] = dict(
        id=new_id(),
        project_id=project_id,
        percent=30,
        text="主体结构完成三成",
        reporter_id="u1",
        created_at=created_at,
        attachments=("f1", "f2"),
        client_id=f"c-{new_id()}",
    )
    base.update(kw)
    return ProgressReport(**base)


def make_task_progress(task_id: str = "t1", *, created_at: int = 1000, **kw: Any) -> TaskProgress:
    base: dict[str, Any] = dict(
        id=new_id(),
        task_id=task_id,
        reporter_id="u1",
        text="已完成一半，'quoted' \"twice\"; --",
        created_at=created_at,
        percent=50,
        attachments=("f1", "文件2"),
        client_id=f"c-{new_id()}",
    )
    base.update(kw)
    return TaskProgress(**base)


def make_letter(*, created_at: int = 1000, **kw: Any) -> DeadLetter:
    base: dict[str, Any] = dict(
        id=new_id(),
        channel="wecom",
        event="task.urge",
        payload={"task_id": "t1"},
        attempts=5,
        last_error="HTTP 502",
        created_at=created_at,
    )
    base.update(kw)
    return DeadLetter(**base)


# The four versioned records, for the tests that treat them alike.
VERSIONED = {
    "incident": (minimal_incident, full_incident),
    "task": (minimal_task, full_task),
    "project": (minimal_project, full_project),
    "problem": (minimal_problem, full_problem),
}


async def create(storage: Storage, kind: str, record: Any) -> None:
    await getattr(storage, f"create_{kind}")(record)


async def get(storage: Storage, kind: str, record_id: str) -> Any:
    return await getattr(storage, f"get_{kind}")(record_id)


async def update(storage: Storage, kind: str, record: Any, expected_version: int) -> bool:
    result: bool = await getattr(storage, f"update_{kind}")(record, expected_version=expected_version)
    return result


# -- create and get -------------------------------------------------------------------------


def test_full_factories_set_every_field() -> None:
    for _, full in VERSIONED.values():
        assert_every_default_overridden(full())
    assert_every_default_overridden(make_report())
    assert_every_default_overridden(make_task_progress())


@pytest.mark.parametrize("kind", list(VERSIONED))
async def test_round_trip_with_every_field_and_with_defaults(storage: Storage, kind: str) -> None:
    minimal, full = VERSIONED[kind]
    for record in (full(), minimal()):
        assert await get(storage, kind, record.id) is None
        await create(storage, kind, record)
        stored = await get(storage, kind, record.id)
        assert stored == record
        assert type(stored) is type(record)


@pytest.mark.parametrize("kind", list(VERSIONED))
async def test_create_refuses_a_taken_id(storage: Storage, kind: str) -> None:
    minimal, full = VERSIONED[kind]
    record = minimal()
    await create(storage, kind, record)
    with pytest.raises(StorageConflict):
        await create(storage, kind, full(record.id))
    assert await get(storage, kind, record.id) == record


async def test_round_trip_keeps_field_types(storage: Storage) -> None:
    incident, task, project = full_incident(), full_task(), full_project()
    await storage.create_incident(incident)
    await storage.create_task(task)
    await storage.create_project(project)
    got_incident = await storage.get_incident(incident.id)
    got_task = await storage.get_task(task.id)
    got_project = await storage.get_project(project.id)
    assert got_incident is not None and got_task is not None and got_project is not None
    assert isinstance(got_incident.attachments, tuple) and isinstance(got_incident.latitude, float)
    assert isinstance(got_task.result_attachments, tuple)
    assert got_task.chain_active is False and got_task.supervised is True
    assert isinstance(got_project.responsible_department_ids, tuple)
    assert isinstance(got_project.investment, float)
    assert all(isinstance(v, int) for v in got_project.planned.values())


async def test_floats_round_trip_exactly(storage: Storage) -> None:
    for value in AWKWARD_FLOATS:
        incident = full_incident(latitude=value, longitude=-value)
        project = full_project(investment=value, latitude=value, longitude=None)
        await storage.create_incident(incident)
        await storage.create_project(project)
        got_incident = await storage.get_incident(incident.id)
        got_project = await storage.get_project(project.id)
        assert got_incident is not None and got_project is not None
        assert same_float(got_incident.latitude, value) and same_float(got_incident.longitude, -value)
        assert same_float(got_project.investment, value) and same_float(got_project.latitude, value)
        assert got_project.longitude is None


async def test_whole_numbers_come_back_as_floats(storage: Storage) -> None:
    project = minimal_project(investment=1200, latitude=30, longitude=None)
    await storage.create_project(project)
    stored = await storage.get_project(project.id)
    assert stored is not None
    assert type(stored.investment) is float and stored.investment == 1200.0
    assert type(stored.latitude) is float and stored.latitude == 30.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_non_finite_numbers_are_refused(storage: Storage, bad: float) -> None:
    with pytest.raises(ValueError):
        await storage.create_incident(minimal_incident(latitude=bad, longitude=1.0))
    with pytest.raises(ValueError):
        await storage.create_project(minimal_project(investment=bad))
    project = minimal_project()
    await storage.create_project(project)
    with pytest.raises(ValueError):
        await storage.update_project(replace(project, longitude=bad, version=2), expected_version=1)
    assert await storage.get_project(project.id) == project
    assert await storage.list_incidents() == []


async def test_phase_dates_must_be_keyed_by_phase(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.create_project(minimal_project(planned={"start.date": 1}))
    with pytest.raises(ValueError):
        await storage.create_project(minimal_project(actual={"$set": 1}))
    assert await storage.list_projects() == []


# -- compare-and-set updates --------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(VERSIONED))
async def test_update_writes_every_field_and_moves_the_version(storage: Storage, kind: str) -> None:
    minimal, full = VERSIONED[kind]
    record = minimal()
    await create(storage, kind, record)
    # every field changes (id kept)...
    filled = full(record.id, version=2)
    assert await update(storage, kind, filled, 1) is True
    assert await get(storage, kind, record.id) == filled
    # ...and back: optional fields are cleared, not left as they were
    cleared = minimal(record.id, version=3)
    assert await update(storage, kind, cleared, 2) is True
    assert await get(storage, kind, record.id) == cleared


@pytest.mark.parametrize("kind", list(VERSIONED))
async def test_stale_or_unknown_update_changes_nothing(storage: Storage, kind: str) -> None:
    minimal, full = VERSIONED[kind]
    record = minimal()
    await create(storage, kind, record)
    first = full(record.id, version=2)
    assert await update(storage, kind, first, 1) is True
    # another node still holding version 1 loses
    assert await update(storage, kind, full(record.id, version=2, created_at=5), 1) is False
    assert await get(storage, kind, record.id) == first
    # an expected version from the future loses as well
    assert await update(storage, kind, full(record.id, version=10, created_at=6), 9) is False
    assert await get(storage, kind, record.id) == first
    # an unknown record: False, and nothing is created
    ghost = full(version=2)
    assert await update(storage, kind, ghost, 1) is False
    assert await get(storage, kind, ghost.id) is None


@pytest.mark.parametrize("kind", list(VERSIONED))
async def test_update_must_carry_the_next_version(storage: Storage, kind: str) -> None:
    minimal, _ = VERSIONED[kind]
    record = minimal()
    await create(storage, kind, record)
    for wrong in (1, 3):
        with pytest.raises(ValueError):
            await update(storage, kind, replace(record, version=wrong, created_at=9), 1)
    assert await get(storage, kind, record.id) == record


@pytest.mark.parametrize("kind", list(VERSIONED))
async def test_concurrent_updates_exactly_one_wins(storage: Storage, kind: str) -> None:
    minimal, full = VERSIONED[kind]
    record = minimal()
    await create(storage, kind, record)
    contenders = [full(record.id, version=2, updated_at=2000 + i) for i in range(2)]
    results = await asyncio.gather(*(update(storage, kind, c, 1) for c in contenders))
    assert sorted(results) == [False, True]
    assert await get(storage, kind, record.id) == contenders[results.index(True)]
    # a larger crowd, from the winner's version
    crowd = [full(record.id, version=3, updated_at=3000 + i) for i in range(6)]
    results = await asyncio.gather(*(update(storage, kind, c, 2) for c in crowd))
    assert results.count(True) == 1
    assert await get(storage, kind, record.id) == crowd[results.index(True)]


# -- incidents ----------------------------------------------------------------------------------


async def test_list_incidents_newest_first_filtered_and_paged(storage: Storage) -> None:
    ids = sorted_ids(7)
    states = ["reported", "verified", "responding", "reported", "closed", "resolved", "reported"]
    incidents = [minimal_incident(i, state=s) for i, s in zip(ids, states, strict=True)]
    for incident in shuffled(incidents):
        await storage.create_incident(incident)
    newest_first = list(reversed(incidents))
    assert await storage.list_incidents() == newest_first
    assert await storage.list_incidents(limit=3) == newest_first[:3]
    assert await storage.list_incidents(limit=0) == []
    assert await storage.list_incidents(states=["reported"]) == [i for i in newest_first if i.state == "reported"]
    open_states: list[Any] = ["reported", "verified", "responding"]
    assert await storage.list_incidents(states=open_states) == [i for i in newest_first if i.state in open_states]
    assert await storage.list_incidents(states=[]) == []
    # paging backwards by id, two at a time, skips and repeats nothing
    pages: list[list[Incident]] = []
    before: str | None = None
    while True:
        page = await storage.list_incidents(before_id=before, limit=2)
        if not page:
            break
        pages.append(page)
        before = page[-1].id
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for page in pages for i in page] == newest_first
    # paging combined with a state filter
    reported = [i for i in newest_first if i.state == "reported"]
    assert await storage.list_incidents(states=["reported"], before_id=reported[0].id, limit=1) == [reported[1]]
    assert await storage.list_incidents(before_id=ids[0]) == []


async def test_list_incidents_follows_updates(storage: Storage) -> None:
    incident = minimal_incident()
    await storage.create_incident(incident)
    assert await storage.update_incident(replace(incident, state="verified", version=2), expected_version=1)
    assert await storage.list_incidents(states=["reported"]) == []
    assert [i.id for i in await storage.list_incidents(states=["verified"])] == [incident.id]


# -- tasks --------------------------------------------------------------------------------------


async def test_list_tasks_filters_and_combinations(storage: Storage) -> None:
    ids = sorted_ids(8)
    spec: list[dict[str, Any]] = [
        dict(case_type="incident", case_id="i1", department_id="d1", assignee_id=None, state="assigned"),
        dict(case_type="incident", case_id="i1", department_id="d1", assignee_id="u1", state="accepted",
             supervised=True),
        dict(case_type="incident", case_id="i2", department_id="d2", assignee_id="u1", state="in_progress"),
        dict(case_type="project", case_id="i1", department_id="d1", assignee_id="u2", state="submitted",
             supervised=True),
        dict(case_type="project", case_id="p1", department_id=None, assignee_id="u2", state="passed"),
        dict(case_type="project", case_id="p1", department_id="d2", assignee_id=None, state="cancelled"),
        dict(case_type="incident", case_id="i1", department_id="d2", assignee_id="u1", state="sent_back",
             supervised=True),
        dict(case_type="incident", case_id="i2", department_id="d1", assignee_id="u2", state="assigned"),
    ]
    tasks = [minimal_task(task_id, **kw) for task_id, kw in zip(ids, spec, strict=True)]
    for task in shuffled(tasks):
        await storage.create_task(task)

    async def listed(**filters: Any) -> list[Task]:
        return await storage.list_tasks(**filters)

    def expected(**filters: Any) -> list[Task]:
        out = tasks
        for key, value in filters.items():
            if key == "states":
                out = [t for t in out if t.state in value]
            else:
                out = [t for t in out if getattr(t, key) == value]
        return out

    assert await listed() == tasks  # oldest first, by id
    cases: list[dict[str, Any]] = [
        dict(case_type="incident"),
        dict(case_id="i1"),  # an id alone matches across case types
        dict(case_type="incident", case_id="i1"),
        dict(case_type="project", case_id="i1"),
        dict(assignee_id="u1"),
        dict(assignee_id="nobody"),
        dict(department_id="d1"),
        dict(states=["assigned"]),
        dict(states=["assigned", "accepted", "in_progress", "sent_back"]),
        dict(supervised=True),
        dict(supervised=False),
        dict(department_id="d1", states=["assigned"]),
        dict(assignee_id="u1", supervised=True),
        dict(case_type="incident", case_id="i1", assignee_id="u1", department_id="d2", states=["sent_back"],
             supervised=True),
        dict(case_type="incident", case_id="i1", assignee_id="u1", department_id="d2", states=["sent_back"],
             supervised=False),
        dict(department_id="d2", states=["passed", "cancelled"]),
    ]
    for filters in cases:
        assert await listed(**filters) == expected(**filters), filters
    assert await listed(states=[]) == []
    assert await listed(limit=3) == tasks[:3]
    assert await listed(case_type="incident", limit=2) == expected(case_type="incident")[:2]
    assert await listed(limit=0) == []


async def test_list_tasks_follows_updates(storage: Storage) -> None:
    task = minimal_task(department_id="d1")
    await storage.create_task(task)
    moved = replace(task, version=2, department_id="d2", assignee_id="u9", supervised=True, state="accepted")
    assert await storage.update_task(moved, expected_version=1) is True
    assert await storage.list_tasks(department_id="d1") == []
    assert await storage.list_tasks(department_id="d2", assignee_id="u9", supervised=True,
                                    states=["accepted"]) == [moved]


async def test_task_acks_are_idempotent_per_user(storage: Storage) -> None:
    assert await storage.list_task_acks("t1") == []
    first = TaskAck(task_id="t1", user_id="u1", device_id="d-phone", at=2000)
    assert await storage.add_task_ack(first) is True
    # the same user again, from another device, later: refused, the first one stays
    assert await storage.add_task_ack(TaskAck(task_id="t1", user_id="u1", device_id="d-pc", at=3000)) is False
    assert await storage.add_task_ack(first) is False
    other = TaskAck(task_id="t1", user_id="u0", device_id=None, at=1500)
    same_time = TaskAck(task_id="t1", user_id="u2", device_id=None, at=2000)
    elsewhere = TaskAck(task_id="t2", user_id="u1", device_id="d-phone", at=1000)
    for ack in (same_time, other, elsewhere):
        assert await storage.add_task_ack(ack) is True
    assert await storage.list_task_acks("t1") == [other, first, same_time]  # by time, then user
    assert await storage.list_task_acks("t2") == [elsewhere]


async def test_concurrent_acks_exactly_one_wins(storage: Storage) -> None:
    acks = [TaskAck(task_id="t1", user_id="u1", device_id=f"d{i}", at=1000 + i) for i in range(5)]
    results = await asyncio.gather(*(storage.add_task_ack(ack) for ack in acks))
    assert results.count(True) == 1
    assert await storage.list_task_acks("t1") == [acks[results.index(True)]]


# -- projects -----------------------------------------------------------------------------------


async def test_project_code_is_unique(storage: Storage) -> None:
    project = full_project()
    await storage.create_project(project)
    with pytest.raises(StorageConflict):
        await storage.create_project(minimal_project(code=project.code))
    other = minimal_project(code="XM-OTHER")
    await storage.create_project(other)
    # taking another project's code by an update is refused too, and writes nothing
    with pytest.raises(StorageConflict):
        await storage.update_project(replace(other, code=project.code, version=2), expected_version=1)
    assert await storage.get_project(other.id) == other
    # keeping one's own code, or moving to a free one, is fine; the old code is then free
    renamed = replace(other, code="XM-NEW", version=2)
    assert await storage.update_project(renamed, expected_version=1) is True
    reused = minimal_project(code="XM-OTHER")
    await storage.create_project(reused)
    assert await storage.list_projects() == sorted([project, renamed, reused], key=lambda p: p.id)


async def test_list_projects_by_phase_oldest_first(storage: Storage) -> None:
    ids = sorted_ids(6)
    phases = ["planning", "start", "construction", "construction", "completion", "operation"]
    projects = [minimal_project(i, phase=p) for i, p in zip(ids, phases, strict=True)]
    for project in shuffled(projects):
        await storage.create_project(project)
    assert await storage.list_projects() == projects
    assert await storage.list_projects(phases=["construction"]) == projects[2:4]
    assert await storage.list_projects(phases=["start", "completion"]) == [projects[1], projects[4]]
    assert await storage.list_projects(phases=[]) == []
    assert await storage.list_projects(limit=2) == projects[:2]
    assert await storage.list_projects(phases=["construction", "operation"], limit=2) == projects[2:4]
    assert await storage.list_projects(limit=0) == []


async def test_progress_reports_newest_first_per_project(storage: Storage) -> None:
    tie_ids = sorted_ids(2)
    reports = [
        make_report("p1", created_at=1000, percent=10),
        make_report("p1", created_at=3000, percent=50),
        make_report("p1", created_at=2000, percent=30, attachments=()),
        make_report("p1", created_at=4000, id=tie_ids[0], percent=60),
        make_report("p1", created_at=4000, id=tie_ids[1], percent=61),
        make_report("p2", created_at=5000, percent=5),
    ]
    for report in reports:
        await storage.add_progress_report(report)
    newest = [reports[4], reports[3], reports[1], reports[2], reports[0]]
    assert await storage.list_progress_reports("p1") == newest
    assert await storage.list_progress_reports("p1", limit=2) == newest[:2]
    assert await storage.list_progress_reports("p1", limit=0) == []
    assert await storage.list_progress_reports("p2") == [reports[5]]
    assert await storage.list_progress_reports("nope") == []
    with pytest.raises(StorageConflict):
        await storage.add_progress_report(replace(reports[0], percent=99))
    assert (await storage.list_progress_reports("p1"))[-1] == reports[0]


# -- task progress ------------------------------------------------------------------------------


async def test_task_progress_round_trip_newest_first_per_task(storage: Storage) -> None:
    tie_ids = sorted_ids(2)
    reports = [
        make_task_progress("t1", created_at=1000),
        make_task_progress("t1", created_at=3000, percent=None, attachments=(), client_id=None),
        make_task_progress("t1", created_at=2000, percent=0),
        make_task_progress("t1", created_at=4000, id=tie_ids[0], percent=100),
        make_task_progress("t1", created_at=4000, id=tie_ids[1], client_id=None),
        make_task_progress("t2", created_at=5000),
    ]
    for report in shuffled(reports):
        await storage.add_task_progress(report)
    newest = [reports[4], reports[3], reports[1], reports[2], reports[0]]
    listed = await storage.list_task_progress("t1")
    assert listed == newest
    assert [type(r.percent) for r in listed] == [int, int, type(None), int, int]
    assert await storage.list_task_progress("t1", limit=2) == newest[:2]
    assert await storage.list_task_progress("t1", limit=0) == []
    assert await storage.list_task_progress("t2") == [reports[5]]
    assert await storage.list_task_progress("nope") == []
    with pytest.raises(StorageConflict):
        await storage.add_task_progress(replace(reports[0], text="again", client_id=None))
    assert (await storage.list_task_progress("t1"))[-1] == reports[0]


# -- client ids: one record per reporter and client id -----------------------------------------
# Incidents, project progress reports and task progress reports, alike: (make, add, find).

CLIENT_KEYED: dict[str, tuple[Any, str, str]] = {
    "incident": (lambda **kw: minimal_incident(**kw), "create_incident", "find_incident_by_client_id"),
    "progress_report": (lambda **kw: make_report(**kw), "add_progress_report", "find_progress_report_by_client_id"),
    "task_progress": (lambda **kw: make_task_progress(**kw), "add_task_progress", "find_task_progress_by_client_id"),
}


@pytest.mark.parametrize("kind", list(CLIENT_KEYED))
async def test_client_id_is_unique_per_reporter(storage: Storage, kind: str) -> None:
    make, add_name, find_name = CLIENT_KEYED[kind]
    add, find = getattr(storage, add_name), getattr(storage, find_name)
    assert await find("u1", "c-1") is None
    first = make(reporter_id="u1", client_id="c-1")
    await add(first)
    assert await find("u1", "c-1") == first
    # the same reporter and client id again, under a new id: refused, the first one stays
    with pytest.raises(StorageConflict):
        await add(make(reporter_id="u1", client_id="c-1"))
    assert await find("u1", "c-1") == first
    # another reporter with the same client id, or the same reporter with another, is unrelated
    theirs = make(reporter_id="u2", client_id="c-1")
    other = make(reporter_id="u1", client_id="c-2")
    await add(theirs)
    await add(other)
    assert await find("u2", "c-1") == theirs
    assert await find("u1", "c-2") == other
    assert await find("u3", "c-1") is None
    assert await find("u1", "C-1") is None  # client ids are compared exactly
    # records without a client id never collide, and are never found by one
    for _ in range(3):
        await add(make(reporter_id="u1", client_id=None))
    assert await find("u1", "None") is None
    assert await find("u1", "") is None


@pytest.mark.parametrize("kind", list(CLIENT_KEYED))
async def test_concurrent_sends_of_one_client_id_store_one(storage: Storage, kind: str) -> None:
    make, add_name, find_name = CLIENT_KEYED[kind]
    add, find = getattr(storage, add_name), getattr(storage, find_name)
    contenders = [make(reporter_id="u1", client_id="c-race", created_at=1000 + i) for i in range(6)]
    results = await asyncio.gather(*(add(c) for c in contenders), return_exceptions=True)
    won = [c for c, r in zip(contenders, results, strict=True) if r is None]
    assert len(won) == 1
    assert all(isinstance(r, StorageConflict) for r in results if r is not None)
    assert await find("u1", "c-race") == won[0]


async def test_updating_an_incident_keeps_its_client_id(storage: Storage) -> None:
    incident = minimal_incident(client_id="c-keep")
    await storage.create_incident(incident)
    moved = replace(incident, state="verified", version=2)
    assert await storage.update_incident(moved, expected_version=1) is True
    assert await storage.find_incident_by_client_id("u1", "c-keep") == moved
    # and the key stays taken
    with pytest.raises(StorageConflict):
        await storage.create_incident(minimal_incident(client_id="c-keep"))


# -- problems -----------------------------------------------------------------------------------


async def test_list_problems_per_project_and_all(storage: Storage) -> None:
    ids = sorted_ids(5)
    projects = ["p1", "p2", "p1", "p3", "p1"]
    problems = [minimal_problem(i, project_id=p) for i, p in zip(ids, projects, strict=True)]
    for problem in shuffled(problems):
        await storage.create_problem(problem)
    assert await storage.list_problems() == problems
    assert await storage.list_problems(None, limit=2) == problems[:2]
    assert await storage.list_problems("p1") == [problems[0], problems[2], problems[4]]
    assert await storage.list_problems("p1", limit=2) == [problems[0], problems[2]]
    assert await storage.list_problems("p2") == [problems[1]]
    assert await storage.list_problems("nope") == []
    assert await storage.list_problems(limit=0) == []


# -- dead letters -------------------------------------------------------------------------------


AWKWARD_PAYLOAD: dict[str, Any] = {"a.b": 1, "$x": [1, {"c.d": "说明"}]}


async def test_dead_letters_newest_first_with_awkward_payloads(storage: Storage) -> None:
    tie_ids = sorted_ids(2)
    letters = [
        make_letter(created_at=1000, payload=AWKWARD_PAYLOAD),
        make_letter(created_at=3000, payload={}),
        make_letter(created_at=2000, payload={"$set": {"x": 1}, "": None, "nested": {"$in": [True, 1.5, None]}}),
        make_letter(created_at=4000, id=tie_ids[0], payload={"big": 2**62, "neg": -1, "f": 0.1, "s": "\u0000x"}),
        make_letter(created_at=4000, id=tie_ids[1], channel="sms", event="incident.report", attempts=1),
    ]
    for letter in letters:
        await storage.add_dead_letter(letter)
    newest = [letters[4], letters[3], letters[1], letters[2], letters[0]]
    assert await storage.list_dead_letters() == newest
    assert await storage.list_dead_letters(limit=2) == newest[:2]
    assert await storage.list_dead_letters(limit=0) == []
    assert (await storage.list_dead_letters())[-1].payload == {"a.b": 1, "$x": [1, {"c.d": "说明"}]}
    with pytest.raises(StorageConflict):
        await storage.add_dead_letter(replace(letters[0], payload={}))
    assert (await storage.list_dead_letters())[-1] == letters[0]
