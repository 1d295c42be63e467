"""Every transition and every refusal of the workflow tables (wrong state, wrong person), table-driven."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from server.storage.records import Incident, Problem, Project, Task
from workflows.engine import (
    INCIDENT_STATES,
    INCIDENTS,
    PHASES,
    PROBLEMS,
    PROJECTS,
    TASK_STATES,
    TASKS,
    Refused,
    Table,
    Who,
)

COMMANDER = Who("cmd", frozenset({"commander"}), "command")
ADMIN = Who("adm", frozenset({"admin"}), "command")
REPORTER = Who("rep", frozenset({"responder"}), "rescue")
RESPONDER = Who("resp", frozenset({"responder"}), "water")          # the assignee, in the water bureau
COLLEAGUE = Who("col", frozenset({"responder"}), "water")           # same department, not the assignee
LEAD = Who("lead", frozenset({"dept_lead"}), "water")               # lead of the assigned department
OTHER_LEAD = Who("olead", frozenset({"dept_lead"}), "housing")      # lead of another department
INSPECTOR = Who("insp", frozenset({"inspector"}), "supervision", supervision=True)
SUPERVISOR = Who("sup", frozenset({"responder"}), "supervision", supervision=True)
OFFICE = Who("pmo", frozenset({"responder"}), "projects", projects_office=True)
ASSIGNER = Who("asg", frozenset({"dept_lead"}), "emergency")        # assigned the task, not a commander
OUTSIDER = Who("out", frozenset({"responder"}), "housing")
SYSTEM = Who.system()
EVERYONE = [COMMANDER, ADMIN, REPORTER, RESPONDER, COLLEAGUE, LEAD, OTHER_LEAD, INSPECTOR, SUPERVISOR, OFFICE,
            ASSIGNER, OUTSIDER, SYSTEM]

INCIDENT = Incident(id="i1", title="东沟水库", type="flood", level=2, description="", address="", latitude=None,
                    longitude=None, reporter_id="rep", reporter_device_id=None, state="reported", created_at=0,
                    updated_at=0)
TASK = Task(id="t1", case_type="incident", case_id="i1", title="巡查", instructions="", priority="high",
            deadline=10, assigned_by="asg", state="assigned", created_at=0, updated_at=0, department_id="water",
            assignee_id="resp")
PROJECT = Project(id="p1", code="XM-1", name="大桥", owner_department_id="housing",
                  responsible_department_ids=("water",), investment=1.5, address="", latitude=None, longitude=None,
                  phase="planning", created_by="cmd", created_at=0, updated_at=0)
PROBLEM = Problem(id="q1", project_id="p1", title="征地", description="", reporter_id="x", state="open",
                  created_at=0, updated_at=0)

# (action, source states, target or None for unchanged, who may)
INCIDENT_CASES: list[tuple[str, set[str], str | None, set[str]]] = [
    ("verify", {"reported"}, "verified", {"cmd", "adm"}),
    ("respond", {"verified"}, "responding", {"cmd", "adm"}),
    ("resolve", {"responding"}, "resolved", {"cmd", "adm"}),
    ("close", {"resolved"}, "closed", {"cmd", "adm"}),
    ("reopen", {"resolved", "closed"}, "responding", {"cmd", "adm"}),
    ("update", {"reported", "verified", "responding"}, None, {"cmd", "adm", "rep"}),
]
OPEN = {"assigned", "accepted", "in_progress", "sent_back"}
TASK_CASES: list[tuple[str, set[str], str | None, set[str]]] = [
    ("accept", {"assigned"}, "accepted", {"resp", "lead"}),
    ("start", {"accepted", "sent_back"}, "in_progress", {"resp", "lead"}),
    ("progress", {"accepted", "in_progress", "sent_back"}, None, {"resp", "lead"}),
    ("submit", {"accepted", "in_progress", "sent_back"}, "submitted", {"resp", "lead"}),
    ("delegate", OPEN, "assigned", {"lead"}),
    ("pass", {"submitted"}, "passed", {"cmd", "adm", "insp", "asg"}),
    ("send_back", {"submitted"}, "sent_back", {"cmd", "adm", "insp", "asg"}),
    ("spot_check", {"passed"}, None, {"insp"}),
    ("reopen", {"passed"}, "sent_back", {"insp"}),
    ("urge", OPEN, None, {"cmd", "adm", "insp", "sup", "asg", "system"}),
    ("supervise", OPEN | {"submitted"}, None, {"cmd", "adm", "insp", "sup", "asg", "system"}),
    ("restart_chain", OPEN, None, {"cmd", "adm", "insp", "sup", "asg", "system"}),
    ("extend", OPEN, None, {"cmd", "adm", "asg"}),
    ("reassign", OPEN, "assigned", {"cmd", "adm", "asg"}),
    ("cancel", OPEN | {"submitted"}, "cancelled", {"cmd", "adm", "asg"}),
]
RUNS_PROJECT = {"cmd", "adm", "pmo", "olead"}  # olead leads the owner department (housing)
WORKS_ON_PROJECT = RUNS_PROJECT | {"resp", "col", "lead", "out"}  # water is responsible; housing owns
PROJECT_CASES: list[tuple[str, set[str], str | None, set[str]]] = [
    ("start", {"planning"}, "start", RUNS_PROJECT),
    ("build", {"start"}, "construction", RUNS_PROJECT),
    ("complete", {"construction"}, "completion", RUNS_PROJECT),
    ("operate", {"completion"}, "operation", RUNS_PROJECT),
    ("report_progress", set(PHASES), None, WORKS_ON_PROJECT),
    ("raise_problem", set(PHASES), None, WORKS_ON_PROJECT),
    ("update", set(PHASES), None, RUNS_PROJECT),
]
PROBLEM_CASES: list[tuple[str, set[str], str | None, set[str]]] = [
    ("make_task", {"open"}, "tasked", {"cmd", "adm", "pmo", "system"}),
    ("resolve", {"open", "tasked"}, "resolved", {"cmd", "adm", "pmo", "system"}),
]


def grid(table: Table[Any], cases: list[tuple[str, set[str], str | None, set[str]]], states: tuple[str, ...],
         subject: Any) -> list[Any]:
    out = []
    for action, sources, target, allowed in cases:
        for state in states:
            for who in EVERYONE:
                out.append(pytest.param(table, action, state, who, replace(subject, state=state) if hasattr(
                    subject, "state") and table is not PROJECTS else replace(subject, phase=state),
                    target, state in sources, who.user_id in allowed,
                    id=f"{table.kind}-{action}-{state}-{who.user_id}"))
    return out


ALL = (grid(INCIDENTS, INCIDENT_CASES, INCIDENT_STATES, INCIDENT)
       + grid(TASKS, TASK_CASES, TASK_STATES, TASK)
       + grid(PROJECTS, PROJECT_CASES, PHASES, PROJECT)
       + grid(PROBLEMS, PROBLEM_CASES, ("open", "tasked", "resolved"), PROBLEM))


def test_the_cases_cover_every_action() -> None:
    for table, cases in ((INCIDENTS, INCIDENT_CASES), (TASKS, TASK_CASES), (PROJECTS, PROJECT_CASES),
                         (PROBLEMS, PROBLEM_CASES)):
        assert sorted(a for a, *_ in cases) == sorted(table.actions()), table.kind


@pytest.mark.parametrize(("table", "action", "state", "who", "subject", "target", "state_ok", "person_ok"), ALL)
def test_transition(table: Table[Any], action: str, state: str, who: Who, subject: Any, target: str | None,
                    state_ok: bool, person_ok: bool) -> None:
    if state_ok and person_ok:
        decision = table.decide(action, state, who, subject)
        assert decision.source == state and decision.target == (target or state)
        assert decision.transition.audit.startswith(table.kind + ".")
        assert action in table.allowed(state, who, subject)
        return
    with pytest.raises(Refused) as err:
        table.decide(action, state, who, subject)
    assert action not in table.allowed(state, who, subject)
    if not state_ok:  # the state is judged first, the same for everyone
        assert err.value.code == f"{table.kind}.bad_transition" and not err.value.wrong_person
    else:
        assert err.value.code == f"{table.kind}.not_allowed" and err.value.wrong_person


def test_a_department_task_nobody_took_can_be_accepted_by_its_members_only() -> None:
    task = replace(TASK, assignee_id=None)
    assert TASKS.decide("accept", "assigned", COLLEAGUE, task).target == "accepted"
    with pytest.raises(Refused):
        TASKS.decide("accept", "assigned", OUTSIDER, task)


def test_the_people_who_did_a_task_never_inspect_it() -> None:
    # A commander who took the task on themselves still cannot pass it.
    own = replace(TASK, state="submitted", assignee_id="cmd", submitted_by="cmd")
    with pytest.raises(Refused) as err:
        TASKS.decide("pass", "submitted", COMMANDER, own)
    assert err.value.wrong_person
    lead_did_it = replace(TASK, state="submitted", submitted_by="lead", assigned_by="lead")
    with pytest.raises(Refused):
        TASKS.decide("pass", "submitted", LEAD, lead_did_it)


def test_members_of_a_department_task_report_progress_until_someone_takes_it() -> None:
    department_task = replace(TASK, assignee_id=None, state="accepted")
    assert TASKS.decide("progress", "accepted", COLLEAGUE, department_task).target == "accepted"
    taken = replace(TASK, state="in_progress")  # assigned to resp: a colleague may not
    with pytest.raises(Refused) as err:
        TASKS.decide("progress", "in_progress", COLLEAGUE, taken)
    assert err.value.wrong_person


def test_unknown_action() -> None:
    with pytest.raises(Refused) as err:
        TASKS.decide("teleport", "assigned", COMMANDER, TASK)
    assert err.value.code == "task.unknown_action"


@pytest.mark.parametrize("table", [INCIDENTS, TASKS, PROJECTS, PROBLEMS])
def test_audit_actions_and_labels_are_set(table: Table[Any]) -> None:
    for t in table.by_action.values():
        assert t.audit and t.label and t.who_text
