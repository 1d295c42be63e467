"""Major projects (重大项目): phases start (开工), construction (建设), completion (竣工), operation (运行);
progress reports; a problems list whose problems become tasks in the same assign-urge-supervise-inspect loop.

Leaders (commanders), the major-projects office, the supervision office, inspectors and the
owner and responsible units see a project's progress and problems at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from server.auth.service import Principal
from server.errors import BadRequest, Conflict, NotFound
from server.ids import new_id
from server.storage.ports import StorageConflict
from server.storage.records import Problem, ProgressReport, Project, Task, TaskPriority
from workflows.context import WorkflowContext, refusal
from workflows.engine import PHASE_LABELS, PHASES, PROBLEMS, PROJECTS, Refused, Who, works_on_project
from workflows.tasks import TaskService

READ_ROLES = ("admin", "commander", "inspector")


def project_out(project: Project, who: Who | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": project.id, "code": project.code, "name": project.name,
        "owner_department_id": project.owner_department_id,
        "responsible_department_ids": list(project.responsible_department_ids), "investment": project.investment,
        "address": project.address, "latitude": project.latitude, "longitude": project.longitude,
        "phase": project.phase, "created_by": project.created_by, "created_at": project.created_at,
        "updated_at": project.updated_at, "version": project.version, "description": project.description,
        "planned": dict(project.planned), "actual": dict(project.actual), "progress": project.progress,
        "room_id": project.room_id,
    }
    if who is not None:
        out["actions"] = PROJECTS.allowed(project.phase, who, project)
    return out


def report_out(report: ProgressReport) -> dict[str, Any]:
    return {"id": report.id, "project_id": report.project_id, "percent": report.percent, "text": report.text,
            "reporter_id": report.reporter_id, "created_at": report.created_at,
            "attachments": list(report.attachments)}


def problem_out(problem: Problem) -> dict[str, Any]:
    return {"id": problem.id, "project_id": problem.project_id, "title": problem.title,
            "description": problem.description, "reporter_id": problem.reporter_id, "state": problem.state,
            "created_at": problem.created_at, "updated_at": problem.updated_at, "task_id": problem.task_id,
            "resolved_at": problem.resolved_at, "version": problem.version}


class ProjectService:
    def __init__(self, ctx: WorkflowContext, tasks: TaskService) -> None:
        self.ctx = ctx
        self.tasks = tasks
        tasks.on_passed.append(self._task_passed)

    async def get(self, project_id: str) -> Project:
        project = await self.ctx.storage.get_project(project_id)
        if project is None:
            raise NotFound("no such project", code="project.not_found")
        return project

    def may_read(self, who: Who, project: Project) -> bool:
        return who.has(*READ_ROLES) or who.supervision or works_on_project(who, project)

    async def may_read_principal(self, principal: Principal, project_id: str) -> bool:
        """For files attached to the project: whether this user may see it."""
        project = await self.ctx.storage.get_project(project_id)
        return project is not None and self.may_read(await self.ctx.who(principal), project)

    async def readable(self, who: Who, project_id: str) -> Project:
        project = await self.get(project_id)
        if not self.may_read(who, project):
            raise NotFound("no such project", code="project.not_found")
        return project

    async def create(self, actor: Principal, who: Who, *, code: str, name: str, owner_department_id: str,
                     responsible_department_ids: list[str], investment: float, address: str,
                     latitude: float | None, longitude: float | None, description: str,
                     planned: dict[str, int]) -> Project:
        """Register a major project (commanders and the major-projects office) and open its room."""
        ctx = self.ctx
        if not (who.commander or who.projects_office):
            from server.errors import Forbidden

            raise Forbidden("only a commander or the major-projects office may register a project",
                            code="project.not_allowed")
        known = {d.id for d in await ctx.departments()}
        for department_id in [owner_department_id, *responsible_department_ids]:
            if department_id not in known:
                raise BadRequest(f"no department {department_id}", code="project.unknown_department")
        if set(planned) - set(PHASES):
            raise BadRequest(f"planned dates are for the phases {', '.join(PHASES)}", code="project.bad_phase")
        now = ctx.clock()
        project = Project(id=new_id(), code=code, name=name, owner_department_id=owner_department_id,
                          responsible_department_ids=tuple(dict.fromkeys(responsible_department_ids)),
                          investment=investment, address=address, latitude=latitude, longitude=longitude,
                          phase="planning", created_by=actor.user_id, created_at=now, updated_at=now,
                          description=description, planned=dict(planned))
        try:
            await ctx.storage.create_project(project)
        except StorageConflict:
            raise Conflict(f"a project with code {code} exists", code="project.code_taken") from None
        await ctx.record("project", project.id, actor, "project.create", "project", project.id, {
            "code": code, "name": name, "owner_department_id": owner_department_id,
            "responsible_department_ids": list(project.responsible_department_ids), "investment": investment,
            "planned": planned})
        leads: list[str] = []
        for department_id in [owner_department_id, *project.responsible_department_ids]:
            leads.extend(u.id for u in await ctx.department_leads(department_id))
        leads.extend(u.id for u in await ctx.office_members(ctx.settings.projects_office))
        room = await ctx.rooms.create_case_room(kind="project", name=f"【重大项目】{name}", case_type="project",
                                                case_id=project.id, owner_id=actor.user_id,
                                                member_ids=list(dict.fromkeys(leads)), actor=actor)
        project = await self._save(project.id, lambda p: replace(p, room_id=room.id))
        await ctx.post(room.id, f"{await ctx.user_name(actor.user_id)} 登记重大项目「{name}」（{code}）",
                       {"workflow": "project.create", "project_id": project.id}, actor)
        await ctx.console.changed("project", {"project_id": project.id})
        return project

    async def _save(self, project_id: str, change: Callable[[Project], Project]) -> Project:
        for _attempt in range(5):
            current = await self.get(project_id)
            updated = replace(change(current), version=current.version + 1, updated_at=self.ctx.clock())
            if await self.ctx.storage.update_project(updated, expected_version=current.version):
                return updated
        raise Conflict("the project keeps changing; try again", code="project.changed")

    async def act(self, actor: Principal, who: Who, project_id: str, action: str, **params: Any) -> Project:
        """Advance a phase (start, build, complete, operate) or update the project's facts."""
        ctx = self.ctx
        project = await self.readable(who, project_id)
        try:
            decision = PROJECTS.decide(action, project.phase, who, project)
        except Refused as exc:
            raise refusal(exc) from None
        if action in ("report_progress", "raise_problem"):
            raise BadRequest("use the progress and problems routes", code="project.bad_action")
        now = ctx.clock()
        details: dict[str, Any] = {"from": project.phase, "to": decision.target}
        if action == "update":
            fields = {k: v for k, v in params.items() if v is not None and k in (
                "name", "investment", "address", "latitude", "longitude", "description")}
            planned = params.get("planned")
            if planned is not None:
                if set(planned) - set(PHASES):
                    raise BadRequest(f"planned dates are for the phases {', '.join(PHASES)}",
                                     code="project.bad_phase")
                fields["planned"] = {**project.planned, **planned}
            if not fields:
                raise BadRequest("nothing to change", code="project.nothing_to_change")
            details["changes"] = fields

            def change(p: Project) -> Project:
                return replace(p, **fields)
        else:
            on = int(params.get("date") or now)
            details["date"] = on

            def change(p: Project) -> Project:
                if p.phase != project.phase:
                    raise Conflict("the project's phase changed meanwhile", code="project.changed")
                return replace(p, phase=decision.target, actual={**p.actual, decision.target: on})  # type: ignore[arg-type]
        updated = await self._save(project.id, change)
        await ctx.record("project", project.id, actor, decision.transition.audit, "project", project.id, details)
        text = f"阶段推进到「{PHASE_LABELS[updated.phase]}」" if action != "update" else "更新了项目信息"
        await ctx.post(updated.room_id, f"{await ctx.user_name(actor.user_id)} {text}",
                       {"workflow": decision.transition.audit, "project_id": project.id}, actor)
        await ctx.console.changed("project", {"project_id": project.id})
        return updated

    async def report_progress(self, actor: Principal, who: Who, project_id: str, *, percent: int, text: str,
                              attachments: list[str], client_id: str | None = None) -> ProgressReport:
        """Report a project's progress (percentage, text, photos)."""
        report, _ = await self.report_progress_once(actor, who, project_id, percent=percent, text=text,
                                                    attachments=attachments, client_id=client_id)
        return report

    async def report_progress_once(self, actor: Principal, who: Who, project_id: str, *, percent: int, text: str,
                                   attachments: list[str], client_id: str | None) -> tuple[ProgressReport, bool]:
        """Report progress, idempotent on the reporter's `client_id`: the report and whether it is the one an
        earlier request with that client id stored (True: nothing new is recorded or told)."""
        ctx = self.ctx
        project = await self.readable(who, project_id)
        if client_id is not None:
            earlier = await self._earlier_report(actor.user_id, client_id, project.id)
            if earlier is not None:
                return earlier, True
        try:
            PROJECTS.decide("report_progress", project.phase, who, project)
        except Refused as exc:
            raise refusal(exc) from None
        files = await ctx.check_files(actor, attachments)
        report = ProgressReport(id=new_id(), project_id=project.id, percent=percent, text=text,
                                reporter_id=actor.user_id, created_at=ctx.clock(),
                                attachments=tuple(f["file_id"] for f in files), client_id=client_id)
        try:
            await ctx.storage.add_progress_report(report)
        except StorageConflict:
            # Two sends of one report raced: the other stored it, and records and tells the rest.
            earlier = await self._earlier_report(actor.user_id, client_id, project.id) if client_id else None
            if earlier is None:
                raise
            return earlier, True
        await ctx.link_files(actor, files, case_type="project", case_id=project.id, target_type="progress_report",
                             target_id=report.id)
        await self._save(project.id, lambda p: replace(p, progress=percent))
        await ctx.record("project", project.id, actor, "project.progress", "progress_report", report.id,
                         {"percent": percent, "text": text, "attachments": list(report.attachments)})
        await ctx.post(project.room_id, f"{await ctx.user_name(actor.user_id)} 报告进度 {percent}%：{text[:100]}",
                       {"workflow": "project.progress", "project_id": project.id, "report_id": report.id}, actor)
        await ctx.console.changed("project", {"project_id": project.id})
        return report, False

    async def _earlier_report(self, reporter_id: str, client_id: str, project_id: str) -> ProgressReport | None:
        earlier = await self.ctx.storage.find_progress_report_by_client_id(reporter_id, client_id)
        if earlier is not None and earlier.project_id != project_id:
            raise Conflict("this client_id was already used for another project's report",
                           code="project.client_id_reused")
        return earlier

    async def raise_problem(self, actor: Principal, who: Who, project_id: str, *, title: str,
                            description: str) -> Problem:
        ctx = self.ctx
        project = await self.readable(who, project_id)
        try:
            PROJECTS.decide("raise_problem", project.phase, who, project)
        except Refused as exc:
            raise refusal(exc) from None
        now = ctx.clock()
        problem = Problem(id=new_id(), project_id=project.id, title=title, description=description,
                          reporter_id=actor.user_id, state="open", created_at=now, updated_at=now)
        await ctx.storage.create_problem(problem)
        await ctx.record("project", project.id, actor, "project.problem", "problem", problem.id,
                         {"title": title, "description": description})
        await ctx.post(project.room_id, f"{await ctx.user_name(actor.user_id)} 报告问题「{title}」",
                       {"workflow": "project.problem", "project_id": project.id, "problem_id": problem.id}, actor)
        await ctx.console.changed("project", {"project_id": project.id})
        return problem

    async def problem_to_task(self, actor: Principal, who: Who, problem_id: str, *, title: str | None,
                              instructions: str, priority: TaskPriority, deadline: int, department_id: str | None,
                              assignee_id: str | None) -> tuple[Problem, Task]:
        """A problem becomes a task of the project (问题转交办); it is resolved when the task passes inspection."""
        ctx = self.ctx
        problem = await self._problem(problem_id)
        project = await self.readable(who, problem.project_id)
        try:
            PROBLEMS.decide("make_task", problem.state, who, problem)
        except Refused as exc:
            raise refusal(exc) from None
        task = await self.tasks.assign(actor, case_type="project", case_id=project.id, room_id=project.room_id,
                                       title=title or problem.title, instructions=instructions or problem.description,
                                       priority=priority, deadline=deadline, department_id=department_id,
                                       assignee_id=assignee_id, problem_id=problem.id)
        updated = replace(problem, state="tasked", task_id=task.id, updated_at=ctx.clock(),
                          version=problem.version + 1)
        if not await ctx.storage.update_problem(updated, expected_version=problem.version):
            raise Conflict("the problem changed meanwhile", code="problem.changed")
        await ctx.record("project", project.id, actor, "problem.task", "problem", problem.id, {"task_id": task.id})
        return updated, task

    async def resolve_problem(self, actor: Principal | None, who: Who, problem_id: str) -> Problem:
        ctx = self.ctx
        problem = await self._problem(problem_id)
        if not who.is_system:
            await self.readable(who, problem.project_id)
        try:
            PROBLEMS.decide("resolve", problem.state, who, problem)
        except Refused as exc:
            raise refusal(exc) from None
        now = ctx.clock()
        updated = replace(problem, state="resolved", resolved_at=now, updated_at=now, version=problem.version + 1)
        if not await ctx.storage.update_problem(updated, expected_version=problem.version):
            raise Conflict("the problem changed meanwhile", code="problem.changed")
        await ctx.record("project", problem.project_id, actor, "problem.resolve", "problem", problem.id,
                         {"task_id": problem.task_id})
        project = await self.get(problem.project_id)
        await ctx.post(project.room_id, f"问题「{problem.title}」已解决",
                       {"workflow": "problem.resolve", "problem_id": problem.id}, actor)
        await ctx.console.changed("project", {"project_id": project.id})
        return updated

    async def _problem(self, problem_id: str) -> Problem:
        problem = await self.ctx.storage.get_problem(problem_id)
        if problem is None:
            raise NotFound("no such problem", code="problem.not_found")
        return problem

    async def _task_passed(self, task: Task) -> None:
        if task.problem_id is None:
            return
        problem = await self.ctx.storage.get_problem(task.problem_id)
        if problem is not None and problem.state != "resolved":
            await self.resolve_problem(None, Who.system(), problem.id)
