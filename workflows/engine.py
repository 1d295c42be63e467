"""The transition tables of incidents, tasks and projects: which action moves which state to which,
who may do it, and what is recorded. Pure: no I/O, table-driven tests in tests/workflows/test_engine.py.

The service layer describes the asking user as a `Who` (roles, department, whether they belong to
the supervision office or the major-projects office) and asks `decide(table, action, state, who,
subject)`; the answer is the next state and the audit action to write in the same call, or a
refusal saying why (wrong state or wrong person).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.storage.records import Incident, Problem, Project, Task

S = TypeVar("S")
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Who:
    """The asking user, as the rules need them. The scheduler acts as `Who.system()`."""

    user_id: str
    roles: frozenset[str]
    department_id: str | None = None
    # Members of the supervision office (督查室) may urge and supervise any task.
    supervision: bool = False
    # Members of the major-projects office (重大项目办) run projects.
    projects_office: bool = False

    @classmethod
    def system(cls) -> Who:
        return cls(user_id=SYSTEM, roles=frozenset({SYSTEM}))

    @property
    def is_system(self) -> bool:
        return SYSTEM in self.roles

    def has(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def commander(self) -> bool:
        return self.has("commander", "admin")


Rule = Callable[[Who, Any], bool]


@dataclass(frozen=True, slots=True)
class Transition(Generic[S]):
    action: str
    sources: frozenset[str]
    # None: the state stays as it is (urge, extend, supervise...).
    target: str | None
    who: Rule
    # The audit action written with the change; the Chinese label used in system messages.
    audit: str
    label: str
    # What the rule allows, in words, for a refusal's message.
    who_text: str


class Refused(Exception):
    """An action not allowed: `code` is `<kind>.bad_transition` (wrong state) or `<kind>.not_allowed`."""

    def __init__(self, code: str, message: str, *, wrong_person: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.wrong_person = wrong_person


@dataclass(frozen=True, slots=True)
class Decision:
    transition: Transition[Any]
    source: str
    target: str

    @property
    def changes_state(self) -> bool:
        return self.source != self.target


class Table(Generic[S]):
    def __init__(self, kind: str, transitions: list[Transition[S]]) -> None:
        self.kind = kind
        self.by_action = {t.action: t for t in transitions}
        if len(self.by_action) != len(transitions):
            raise ValueError(f"{kind}: an action is listed twice")

    def actions(self) -> list[str]:
        return list(self.by_action)

    def decide(self, action: str, state: str, who: Who, subject: S) -> Decision:
        """The transition for `action` from `state`, if `who` may take it; raises Refused otherwise.

        The state is checked first: an action that cannot happen now is `bad_transition` for
        everyone, so a refusal never tells an outsider more than a member would learn."""
        t = self.by_action.get(action)
        if t is None:
            raise Refused(f"{self.kind}.unknown_action", f"no action {action!r} for a {self.kind}", wrong_person=False)
        if state not in t.sources:
            raise Refused(f"{self.kind}.bad_transition",
                          f"cannot {action} a {self.kind} that is {state}", wrong_person=False)
        if not t.who(who, subject):
            raise Refused(f"{self.kind}.not_allowed", f"only {t.who_text} may {action} this {self.kind}",
                          wrong_person=True)
        return Decision(t, state, t.target or state)

    def allowed(self, state: str, who: Who, subject: S) -> list[str]:
        """The actions `who` may take now (for clients to show the right buttons)."""
        return [t.action for t in self.by_action.values() if state in t.sources and t.who(who, subject)]


# -- incidents -------------------------------------------------------------------------------------------------------

def _commander(who: Who, _subject: Any) -> bool:
    return who.commander


def _commander_or_reporter(who: Who, incident: Incident) -> bool:
    return who.commander or who.user_id == incident.reporter_id


INCIDENT_STATES = ("reported", "verified", "responding", "resolved", "closed")
INCIDENTS: Table[Incident] = Table("incident", [
    Transition("verify", frozenset({"reported"}), "verified", _commander, "incident.verify", "核实", "a commander"),
    Transition("respond", frozenset({"verified"}), "responding", _commander, "incident.respond", "启动处置",
               "a commander"),
    Transition("resolve", frozenset({"responding"}), "resolved", _commander, "incident.resolve", "处置完毕",
               "a commander"),
    Transition("close", frozenset({"resolved"}), "closed", _commander, "incident.close", "结案", "a commander"),
    Transition("reopen", frozenset({"resolved", "closed"}), "responding", _commander, "incident.reopen", "重新启动",
               "a commander"),
    Transition("update", frozenset({"reported", "verified", "responding"}), None, _commander_or_reporter,
               "incident.update", "更新事件信息", "a commander or the reporter"),
])


# -- tasks -----------------------------------------------------------------------------------------------------------

OPEN_TASK = frozenset({"assigned", "accepted", "in_progress", "sent_back"})
TASK_STATES = ("assigned", "accepted", "in_progress", "submitted", "sent_back", "passed", "cancelled")
DONE_TASK = frozenset({"passed", "cancelled"})


def is_assignee(who: Who, task: Task) -> bool:
    """The person the task is assigned to, or (for a department task nobody took yet) a member of it."""
    if task.assignee_id is not None:
        return who.user_id == task.assignee_id
    return task.department_id is not None and who.department_id == task.department_id


def leads_assignee_department(who: Who, task: Task) -> bool:
    return who.has("dept_lead") and task.department_id is not None and who.department_id == task.department_id


def _acts_on_task(who: Who, task: Task) -> bool:
    # Accept, start and submit: the assignee, or the lead of the assigned department.
    return is_assignee(who, task) or leads_assignee_department(who, task)


def _assigner(who: Who, task: Task) -> bool:
    return who.commander or who.user_id == task.assigned_by


def _supervisor(who: Who, task: Task) -> bool:
    return who.is_system or who.commander or who.supervision or who.user_id == task.assigned_by


def _reviewer(who: Who, task: Task) -> bool:
    # Inspectors, commanders and whoever assigned the task; never the people who did it.
    if who.user_id in (task.assignee_id, task.submitted_by, task.accepted_by):
        return False
    return who.has("inspector") or who.commander or who.user_id == task.assigned_by


def _inspector(who: Who, task: Task) -> bool:
    return who.has("inspector") and who.user_id not in (task.assignee_id, task.submitted_by)


TASKS: Table[Task] = Table("task", [
    Transition("accept", frozenset({"assigned"}), "accepted", _acts_on_task, "task.accept", "签收",
               "the assignee or their department's lead"),
    Transition("start", frozenset({"accepted", "sent_back"}), "in_progress", _acts_on_task, "task.start", "开始办理",
               "the assignee or their department's lead"),
    # A progress report (反馈进展) leaves the state as it is, and the automatic chain too.
    Transition("progress", frozenset({"accepted", "in_progress", "sent_back"}), None, _acts_on_task,
               "task.progress", "反馈进展", "the assignee or their department's lead"),
    Transition("submit", frozenset({"accepted", "in_progress", "sent_back"}), "submitted", _acts_on_task,
               "task.submit", "提交办理结果", "the assignee or their department's lead"),
    Transition("delegate", frozenset({"assigned", "accepted", "in_progress", "sent_back"}), "assigned",
               leads_assignee_department, "task.delegate", "转派", "the lead of the assigned department"),
    Transition("pass", frozenset({"submitted"}), "passed", _reviewer, "task.inspect_pass", "督查通过",
               "an inspector, a commander or the assigner (not the assignee)"),
    Transition("send_back", frozenset({"submitted"}), "sent_back", _reviewer, "task.inspect_send_back", "督查退回",
               "an inspector, a commander or the assigner (not the assignee)"),
    Transition("spot_check", frozenset({"passed"}), None, _inspector, "task.spot_check", "督查抽查",
               "an inspector"),
    Transition("reopen", frozenset({"passed"}), "sent_back", _inspector, "task.spot_check_failed",
               "抽查未通过，重新办理", "an inspector"),
    Transition("urge", OPEN_TASK, None, _supervisor, "task.urge", "催办",
               "a commander, the supervision office or the assigner"),
    Transition("supervise", OPEN_TASK | {"submitted"}, None, _supervisor, "task.supervise", "督办",
               "a commander, the supervision office or the assigner"),
    Transition("restart_chain", OPEN_TASK, None, _supervisor, "task.restart_chain", "重启催办",
               "a commander, the supervision office or the assigner"),
    Transition("extend", OPEN_TASK, None, _assigner, "task.extend", "延期", "a commander or the assigner"),
    Transition("reassign", OPEN_TASK, "assigned", _assigner, "task.reassign", "改派", "a commander or the assigner"),
    Transition("cancel", OPEN_TASK | {"submitted"}, "cancelled", _assigner, "task.cancel", "撤销",
               "a commander or the assigner"),
])


# -- projects --------------------------------------------------------------------------------------------------------

PHASES = ("planning", "start", "construction", "completion", "operation")
NEXT_PHASE = dict(itertools.pairwise(PHASES))
PHASE_LABELS = {"planning": "前期", "start": "开工", "construction": "建设", "completion": "竣工", "operation": "运行"}


def _runs_project(who: Who, project: Project) -> bool:
    return who.commander or who.projects_office or (
        who.has("dept_lead") and who.department_id == project.owner_department_id)


def works_on_project(who: Who, project: Project) -> bool:
    """The owner and responsible units, the projects office and commanders."""
    return _runs_project(who, project) or (
        who.department_id is not None
        and (who.department_id == project.owner_department_id
             or who.department_id in project.responsible_department_ids))


def _advance(action: str, source: str) -> Transition[Project]:
    target = NEXT_PHASE[source]
    return Transition(action, frozenset({source}), target, _runs_project, "project.advance",
                      PHASE_LABELS[target], "a commander, the major-projects office or the owner department's lead")


PROJECTS: Table[Project] = Table("project", [
    _advance("start", "planning"),
    _advance("build", "start"),
    _advance("complete", "construction"),
    _advance("operate", "completion"),
    Transition("report_progress", frozenset(PHASES), None, works_on_project, "project.progress", "进度报告",
               "the project's units, the major-projects office or a commander"),
    Transition("raise_problem", frozenset(PHASES), None, works_on_project, "project.problem", "报告问题",
               "the project's units, the major-projects office or a commander"),
    Transition("update", frozenset(PHASES), None, _runs_project, "project.update", "更新项目信息",
               "a commander, the major-projects office or the owner department's lead"),
])


def _runs_problem(who: Who, problem: Problem) -> bool:
    # The system resolves a problem when the task made from it passes inspection.
    return who.is_system or who.commander or who.projects_office


PROBLEMS: Table[Problem] = Table("problem", [
    Transition("make_task", frozenset({"open"}), "tasked", _runs_problem, "problem.task", "问题转交办",
               "a commander or the major-projects office"),
    Transition("resolve", frozenset({"open", "tasked"}), "resolved", _runs_problem, "problem.resolve", "问题解决",
               "a commander or the major-projects office"),
])
