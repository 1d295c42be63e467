"""Tasks of a case: assign (交办) → urge (催办) → supervise (督办) → inspect (督查), with a durable chain.

Each open task has at most one scheduler job, `task:<id>:chain`, due at the next point of its
chain: the automatic urges before and at the deadline, an urge every `overdue_urge_interval` once it
is overdue, and supervision after `supervise_grace` (or after `supervise_after_urges` urges nobody
answered). `chain_plan` decides that point from the task alone (a pure function, table-tested);
the job re-arms itself after each step. A node that was down finds the job overdue and fires it
once: one urge for everything that fell due meanwhile, not one per missed point.

Acting on the task (accepting, starting, submitting) stops the automatic chain; a commander, the
supervision office or the assigner can restart it from the urge or the supervise step. A progress
report (反馈进展) changes neither the task nor its chain: it is a record of its own, idempotent on
the reporting client's id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from server.auth.service import Principal
from server.errors import BadRequest, Conflict, NotFound
from server.ids import new_id
from server.settings import WorkflowsSettings
from server.storage.ports import StorageConflict
from server.storage.records import Incident, Job, Project, Task, TaskAck, TaskPriority, TaskProgress
from workflows.context import WorkflowContext, log, refusal
from workflows.engine import DONE_TASK, OPEN_TASK, TASKS, Refused, Who

CHAIN_JOB = "workflows.task_chain"
PRIORITY_LABEL = {"low": "低", "normal": "一般", "high": "高", "urgent": "紧急"}


@dataclass(frozen=True, slots=True)
class ChainStep:
    due_at: int
    kind: Literal["urge", "supervise"]


def chain_plan(task: Task, settings: WorkflowsSettings) -> ChainStep | None:
    """The next automatic step of a task's chain, or None when the chain is stopped or the task is closed."""
    if not task.chain_active or task.state not in OPEN_TASK:
        return None
    last = task.last_urged_at if task.last_urged_at is not None else -(2**62)
    if not task.supervised:
        if task.urge_count >= settings.supervise_after_urges and task.accepted_at is None:
            return ChainStep(last, "supervise")  # due already: urged enough times without an answer
        escalate_at = task.deadline + settings.supervise_grace * 1000
    else:
        escalate_at = None
    deadline = task.supervise_deadline if task.supervised and task.supervise_deadline else task.deadline
    points = sorted({deadline - b * 1000 for b in settings.urge_before} | {deadline})
    upcoming = [p for p in points if p > last]
    if upcoming:
        nxt = ChainStep(upcoming[0], "urge")
    else:
        nxt = ChainStep(max(deadline, last) + settings.overdue_urge_interval * 1000, "urge")
    if escalate_at is not None and escalate_at <= nxt.due_at:
        return ChainStep(escalate_at, "supervise")
    return nxt


def task_out(task: Task, who: Who | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": task.id, "case_type": task.case_type, "case_id": task.case_id, "title": task.title,
        "instructions": task.instructions, "priority": task.priority, "deadline": task.deadline,
        "assigned_by": task.assigned_by, "state": task.state, "created_at": task.created_at,
        "updated_at": task.updated_at, "version": task.version, "department_id": task.department_id,
        "assignee_id": task.assignee_id, "accepted_by": task.accepted_by, "accepted_at": task.accepted_at,
        "urge_count": task.urge_count, "last_urged_at": task.last_urged_at, "chain_active": task.chain_active,
        "supervised": task.supervised, "supervised_at": task.supervised_at,
        "supervise_deadline": task.supervise_deadline, "result_text": task.result_text,
        "result_attachments": list(task.result_attachments), "submitted_at": task.submitted_at,
        "submitted_by": task.submitted_by, "review_comment": task.review_comment, "reviewed_by": task.reviewed_by,
        "reviewed_at": task.reviewed_at, "sent_back_count": task.sent_back_count, "completed_at": task.completed_at,
        "problem_id": task.problem_id,
    }
    if who is not None:
        out["actions"] = TASKS.allowed(task.state, who, task)
    return out


class TaskService:
    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx
        ctx.scheduler.register(CHAIN_JOB, self._chain_job)
        # Set by the composition root: what happens when a task made from a project problem passes.
        self.on_passed: list[Any] = []

    # -- reading and access ---------------------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        task = await self.ctx.storage.get_task(task_id)
        if task is None:
            raise NotFound("no such task", code="task.not_found")
        return task

    async def may_read(self, who: Who, task: Task, *, case_readable: bool) -> bool:
        return case_readable or task.assignee_id == who.user_id or (
            task.department_id is not None and task.department_id == who.department_id)

    # -- assign ---------------------------------------------------------------------------------------------------

    async def assign(self, actor: Principal, *, case_type: str, case_id: str, room_id: str | None, title: str,
                     instructions: str, priority: TaskPriority, deadline: int, department_id: str | None,
                     assignee_id: str | None, problem_id: str | None = None) -> Task:
        """Assign a task (交办) to a department, a person, or a person in a department."""
        ctx = self.ctx
        now = ctx.clock()
        if department_id is None and assignee_id is None:
            raise BadRequest("assign to a department or a person", code="task.no_assignee")
        if deadline <= now:
            raise BadRequest("the deadline must be in the future", code="task.bad_deadline")
        if department_id is not None and not any(d.id == department_id for d in await ctx.departments()):
            raise BadRequest("no such department", code="task.unknown_department")
        if assignee_id is not None:
            user = await ctx.storage.get_user(assignee_id)
            if user is None or user.disabled:
                raise BadRequest("no such active user", code="task.unknown_user")
            if department_id is None:
                department_id = user.department_id
            elif user.department_id != department_id:
                raise BadRequest("the person is not in that department", code="task.wrong_department")
        task = Task(id=new_id(), case_type=case_type, case_id=case_id, title=title, instructions=instructions,
                    priority=priority, deadline=deadline, assigned_by=actor.user_id, state="assigned", created_at=now,
                    updated_at=now, department_id=department_id, assignee_id=assignee_id, problem_id=problem_id)
        await ctx.storage.create_task(task)
        await ctx.record(case_type, case_id, actor, "task.assign", "task", task.id, {
            "title": title, "department_id": department_id, "assignee_id": assignee_id, "deadline": deadline,
            "priority": priority})
        people = await self._responsible(task)
        if room_id is not None and people:
            await ctx.rooms.add_case_members(room_id, people, actor=actor)
        who_text = await self._assignee_text(task)
        await ctx.post(room_id, f"{await ctx.user_name(actor.user_id)} 交办任务「{title}」给 {who_text}，"
                       f"优先级{PRIORITY_LABEL[priority]}", {"workflow": "task.assign", "task_id": task.id}, actor)
        await ctx.tell(people, "task.assigned", task_out(task))
        await ctx.notice("task.assigned", people, f"交办：{title}", f"{who_text} 请按时办理：{instructions}"[:500],
                         {"task_id": task.id, "case_type": case_type, "case_id": case_id, "deadline": deadline})
        await self._arm(task)
        await ctx.console.changed("task", {"task_id": task.id})
        return task

    async def _responsible(self, task: Task) -> list[str]:
        """Who must act: the assignee, or (a department task nobody took) the department's leads."""
        if task.assignee_id is not None:
            return [task.assignee_id]
        return [u.id for u in await self.ctx.department_leads(task.department_id)]

    async def _assignee_text(self, task: Task) -> str:
        parts = []
        if task.department_id:
            parts.append(await self.ctx.department_name(task.department_id))
        if task.assignee_id:
            parts.append(await self.ctx.user_name(task.assignee_id))
        return " ".join(parts)

    # -- act ------------------------------------------------------------------------------------------------------

    async def act(self, actor: Principal | None, who: Who, task_id: str, action: str, *, room_id: str | None,
                  expected_version: int | None = None, **params: Any) -> Task:
        """Take `action` on the task, if its state and the asker allow; one audit record per step."""
        ctx = self.ctx
        for _attempt in range(5):
            task = await self.get(task_id)
            if expected_version is not None and task.version != expected_version:
                raise Conflict("the task changed since you loaded it", code="task.changed")
            try:
                decision = TASKS.decide(action, task.state, who, task)
            except Refused as exc:
                raise refusal(exc) from None
            now = ctx.clock()
            changed, details, text = await self._apply(task, action, decision.target, who, actor, now, params)
            updated = replace(changed, state=decision.target, updated_at=now, version=task.version + 1)  # type: ignore[arg-type]
            if await ctx.storage.update_task(updated, expected_version=task.version):
                break
            if expected_version is not None:
                raise Conflict("the task changed since you loaded it", code="task.changed")
        else:
            raise Conflict("the task keeps changing; try again", code="task.changed")
        if action == "accept" and actor is not None:
            await ctx.storage.add_task_ack(TaskAck(task_id=task.id, user_id=actor.user_id, device_id=actor.device_id,
                                                   at=now))
        await ctx.record(task.case_type, task.case_id, actor, decision.transition.audit, "task", task.id,
                         {"from": task.state, "to": updated.state, "title": task.title, **details})
        await ctx.post(room_id, f"{await ctx.user_name(who.user_id if not who.is_system else None)} "
                       f"{decision.transition.label}「{task.title}」{text}",
                       {"workflow": decision.transition.audit, "task_id": task.id}, actor)
        await self._after(updated, action, who, actor, params)
        await self._arm(updated)
        await ctx.console.changed("task", {"task_id": task.id})
        return updated

    async def _apply(self, task: Task, action: str, target: str, who: Who, actor: Principal | None, now: int,
                     params: dict[str, Any]) -> tuple[Task, dict[str, Any], str]:
        """The task's fields after the action, the audit details, and the tail of the room message."""
        ctx = self.ctx
        if action == "accept":
            assignee = task.assignee_id or who.user_id
            return replace(task, assignee_id=assignee, accepted_by=who.user_id, accepted_at=now,
                           chain_active=False), {}, ""
        if action == "start":
            return replace(task, chain_active=False), {}, ""
        if action == "progress":
            # A record of its own, not a change of the task: see report_progress.
            raise BadRequest("report progress with report_progress", code="task.bad_action")
        if action == "submit":
            files = await ctx.attach_files(actor, params.get("attachments", []), case_type=task.case_type,
                                           case_id=task.case_id, target_type="task", target_id=task.id) \
                if actor is not None else []
            result = str(params.get("result", ""))
            return replace(task, result_text=result, result_attachments=tuple(f["file_id"] for f in files),
                           submitted_at=now, submitted_by=who.user_id, chain_active=False), {
                "result": result, "attachments": [f["file_id"] for f in files]}, f"：{result[:100]}"
        if action == "delegate":
            user = await ctx.storage.get_user(str(params["assignee_id"]))
            if user is None or user.disabled or user.department_id != task.department_id:
                raise BadRequest("delegate to an active member of the assigned department",
                                 code="task.wrong_department")
            return replace(task, assignee_id=user.id, accepted_by=None, accepted_at=None, chain_active=True), {
                "assignee_id": user.id}, f"给 {user.display_name}"
        if action in ("pass", "send_back", "reopen"):
            comment = str(params.get("comment", ""))
            if action != "pass" and not comment.strip():
                raise BadRequest("say what must be done again", code="task.comment_required")
            done = action == "pass"
            return replace(task, review_comment=comment, reviewed_by=who.user_id, reviewed_at=now,
                           completed_at=now if done else None,
                           sent_back_count=task.sent_back_count + (0 if done else 1),
                           chain_active=not done), {"comment": comment}, f"：{comment[:100]}" if comment else ""
        if action == "spot_check":
            comment = str(params.get("comment", ""))
            return task, {"comment": comment}, f"：{comment[:100]}" if comment else ""
        if action == "urge":
            message = str(params.get("message", ""))
            count = task.urge_count + 1
            return replace(task, urge_count=count, last_urged_at=now), {
                "count": count, "message": message, "automatic": who.is_system}, f"（第{count}次）{message[:100]}"
        if action == "supervise":
            new_deadline = int(params.get("deadline") or now + ctx.settings.supervise_extension * 1000)
            if new_deadline <= now:
                raise BadRequest("the new deadline must be in the future", code="task.bad_deadline")
            reason = str(params.get("reason", "")) or ("超期未办结" if who.is_system else "")
            if task.supervised:
                raise Conflict("the task is already supervised", code="task.already_supervised")
            return replace(task, supervised=True, supervised_at=now, supervise_deadline=new_deadline), {
                "deadline": new_deadline, "reason": reason, "automatic": who.is_system}, f"：{reason}"
        if action == "restart_chain":
            step = params.get("step", "urge")
            if step not in ("urge", "supervise"):
                raise BadRequest("step is 'urge' or 'supervise'", code="task.bad_step")
            restarted = replace(task, chain_active=True, last_urged_at=now if step == "urge" else task.last_urged_at)
            if step == "supervise":
                restarted = replace(restarted, urge_count=max(task.urge_count, ctx.settings.supervise_after_urges),
                                    accepted_at=None)
            return restarted, {"step": step}, "（从" + ("催办" if step == "urge" else "督办") + "开始）"
        if action == "extend":
            deadline = int(params["deadline"])
            reason = str(params.get("reason", ""))
            if deadline <= max(now, task.deadline):
                raise BadRequest("the new deadline must be later than the current one", code="task.bad_deadline")
            if not reason.strip():
                raise BadRequest("give a reason for the extension", code="task.reason_required")
            return replace(task, deadline=deadline, last_urged_at=None if not task.supervised else task.last_urged_at,
                           chain_active=True), {"deadline": deadline, "previous": task.deadline, "reason": reason}, \
                f"：{reason[:100]}"
        if action == "reassign":
            department_id = params.get("department_id")
            assignee_id = params.get("assignee_id")
            if department_id is None and assignee_id is None:
                raise BadRequest("reassign to a department or a person", code="task.no_assignee")
            if assignee_id is not None:
                user = await ctx.storage.get_user(str(assignee_id))
                if user is None or user.disabled:
                    raise BadRequest("no such active user", code="task.unknown_user")
                department_id = department_id or user.department_id
            elif not any(d.id == department_id for d in await ctx.departments()):
                raise BadRequest("no such department", code="task.unknown_department")
            return replace(task, department_id=department_id, assignee_id=assignee_id, accepted_by=None,
                           accepted_at=None, urge_count=0, last_urged_at=None, chain_active=True), {
                "department_id": department_id, "assignee_id": assignee_id}, ""
        if action == "cancel":
            reason = str(params.get("reason", ""))
            return replace(task, completed_at=None, chain_active=False), {"reason": reason}, \
                f"：{reason[:100]}" if reason else ""
        raise BadRequest(f"no action {action}", code="task.unknown_action")  # pragma: no cover - engine refused

    async def _after(self, task: Task, action: str, who: Who, actor: Principal | None, params: dict[str, Any]) -> None:
        """Tell the people concerned, inside and outside the app."""
        ctx = self.ctx
        data = task_out(task)
        people = await self._responsible(task)
        if action == "urge":
            await ctx.tell(people, "task.urged", data)
            await ctx.notice("task.urged", people, f"催办：{task.title}（第{task.urge_count}次）",
                             str(params.get("message") or "请尽快办理"), {"task_id": task.id,
                                                                        "deadline": task.deadline})
        elif action == "supervise":
            leads = [u.id for u in await ctx.department_leads(task.department_id)]
            office = [u.id for u in await ctx.office_members(ctx.settings.supervision_office)]
            escalated = list(dict.fromkeys([*people, *leads, *office]))
            await ctx.tell(escalated, "task.supervised", data)
            await ctx.notice("task.supervised", escalated, f"督办：{task.title}",
                             f"已列为督办事项，新的办结时限 {task.supervise_deadline}", {
                                 "task_id": task.id, "deadline": task.supervise_deadline})
        elif action in ("delegate", "reassign"):
            await ctx.tell(people, "task.assigned", data)
            await ctx.notice("task.assigned", people, f"交办：{task.title}", task.instructions[:500],
                             {"task_id": task.id, "deadline": task.deadline})
        else:
            watchers = [task.assigned_by, *people]
            await ctx.tell([w for w in watchers if w != who.user_id], "task.changed", data)
        if action == "pass" and task.problem_id:
            for hook in self.on_passed:
                await hook(task)

    # -- progress -------------------------------------------------------------------------------------------------

    async def report_progress(self, actor: Principal, who: Who, task_id: str, *, room_id: str | None, text: str,
                              percent: int | None = None, attachments: list[str] | None = None,
                              client_id: str | None = None) -> tuple[Task, TaskProgress, bool]:
        """Report progress on a task (反馈进展): its state, version and chain stay as they are.

        Idempotent on the reporter's `client_id`: a resend returns the report stored the first time with True,
        and records, posts and tells nothing (also when two sends race: one stores, the other finds it).
        Returns the task as it is now, the report, and whether it is an earlier request's."""
        ctx = self.ctx
        if client_id is not None:
            earlier = await self._earlier_progress(actor.user_id, client_id, task_id)
            if earlier is not None:
                return await self.get(task_id), earlier, True
        task = await self.get(task_id)
        try:
            decision = TASKS.decide("progress", task.state, who, task)
        except Refused as exc:
            raise refusal(exc) from None
        if not text.strip():
            raise BadRequest("say what has been done", code="task.text_required")
        if percent is not None and not 0 <= percent <= 100:
            raise BadRequest("percent is from 0 to 100", code="task.bad_percent")
        files = await ctx.check_files(actor, attachments or [])
        progress = TaskProgress(id=new_id(), task_id=task.id, reporter_id=actor.user_id, text=text,
                                created_at=ctx.clock(), percent=percent,
                                attachments=tuple(f["file_id"] for f in files), client_id=client_id)
        try:
            await ctx.storage.add_task_progress(progress)
        except StorageConflict:
            # Two sends of one report raced: the other stored it, and records and tells the rest.
            earlier = await self._earlier_progress(actor.user_id, client_id, task.id) if client_id else None
            if earlier is None:
                raise
            return await self.get(task.id), earlier, True
        await ctx.link_files(actor, files, case_type=task.case_type, case_id=task.case_id, target_type="task",
                             target_id=task.id)
        await ctx.record(task.case_type, task.case_id, actor, decision.transition.audit, "task", task.id, {
            "from": task.state, "to": task.state, "title": task.title, "text": text, "percent": percent,
            "attachments": list(progress.attachments), "progress_id": progress.id})
        share = f"（{percent}%）" if percent is not None else ""
        await ctx.post(room_id, f"{await ctx.user_name(actor.user_id)} {decision.transition.label}「{task.title}」"
                       f"{share}：{text[:100]}",
                       {"workflow": decision.transition.audit, "task_id": task.id, "progress_id": progress.id}, actor)
        await self._after(task, "progress", who, actor, {})
        await ctx.console.changed("task", {"task_id": task.id})
        return task, progress, False

    async def _earlier_progress(self, reporter_id: str, client_id: str, task_id: str) -> TaskProgress | None:
        earlier = await self.ctx.storage.find_task_progress_by_client_id(reporter_id, client_id)
        if earlier is not None and earlier.task_id != task_id:
            raise Conflict("this client_id was already used for another task's report", code="task.client_id_reused")
        return earlier

    # -- the chain ------------------------------------------------------------------------------------------------

    def _job_id(self, task: Task) -> str:
        return f"task:{task.id}:chain"

    async def _arm(self, task: Task) -> None:
        step = chain_plan(task, self.ctx.settings)
        if step is None or task.state in DONE_TASK:
            await self.ctx.scheduler.cancel(self._job_id(task))
            return
        await self.ctx.scheduler.schedule(CHAIN_JOB, job_id=self._job_id(task), due_at=step.due_at,
                                          payload={"task_id": task.id})

    async def _chain_job(self, job: Job) -> int | None:
        task = await self.ctx.storage.get_task(str(job.payload.get("task_id", "")))
        if task is None:
            return None
        step = chain_plan(task, self.ctx.settings)
        now = self.ctx.clock()
        if step is None:
            return None
        if step.due_at > now:
            return step.due_at  # re-armed early (a deadline moved): wait for the real point
        room_id = await self.case_room(task)
        try:
            updated = await self.act(None, Who.system(), task.id, step.kind, room_id=room_id)
        except (Conflict, BadRequest) as exc:
            log.info("automatic step skipped", task_id=task.id, step=step.kind, code=exc.code)
            return None
        nxt = chain_plan(updated, self.ctx.settings)
        # `act` re-armed the job under the same id; returning its time keeps the claim's finish consistent.
        return nxt.due_at if nxt is not None else None

    async def case_room(self, task: Task) -> str | None:
        case: Incident | Project | None
        if task.case_type == "incident":
            case = await self.ctx.storage.get_incident(task.case_id)
        else:
            case = await self.ctx.storage.get_project(task.case_id)
        return case.room_id if case is not None else None
