"""Demo cases for `make run`: an incident being handled and a major project under construction.

Created once, right after the demo county (server/demo.py), through the same services a client
uses, so the rooms, tasks, timeline and audit chains are real. The steps are taken from a
"demo data" device of each person that is signed out at once (it never holds a session).
"""

from __future__ import annotations

from server.auth.service import Principal
from server.ids import new_id, now_ms
from server.storage.ports import Storage
from server.storage.records import Device
from workflows.incidents import IncidentService
from workflows.projects import ProjectService
from workflows.tasks import TaskService

HOUR = 3600 * 1000


async def _as(storage: Storage, username: str) -> Principal:
    user = await storage.get_user_by_username(username)
    assert user is not None, username
    now = now_ms()
    device = Device(id=new_id(), user_id=user.id, name="演示数据", kind="console", created_at=now, last_seen_at=now,
                    revoked_at=now)
    await storage.create_device(device)
    return Principal(user=user, device=device)


async def seed_workflow_demo(storage: Storage, incidents: IncidentService, tasks: TaskService,
                             projects: ProjectService) -> None:
    ctx = incidents.ctx
    commander_p = await _as(storage, "commander")
    responder_p = await _as(storage, "responder")
    lead_p = await _as(storage, "lead")
    who_commander = await ctx.who(commander_p)
    water = await ctx.department_named("水利局")
    housing = await ctx.department_named("住房和城乡建设局")
    assert water is not None and housing is not None

    incident = await incidents.report(responder_p, title="东沟水库水位超警戒", type="flood", level=2,
                                      description="持续降雨，坝体下游出现渗水点。", address="示范县东沟村",
                                      latitude=30.2741, longitude=120.1551, attachments=[])
    incident = await incidents.act(commander_p, who_commander, incident.id, "verify")
    incident = await incidents.act(commander_p, who_commander, incident.id, "respond")
    patrol = await tasks.assign(commander_p, case_type="incident", case_id=incident.id, room_id=incident.room_id,
                                title="大坝巡查", instructions="每小时报告一次渗水情况", priority="urgent",
                                deadline=now_ms() + 4 * HOUR, department_id=water.id, assignee_id=None)
    await tasks.act(lead_p, await ctx.who(lead_p), patrol.id, "accept", room_id=incident.room_id)
    await tasks.assign(commander_p, case_type="incident", case_id=incident.id, room_id=incident.room_id,
                       title="转移下游群众", instructions="", priority="high", deadline=now_ms() + 2 * HOUR,
                       department_id=None, assignee_id=responder_p.user_id)

    project = await projects.create(commander_p, who_commander, code="XM-2026-001", name="城东大桥",
                                    owner_department_id=housing.id, responsible_department_ids=[water.id],
                                    investment=12800.0, address="示范县城东", latitude=None, longitude=None,
                                    description="跨江大桥，双向四车道。",
                                    planned={"start": now_ms() - 90 * 24 * HOUR,
                                             "completion": now_ms() + 300 * 24 * HOUR})
    await projects.act(commander_p, who_commander, project.id, "start")
    await projects.act(commander_p, who_commander, project.id, "build")
    await projects.report_progress(commander_p, who_commander, project.id, percent=35, text="主墩施工完成",
                                   attachments=[])
    await projects.raise_problem(commander_p, who_commander, project.id, title="临时占用河道审批",
                                 description="需水利局出具意见")
