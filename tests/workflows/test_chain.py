"""The automatic urge and supervise chain: the pure plan, two nodes sharing one database, and a restart."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from server.app import SCHEDULER
from server.scheduler import Scheduler
from server.settings import load_settings
from server.storage.records import Task
from tests.factories import make_settings, running_muster
from tests.workflows.conftest import Clock, County
from workflows.tasks import CHAIN_JOB, ChainStep, chain_plan
from workflows.views import INCIDENTS, TASK_SERVICE

S = 1000
D = 10_000_000 * S  # the deadline
SETTINGS = replace(load_settings(environ={}).workflows, urge_before=[3600, 600], overdue_urge_interval=1800,
                   supervise_grace=7200, supervise_after_urges=3, supervise_extension=86400)
TASK = Task(id="t", case_type="incident", case_id="i", title="t", instructions="", priority="normal", deadline=D,
            assigned_by="a", state="assigned", created_at=0, updated_at=0, department_id="d")


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, ChainStep(D - 3600 * S, "urge")),
    ({"last_urged_at": D - 3600 * S, "urge_count": 1}, ChainStep(D - 600 * S, "urge")),
    ({"last_urged_at": D - 600 * S, "urge_count": 1}, ChainStep(D, "urge")),
    ({"last_urged_at": D - 601 * S, "urge_count": 1}, ChainStep(D - 600 * S, "urge")),
    ({"last_urged_at": D, "urge_count": 2}, ChainStep(D + 1800 * S, "urge")),
    ({"last_urged_at": D + 1800 * S, "urge_count": 2}, ChainStep(D + 3600 * S, "urge")),
    # Overdue past the grace: supervised rather than urged again.
    ({"last_urged_at": D + 5400 * S, "urge_count": 2}, ChainStep(D + 7200 * S, "supervise")),
    ({"last_urged_at": D + 6000 * S, "urge_count": 2}, ChainStep(D + 7200 * S, "supervise")),
    # Urged three times and nobody accepted: supervised at once.
    ({"last_urged_at": D - 600 * S, "urge_count": 3}, ChainStep(D - 600 * S, "supervise")),
    # Accepted (and the chain restarted by a supervisor): urges, but the count no longer escalates.
    ({"last_urged_at": D - 600 * S, "urge_count": 3, "accepted_at": 1, "state": "accepted"},
     ChainStep(D, "urge")),
    # Supervised: urges count down to the new deadline; no second escalation.
    ({"supervised": True, "supervise_deadline": D + 86400 * S, "last_urged_at": D + 7200 * S, "urge_count": 4},
     ChainStep(D + 86400 * S - 3600 * S, "urge")),
    ({"supervised": True, "supervise_deadline": D + 86400 * S, "last_urged_at": D + 90000 * S, "urge_count": 9},
     ChainStep(D + 91800 * S, "urge")),
    # Stopped chains and finished tasks plan nothing.
    ({"chain_active": False}, None),
    ({"state": "submitted"}, None),
    ({"state": "passed"}, None),
    ({"state": "cancelled"}, None),
])
def test_chain_plan(changes: dict[str, object], expected: ChainStep | None) -> None:
    assert chain_plan(replace(TASK, **changes), SETTINGS) == expected  # type: ignore[arg-type]


async def make_task(c: County, *, hours: float = 4) -> dict[str, str]:
    incident = await c.ok("reporter", "POST", "/api/incidents", {"title": "山体滑坡", "type": "geological"})
    await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/verify", {})
    task: dict[str, str] = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/tasks", {
        "title": "封闭道路", "deadline": c.clock.now + int(hours * 3600 * 1000),
        "assignee_id": c["rescuer"].user_id})
    return task


async def urge_count(c: County, task_id: str) -> int:
    return int((await c.ok("commander", "GET", f"/api/tasks/{task_id}"))["task"]["urge_count"])


async def test_two_nodes_on_one_database_fire_each_step_once(county: County) -> None:
    c = county
    task = await make_task(c)
    # A second node: its own scheduler over the same database, running the same job handler.
    tasks = c.muster.app[TASK_SERVICE]
    other = Scheduler(c.muster.kernel.storage, node_id="node-b", clock=c.clock)
    other.register(CHAIN_JOB, tasks._chain_job)
    mine = c.muster.app[SCHEDULER]
    seen = []
    for hours in (3.0, 1.0, 0.5, 0.5):  # the urge an hour before, at the deadline, then every half hour
        c.clock.advance(hours * 3600 + 1)
        await asyncio.gather(mine.run_due(), other.run_due(), mine.run_due(), other.run_due())
        seen.append(await urge_count(c, task["id"]))
    assert seen == [1, 2, 3, 3]  # the fourth step supervises instead (three urges, no answer)
    detail = (await c.ok("commander", "GET", f"/api/tasks/{task['id']}"))["task"]
    assert detail["supervised"]
    audited = await c.muster.kernel.storage.list_audit_records(action="task.urge", limit=100)
    assert len(audited) == 3
    assert len(await c.muster.kernel.storage.list_audit_records(action="task.supervise", limit=100)) == 1


async def test_acting_stops_the_chain_and_a_supervisor_restarts_it(county: County) -> None:
    c = county
    task = await make_task(c)  # deadline in four hours
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/accept", {})
    c.clock.advance(2 * 3600)
    await c.run_due()
    assert await urge_count(c, task["id"]) == 0
    status, _ = await c.call("rescuer", "POST", f"/api/tasks/{task['id']}/restart_chain", {"step": "urge"})
    assert status == 403
    await c.ok("supervisor", "POST", f"/api/tasks/{task['id']}/restart_chain", {"step": "urge"})
    c.clock.advance(3600 + 1)  # the point an hour before the deadline
    await c.run_due()
    assert await urge_count(c, task["id"]) == 1
    assert not (await c.ok("commander", "GET", f"/api/tasks/{task['id']}"))["task"]["supervised"]
    # Restarted from the supervise step: escalated on the next run.
    await c.ok("supervisor", "POST", f"/api/tasks/{task['id']}/restart_chain", {"step": "supervise"})
    await c.run_due()
    detail = (await c.ok("commander", "GET", f"/api/tasks/{task['id']}"))["task"]
    assert detail["supervised"] and detail["supervise_deadline"] == c.clock.now + 86400 * 1000
    status, body = await c.call("supervisor", "POST", f"/api/tasks/{task['id']}/supervise", {"reason": "再次督办"})
    assert status == 409 and body["error"]["code"] == "task.already_supervised"
    await c.ok("commander", "POST", f"/api/tasks/{task['id']}/extend",
               {"deadline": c.clock.now + 48 * 3600 * 1000, "reason": "暴雨持续"})
    status, body = await c.call("commander", "POST", f"/api/tasks/{task['id']}/extend",
                                {"deadline": c.clock.now + 96 * 3600 * 1000, "reason": ""})
    assert status == 400 and body["error"]["code"] == "task.reason_required"


async def test_steps_due_while_the_server_was_down_fire_once_after_the_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workflows={"urge_before": [3600, 1800], "overdue_urge_interval": 1800,
                                                  "supervise_grace": 36000})
    clock = Clock()
    async with running_muster(settings) as muster:
        await muster.app[SCHEDULER].stop()
        muster.app[SCHEDULER].clock = clock
        muster.app[INCIDENTS].ctx.clock = clock
        commander = await muster.session("commander")
        responder = await muster.session("responder")
        incident = (await muster.request("POST", "/api/incidents", commander, json={"title": "x", "type": "fire"}))[1]
        await muster.request("POST", f"/api/incidents/{incident['id']}/verify", commander, json={})
        status, task = await muster.request("POST", f"/api/incidents/{incident['id']}/tasks", commander, json={
            "title": "灭火", "deadline": clock.now + 2 * 3600 * 1000, "assignee_id": responder.user_id})
        assert status == 201
    # Down for five hours: the urges an hour and half an hour before, at the deadline, and two overdue ones
    # all fell due meanwhile.
    clock.advance(5 * 3600)
    async with running_muster(settings) as muster:
        await muster.app[SCHEDULER].stop()
        muster.app[SCHEDULER].clock = clock
        muster.app[INCIDENTS].ctx.clock = clock
        for _ in range(3):
            await muster.app[SCHEDULER].run_due()
        stored = await muster.kernel.storage.get_task(task["id"])
        assert stored is not None and stored.urge_count == 1 and stored.last_urged_at == clock.now
        job = await muster.kernel.storage.get_job(f"task:{task['id']}:chain")
        assert job is not None and job.due_at == clock.now + 1800 * 1000
