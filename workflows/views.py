"""HTTP routes of incidents, tasks, projects, timelines, disposal records and the dashboard (thin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.errors import Conflict, Forbidden
from server.http.api import Api, ApiRequest
from server.storage.records import Incident, Project, Task, TaskProgress
from workflows.dashboard import dashboard_figures
from workflows.engine import PROJECTS, TASKS, Who
from workflows.incidents import IncidentService, incident_out
from workflows.models import (
    AssignTask,
    CreateProject,
    DashboardOut,
    IncidentAction,
    IncidentListOut,
    IncidentOut,
    ListQuery,
    ProblemBody,
    ProblemOut,
    ProblemTaskOut,
    ProblemToTask,
    ProgressBody,
    ProgressOut,
    ProgressReportedOut,
    ProjectAction,
    ProjectDetailOut,
    ProjectListOut,
    ProjectOut,
    RecordQuery,
    ReportedIncidentOut,
    ReportIncident,
    TaskAckOut,
    TaskAction,
    TaskDetailOut,
    TaskListOut,
    TaskListQuery,
    TaskOut,
    TaskProgressBody,
    TaskProgressOut,
    TaskProgressReportedOut,
    TimelineOut,
    UpdateIncident,
)
from workflows.projects import ProjectService, problem_out, project_out, report_out
from workflows.tasks import TaskService, task_out
from workflows.timeline import case_timeline, disposal_record, disposal_record_html

api = Api()
INCIDENTS = web.AppKey("muster.incidents", IncidentService)
TASK_SERVICE = web.AppKey("muster.tasks", TaskService)
PROJECT_SERVICE = web.AppKey("muster.projects", ProjectService)
I_TAGS = ["incidents"]
T_TAGS = ["tasks"]
P_TAGS = ["projects"]
ASSIGNABLE_INCIDENT = ("verified", "responding")


async def _who(req: ApiRequest[Any, Any]) -> Who:
    return await req.app[INCIDENTS].ctx.who(req.principal)


# -- incidents -------------------------------------------------------------------------------------------------------


@api.route("GET", "/api/incidents", summary="Incidents I may see, newest first", tags=I_TAGS, query=ListQuery,
           response=IncidentListOut)
async def list_incidents(req: ApiRequest[None, ListQuery]) -> IncidentListOut:
    service, who, q = req.app[INCIDENTS], await _who(req), req.query
    states = [q.state] if q.state else None
    found: list[Incident] = []
    before = q.before_id
    while len(found) <= q.limit:
        page = await service.ctx.storage.list_incidents(states=states, before_id=before, limit=200)  # type: ignore[arg-type]
        for incident in page:
            if await service.may_read(who, incident):
                found.append(incident)
        if len(page) < 200:
            break
        before = page[-1].id
    return IncidentListOut(incidents=[IncidentOut.model_validate(incident_out(i, who)) for i in found[:q.limit]],
                           has_more=len(found) > q.limit)


@api.route("POST", "/api/incidents", summary="Report an incident (上报)", tags=I_TAGS, body=ReportIncident,
           response=ReportedIncidentOut, status=201, errors=(409,))
async def report_incident(req: ApiRequest[ReportIncident, None]) -> ReportedIncidentOut:
    """`client_id`: a resend by the same user is answered 201 with the incident the first send made (as it is
    now) and `duplicate: true`; nothing new is recorded."""
    b = req.body
    incident, duplicate = await req.app[INCIDENTS].report_once(
        req.principal, title=b.title, type=b.type, level=b.level, description=b.description, address=b.address,
        latitude=b.latitude, longitude=b.longitude, attachments=list(b.attachments), client_id=b.client_id)
    return ReportedIncidentOut.model_validate({**incident_out(incident, await _who(req)),
                                               "client_id": incident.client_id, "duplicate": duplicate})


@api.route("GET", "/api/incidents/{incident_id}", summary="An incident, with the actions I may take", tags=I_TAGS,
           response=IncidentOut)
async def get_incident(req: ApiRequest[None, None]) -> IncidentOut:
    who = await _who(req)
    incident = await req.app[INCIDENTS].readable(who, req.path["incident_id"])
    return IncidentOut.model_validate(incident_out(incident, who))


@api.route("PATCH", "/api/incidents/{incident_id}", summary="Correct an incident's facts", tags=I_TAGS,
           body=UpdateIncident, response=IncidentOut, errors=(409,))
async def update_incident(req: ApiRequest[UpdateIncident, None]) -> IncidentOut:
    who = await _who(req)
    b = req.body
    incident = await req.app[INCIDENTS].act(req.principal, who, req.path["incident_id"], "update",
                                            expected_version=b.version, title=b.title, description=b.description,
                                            address=b.address, level=b.level, latitude=b.latitude,
                                            longitude=b.longitude)
    return IncidentOut.model_validate(incident_out(incident, who))


def _incident_action(action: str, summary: str) -> None:
    async def handler(req: ApiRequest[IncidentAction, None]) -> IncidentOut:
        who = await _who(req)
        b = req.body
        incident = await req.app[INCIDENTS].act(req.principal, who, req.path["incident_id"], action,
                                                expected_version=b.version, level=b.level, summary=b.summary,
                                                reason=b.reason)
        return IncidentOut.model_validate(incident_out(incident, who))

    handler.__name__ = f"{action}_incident"
    handler.__doc__ = "Commanders only. `version`: refused with 409 `incident.changed` if it changed meanwhile."
    api.route("POST", f"/api/incidents/{{incident_id}}/{action}", summary=summary, tags=I_TAGS, body=IncidentAction,
              response=IncidentOut, errors=(409,))(handler)


for _action, _summary in [("verify", "Verify (核实): opens the incident room with the responsible leads"),
                          ("respond", "Start the response (启动处置)"), ("resolve", "Resolved (处置完毕)"),
                          ("close", "Close the case (结案)"), ("reopen", "Reopen (重新启动), with a reason")]:
    _incident_action(_action, _summary)


# -- tasks -----------------------------------------------------------------------------------------------------------


async def _case(req: ApiRequest[Any, Any], who: Who, case_type: str, case_id: str) -> tuple[Incident | Project, bool]:
    """The case and whether the asker may read it (404 when they may not and have no task in it)."""
    if case_type == "incident":
        incident = await req.app[INCIDENTS].get(case_id)
        return incident, await req.app[INCIDENTS].may_read(who, incident)
    project = await req.app[PROJECT_SERVICE].get(case_id)
    return project, req.app[PROJECT_SERVICE].may_read(who, project)


async def _readable_task(req: ApiRequest[Any, Any], who: Who, task_id: str) -> tuple[Task, Incident | Project]:
    from server.errors import NotFound

    tasks = req.app[TASK_SERVICE]
    task = await tasks.get(task_id)
    case, readable = await _case(req, who, task.case_type, task.case_id)
    if not await tasks.may_read(who, task, case_readable=readable):
        raise NotFound("no such task", code="task.not_found")
    return task, case


async def _assign(req: ApiRequest[AssignTask, None], case_type: str, case_id: str) -> TaskOut:
    who = await _who(req)
    case, readable = await _case(req, who, case_type, case_id)
    from server.errors import NotFound

    if not readable:
        raise NotFound(f"no such {case_type}", code=f"{case_type}.not_found")
    if isinstance(case, Incident):
        if not who.commander:
            raise Forbidden("only a commander may assign tasks of an incident", code="task.not_allowed")
        if case.state not in ASSIGNABLE_INCIDENT:
            raise Conflict("tasks are assigned once the incident is verified and until it is resolved",
                           code="incident.bad_transition")
    elif not (who.commander or who.projects_office):
        raise Forbidden("only a commander or the major-projects office may assign tasks of a project",
                        code="task.not_allowed")
    b = req.body
    task = await req.app[TASK_SERVICE].assign(req.principal, case_type=case_type, case_id=case_id,
                                              room_id=case.room_id, title=b.title, instructions=b.instructions,
                                              priority=b.priority, deadline=b.deadline,
                                              department_id=b.department_id, assignee_id=b.assignee_id)
    return TaskOut.model_validate(task_out(task, who))


@api.route("POST", "/api/incidents/{incident_id}/tasks", summary="Assign a task (交办) of an incident", tags=T_TAGS,
           body=AssignTask, response=TaskOut, status=201, errors=(409,))
async def assign_incident_task(req: ApiRequest[AssignTask, None]) -> TaskOut:
    return await _assign(req, "incident", req.path["incident_id"])


@api.route("POST", "/api/projects/{project_id}/tasks", summary="Assign a task (交办) of a project", tags=T_TAGS,
           body=AssignTask, response=TaskOut, status=201, errors=(409,))
async def assign_project_task(req: ApiRequest[AssignTask, None]) -> TaskOut:
    return await _assign(req, "project", req.path["project_id"])


async def _case_tasks(req: ApiRequest[Any, Any], case_type: str, case_id: str) -> TaskListOut:
    who = await _who(req)
    _, readable = await _case(req, who, case_type, case_id)
    tasks = await req.app[TASK_SERVICE].ctx.storage.list_tasks(case_type=case_type, case_id=case_id)
    visible = [t for t in tasks if await req.app[TASK_SERVICE].may_read(who, t, case_readable=readable)]
    if not readable and not visible:
        from server.errors import NotFound

        raise NotFound(f"no such {case_type}", code=f"{case_type}.not_found")
    return TaskListOut(tasks=[TaskOut.model_validate(task_out(t, who)) for t in visible])


@api.route("GET", "/api/incidents/{incident_id}/tasks", summary="Tasks of an incident", tags=T_TAGS,
           response=TaskListOut)
async def incident_tasks(req: ApiRequest[None, None]) -> TaskListOut:
    return await _case_tasks(req, "incident", req.path["incident_id"])


@api.route("GET", "/api/tasks", summary="Tasks: mine, my department's, or (for supervisors) all", tags=T_TAGS,
           query=TaskListQuery, response=TaskListOut)
async def list_tasks(req: ApiRequest[None, TaskListQuery]) -> TaskListOut:
    """`mine=true`: assigned to me, or to my department and not yet taken by anyone."""
    who, q = await _who(req), req.query
    storage = req.app[TASK_SERVICE].ctx.storage
    states = [q.state] if q.state else None
    sees_all = who.commander or who.has("inspector") or who.supervision
    if sees_all and not q.mine:
        tasks = await storage.list_tasks(states=states, supervised=q.supervised)  # type: ignore[arg-type]
    else:
        mine = await storage.list_tasks(assignee_id=who.user_id, states=states,  # type: ignore[arg-type]
                                        supervised=q.supervised)
        department = await storage.list_tasks(department_id=who.department_id, states=states,  # type: ignore[arg-type]
                                              supervised=q.supervised) if who.department_id else []
        if q.mine:
            department = [t for t in department if t.assignee_id is None or who.has("dept_lead")]
        tasks = sorted({t.id: t for t in [*mine, *department]}.values(), key=lambda t: t.id)
    return TaskListOut(tasks=[TaskOut.model_validate(task_out(t, who)) for t in tasks])


@api.route("GET", "/api/tasks/{task_id}", summary="A task, its acknowledgements and the actions I may take",
           tags=T_TAGS, response=TaskDetailOut)
async def get_task(req: ApiRequest[None, None]) -> TaskDetailOut:
    who = await _who(req)
    task, _ = await _readable_task(req, who, req.path["task_id"])
    storage = req.app[TASK_SERVICE].ctx.storage
    acks = await storage.list_task_acks(task.id)
    return TaskDetailOut(task=TaskOut.model_validate(task_out(task, who)),
                         acks=[TaskAckOut(user_id=a.user_id, device_id=a.device_id, at=a.at) for a in acks],
                         progress=[_progress_out(p) for p in await storage.list_task_progress(task.id)])


def _progress_out(progress: TaskProgress) -> TaskProgressOut:
    return TaskProgressOut(id=progress.id, task_id=progress.task_id, reporter_id=progress.reporter_id,
                           text=progress.text, percent=progress.percent, attachments=list(progress.attachments),
                           created_at=progress.created_at, client_id=progress.client_id)


TASK_SUMMARIES = {
    "accept": "Accept (签收): the acknowledgement, recorded with device and time; stops automatic urges",
    "start": "Start work (开始办理)", "submit": "Submit the result (提交), with text and files",
    "progress": "Report progress (反馈进展), with text, percent and files; idempotent on client_id",
    "delegate": "Delegate inside the department (转派): the department's lead",
    "pass": "Inspect: pass (督查通过)", "send_back": "Inspect: send back (督查退回), with comments",
    "spot_check": "Spot check a passed task (抽查), with a comment",
    "reopen": "Spot check failed: back to work (抽查未通过)",
    "urge": "Urge (催办): reaches every device of the assignee", "supervise": "Supervise (督办): escalate",
    "restart_chain": "Restart the automatic urge chain from a step", "extend": "Extend the deadline, with a reason",
    "reassign": "Reassign (改派)", "cancel": "Cancel (撤销)",
}


def _task_action(action: str) -> None:
    async def handler(req: ApiRequest[TaskAction, None]) -> TaskOut:
        who = await _who(req)
        task, case = await _readable_task(req, who, req.path["task_id"])
        b = req.body
        updated = await req.app[TASK_SERVICE].act(
            req.principal, who, task.id, action, room_id=case.room_id, expected_version=b.version, result=b.result,
            attachments=list(b.attachments), comment=b.comment, message=b.message, reason=b.reason,
            deadline=b.deadline, step=b.step, department_id=b.department_id, assignee_id=b.assignee_id)
        return TaskOut.model_validate(task_out(updated, who))

    handler.__name__ = f"{action}_task"
    handler.__doc__ = ("403 `task.not_allowed` for the wrong person, 409 `task.bad_transition` in the wrong state, "
                       "409 `task.changed` when `version` is stale.")
    api.route("POST", f"/api/tasks/{{task_id}}/{action}", summary=TASK_SUMMARIES[action], tags=T_TAGS,
              body=TaskAction, response=TaskOut, errors=(409,))(handler)


for _action in TASKS.actions():
    if _action != "progress":  # its own body and answer, below
        _task_action(_action)


@api.route("POST", "/api/tasks/{task_id}/progress", summary=TASK_SUMMARIES["progress"], tags=T_TAGS,
           body=TaskProgressBody, response=TaskProgressReportedOut, status=201, errors=(409,))
async def progress_task(req: ApiRequest[TaskProgressBody, None]) -> TaskProgressReportedOut:
    """The assignee, a member of the assigned department or its lead, while the task is accepted, in progress or
    sent back; the state does not change. `client_id`: a resend by the same user is answered 201 with the report
    the first send stored, the task as it is now and `duplicate: true`; nothing new is recorded. 409
    `task.client_id_reused` when that client id was used for another task's report."""
    who = await _who(req)
    task, case = await _readable_task(req, who, req.path["task_id"])
    b = req.body
    current, progress, duplicate = await req.app[TASK_SERVICE].report_progress(
        req.principal, who, task.id, room_id=case.room_id, text=b.text, percent=b.percent,
        attachments=list(b.attachments), client_id=b.client_id)
    return TaskProgressReportedOut(task=TaskOut.model_validate(task_out(current, who)),
                                   progress=_progress_out(progress), duplicate=duplicate)


# -- projects --------------------------------------------------------------------------------------------------------


@api.route("GET", "/api/projects", summary="Major projects I may see", tags=P_TAGS, response=ProjectListOut)
async def list_projects(req: ApiRequest[None, None]) -> ProjectListOut:
    who = await _who(req)
    service = req.app[PROJECT_SERVICE]
    projects = [p for p in await service.ctx.storage.list_projects() if service.may_read(who, p)]
    return ProjectListOut(projects=[ProjectOut.model_validate(project_out(p, who)) for p in projects])


@api.route("POST", "/api/projects", summary="Register a major project (重大项目) and open its room", tags=P_TAGS,
           body=CreateProject, response=ProjectOut, status=201, errors=(409,))
async def create_project(req: ApiRequest[CreateProject, None]) -> ProjectOut:
    who, b = await _who(req), req.body
    project = await req.app[PROJECT_SERVICE].create(
        req.principal, who, code=b.code, name=b.name, owner_department_id=b.owner_department_id,
        responsible_department_ids=list(b.responsible_department_ids), investment=b.investment, address=b.address,
        latitude=b.latitude, longitude=b.longitude, description=b.description,
        planned={str(k): v for k, v in b.planned.items()})
    return ProjectOut.model_validate(project_out(project, who))


@api.route("GET", "/api/projects/{project_id}", summary="A project with its progress, problems and tasks",
           tags=P_TAGS, response=ProjectDetailOut)
async def get_project(req: ApiRequest[None, None]) -> ProjectDetailOut:
    who = await _who(req)
    service = req.app[PROJECT_SERVICE]
    project = await service.readable(who, req.path["project_id"])
    storage = service.ctx.storage
    return ProjectDetailOut(
        project=ProjectOut.model_validate(project_out(project, who)),
        progress=[ProgressOut.model_validate(report_out(r)) for r in await storage.list_progress_reports(project.id)],
        problems=[ProblemOut.model_validate(problem_out(p)) for p in await storage.list_problems(project.id)],
        tasks=[TaskOut.model_validate(task_out(t, who))
               for t in await storage.list_tasks(case_type="project", case_id=project.id)],
    )


def _project_action(action: str, summary: str) -> None:
    async def handler(req: ApiRequest[ProjectAction, None]) -> ProjectOut:
        who, b = await _who(req), req.body
        project = await req.app[PROJECT_SERVICE].act(
            req.principal, who, req.path["project_id"], action, date=b.date, name=b.name, investment=b.investment,
            address=b.address, latitude=b.latitude, longitude=b.longitude, description=b.description,
            planned=dict(b.planned) if b.planned is not None else None)
        return ProjectOut.model_validate(project_out(project, who))

    handler.__name__ = f"{action}_project"
    api.route("POST", f"/api/projects/{{project_id}}/{action}", summary=summary, tags=P_TAGS, body=ProjectAction,
              response=ProjectOut, errors=(409,))(handler)


for _action, _summary in [("start", "Phase: start of works (开工)"), ("build", "Phase: construction (建设)"),
                          ("complete", "Phase: completion (竣工)"), ("operate", "Phase: operation (运行)"),
                          ("update", "Correct the project's facts and planned dates")]:
    assert _action in PROJECTS.actions()
    _project_action(_action, _summary)


@api.route("POST", "/api/projects/{project_id}/progress", summary="Report progress (percentage, text, photos)",
           tags=P_TAGS, body=ProgressBody, response=ProgressReportedOut, status=201, errors=(409,))
async def report_progress(req: ApiRequest[ProgressBody, None]) -> ProgressReportedOut:
    """`client_id`: a resend by the same user is answered 201 with the report the first send stored and
    `duplicate: true`; nothing new is recorded. 409 `project.client_id_reused` when that client id was used for
    another project's report."""
    who, b = await _who(req), req.body
    report, duplicate = await req.app[PROJECT_SERVICE].report_progress_once(
        req.principal, who, req.path["project_id"], percent=b.percent, text=b.text,
        attachments=list(b.attachments), client_id=b.client_id)
    return ProgressReportedOut.model_validate({**report_out(report), "client_id": report.client_id,
                                               "duplicate": duplicate})


@api.route("POST", "/api/projects/{project_id}/problems", summary="Report a problem of a project", tags=P_TAGS,
           body=ProblemBody, response=ProblemOut, status=201)
async def raise_problem(req: ApiRequest[ProblemBody, None]) -> ProblemOut:
    who, b = await _who(req), req.body
    problem = await req.app[PROJECT_SERVICE].raise_problem(req.principal, who, req.path["project_id"],
                                                           title=b.title, description=b.description)
    return ProblemOut.model_validate(problem_out(problem))


@api.route("POST", "/api/problems/{problem_id}/task", summary="Turn a problem into a task (问题转交办)",
           tags=P_TAGS, body=ProblemToTask, response=ProblemTaskOut, status=201, errors=(409,))
async def problem_to_task(req: ApiRequest[ProblemToTask, None]) -> ProblemTaskOut:
    who, b = await _who(req), req.body
    problem, task = await req.app[PROJECT_SERVICE].problem_to_task(
        req.principal, who, req.path["problem_id"], title=b.title, instructions=b.instructions, priority=b.priority,
        deadline=b.deadline, department_id=b.department_id, assignee_id=b.assignee_id)
    return ProblemTaskOut(problem=ProblemOut.model_validate(problem_out(problem)),
                          task=TaskOut.model_validate(task_out(task, who)))


@api.route("POST", "/api/problems/{problem_id}/resolve", summary="Mark a problem resolved", tags=P_TAGS,
           response=ProblemOut, errors=(409,))
async def resolve_problem(req: ApiRequest[None, None]) -> ProblemOut:
    who = await _who(req)
    problem = await req.app[PROJECT_SERVICE].resolve_problem(req.principal, who, req.path["problem_id"])
    return ProblemOut.model_validate(problem_out(problem))


# -- timeline, disposal record, dashboard ----------------------------------------------------------------------------


async def _readable_case(req: ApiRequest[Any, Any], case_type: str, case_id: str) -> tuple[Who, Incident | Project]:
    who = await _who(req)
    if case_type == "incident":
        return who, await req.app[INCIDENTS].readable(who, case_id)
    return who, await req.app[PROJECT_SERVICE].readable(who, case_id)


def _timeline_route(case_type: str) -> None:
    async def timeline(req: ApiRequest[None, None]) -> TimelineOut:
        case_id = req.path[f"{case_type}_id"]
        _, case = await _readable_case(req, case_type, case_id)
        entries = await case_timeline(req.app[INCIDENTS].ctx.storage, case_type=case_type, case_id=case_id,
                                      room_id=case.room_id)
        from dataclasses import asdict

        return TimelineOut(entries=[asdict(e) for e in entries])

    async def record(req: ApiRequest[None, RecordQuery]) -> web.Response:
        case_id = req.path[f"{case_type}_id"]
        _, case = await _readable_case(req, case_type, case_id)
        ctx = req.app[INCIDENTS].ctx
        facts = incident_out(case) if isinstance(case, Incident) else project_out(case)
        title = case.title if isinstance(case, Incident) else case.name
        data = await disposal_record(ctx.storage, ctx.audit, case_type=case_type, case_id=case_id, title=title,
                                     case=facts, generated_by=req.principal.user_id, now=ctx.clock())
        await ctx.record(case_type, case_id, req.principal, "case.export", case_type, case_id,
                         {"format": req.query.format})
        if req.query.format == "html":
            return web.Response(text=disposal_record_html(data), content_type="text/html", charset="utf-8",
                                headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
        import json

        return web.Response(text=json.dumps(data, ensure_ascii=False), content_type="application/json",
                            charset="utf-8")

    timeline.__name__ = f"{case_type}_timeline"
    record.__name__ = f"{case_type}_record"
    timeline.__doc__ = "Workflow steps (with their audit seq and hash), messages, files and calls, in order."
    record.__doc__ = ("The disposal record (处置记录): `format=json` or a printable `html`, with the audit chain's "
                      "verification (every entry's seq and hash; `python -m server audit verify` checks them).")
    api.route("GET", f"/api/{case_type}s/{{{case_type}_id}}/timeline", summary=f"The {case_type}'s whole history",
              tags=I_TAGS if case_type == "incident" else P_TAGS, response=TimelineOut)(timeline)
    api.route("GET", f"/api/{case_type}s/{{{case_type}_id}}/record", summary="Export the disposal record (处置记录)",
              tags=I_TAGS if case_type == "incident" else P_TAGS, query=RecordQuery, raw=True)(record)


_timeline_route("incident")
_timeline_route("project")


@api.route("GET", "/api/dashboard", summary="Figures for the commanders' console (also pushed as dashboard.changed)",
           tags=["dashboard"], response=DashboardOut)
async def dashboard(req: ApiRequest[None, None]) -> DashboardOut:
    who = await _who(req)
    if not (who.commander or who.has("inspector") or who.supervision or who.projects_office):
        raise Forbidden("the dashboard is for commanders, inspectors and the offices", code="dashboard.not_allowed")
    ctx = req.app[INCIDENTS].ctx
    return DashboardOut(figures=await dashboard_figures(ctx.storage, now=ctx.clock()))


Handler = Callable[[ApiRequest[Any, Any]], Awaitable[Any]]
