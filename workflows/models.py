"""Payloads and responses of incidents, tasks, projects, the timeline and the dashboard."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from server.schemas import Id, Out, Payload, Query

Title = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
LongText = Annotated[str, StringConstraints(max_length=10000)]
Reason = Annotated[str, StringConstraints(max_length=2000)]
Address = Annotated[str, StringConstraints(max_length=500)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
TypeCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
Millis = Annotated[int, Field(ge=0, le=2**53)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Level = Annotated[int, Field(ge=1, le=4)]
FileIds = Annotated[list[Id], Field(max_length=20)]
Priority = Literal["low", "normal", "high", "urgent"]
Version = Annotated[int, Field(ge=1, le=2**53)]
Percent = Annotated[int, Field(ge=0, le=100)]
# Chosen by an offline client for a report it may send more than once: the same client id from the same
# user is answered with what the first request made (see docs/WORKFLOWS.md, "Offline clients").
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ProgressText = Annotated[str, StringConstraints(min_length=1, max_length=10000)]


class ReportIncident(Payload):
    title: Title
    type: TypeCode
    level: Level = 4
    description: LongText = ""
    address: Address = ""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    attachments: FileIds = Field(default_factory=list)
    client_id: ClientId | None = None


class IncidentAction(Payload):
    """verify (optionally with the level decided), respond, resolve and close (with a summary), reopen (reason)."""

    version: Version | None = None
    level: Level | None = None
    summary: Reason = ""
    reason: Reason = ""


class UpdateIncident(Payload):
    version: Version | None = None
    title: Title | None = None
    description: LongText | None = None
    address: Address | None = None
    level: Level | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None


class AssignTask(Payload):
    title: Title
    instructions: LongText = ""
    priority: Priority = "normal"
    deadline: Millis
    department_id: Id | None = None
    assignee_id: Id | None = None


class TaskAction(Payload):
    """The parameters an action needs: submit (result, attachments), send_back/reopen (comment), urge (message),
    supervise (deadline, reason), restart_chain (step), extend (deadline, reason), reassign (department_id,
    assignee_id), delegate (assignee_id), cancel (reason). `version`: refuse if the task changed meanwhile."""

    version: Version | None = None
    result: LongText = ""
    attachments: FileIds = Field(default_factory=list)
    comment: Reason = ""
    message: Reason = ""
    reason: Reason = ""
    deadline: Millis | None = None
    step: Literal["urge", "supervise"] = "urge"
    department_id: Id | None = None
    assignee_id: Id | None = None


class TaskProgressBody(Payload):
    """A progress report on a task (反馈进展). No `version`: a report queued offline must not be refused
    because the task changed meanwhile."""

    text: ProgressText
    percent: Percent | None = None
    attachments: FileIds = Field(default_factory=list)
    client_id: ClientId | None = None


class CreateProject(Payload):
    code: Code
    name: Title
    owner_department_id: Id
    responsible_department_ids: Annotated[list[Id], Field(max_length=50)] = Field(default_factory=list)
    investment: Annotated[float, Field(ge=0, le=1e12)] = 0.0
    address: Address = ""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    description: LongText = ""
    planned: Annotated[dict[Literal["start", "construction", "completion", "operation"], Millis],
                       Field(max_length=4)] = Field(default_factory=dict)


class ProjectAction(Payload):
    """start, build, complete, operate (with the actual `date`, default now); update (the facts)."""

    date: Millis | None = None
    name: Title | None = None
    investment: Annotated[float, Field(ge=0, le=1e12)] | None = None
    address: Address | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    description: LongText | None = None
    planned: Annotated[dict[Literal["start", "construction", "completion", "operation"], Millis],
                       Field(max_length=4)] | None = None


class ProgressBody(Payload):
    percent: Percent
    text: LongText = ""
    attachments: FileIds = Field(default_factory=list)
    client_id: ClientId | None = None


class ProblemBody(Payload):
    title: Title
    description: LongText = ""


class ProblemToTask(Payload):
    title: Title | None = None
    instructions: LongText = ""
    priority: Priority = "high"
    deadline: Millis
    department_id: Id | None = None
    assignee_id: Id | None = None


class ListQuery(Query):
    state: Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z_]+$")] | None = None
    before_id: Id | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class TaskListQuery(Query):
    mine: bool = False
    state: Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z_]+$")] | None = None
    supervised: bool | None = None


class RecordQuery(Query):
    format: Literal["json", "html"] = "json"


class IncidentOut(Out):
    id: str
    title: str
    type: str
    level: int
    description: str
    address: str
    latitude: float | None
    longitude: float | None
    reporter_id: str
    state: str
    created_at: int
    updated_at: int
    version: int
    attachments: list[str]
    room_id: str | None
    verified_by: str | None
    verified_at: int | None
    resolved_at: int | None
    closed_at: int | None
    actions: list[str] = Field(default_factory=list)


class ReportedIncidentOut(IncidentOut):
    """The incident reported; `duplicate`: this request repeated an earlier one's `client_id`, and this is
    what the earlier one made (as it is now)."""

    client_id: str | None = None
    duplicate: bool = False


class IncidentListOut(Out):
    incidents: list[IncidentOut]
    has_more: bool


class TaskOut(Out):
    id: str
    case_type: str
    case_id: str
    title: str
    instructions: str
    priority: str
    deadline: int
    assigned_by: str
    state: str
    created_at: int
    updated_at: int
    version: int
    department_id: str | None
    assignee_id: str | None
    accepted_by: str | None
    accepted_at: int | None
    urge_count: int
    last_urged_at: int | None
    chain_active: bool
    supervised: bool
    supervised_at: int | None
    supervise_deadline: int | None
    result_text: str
    result_attachments: list[str]
    submitted_at: int | None
    submitted_by: str | None
    review_comment: str
    reviewed_by: str | None
    reviewed_at: int | None
    sent_back_count: int
    completed_at: int | None
    problem_id: str | None
    actions: list[str] = Field(default_factory=list)


class TaskListOut(Out):
    tasks: list[TaskOut]


class TaskAckOut(Out):
    user_id: str
    device_id: str | None
    at: int


class TaskProgressOut(Out):
    id: str
    task_id: str
    reporter_id: str
    text: str
    percent: int | None
    attachments: list[str]
    created_at: int
    client_id: str | None


class TaskProgressReportedOut(Out):
    """The report stored and the task as it is now; `duplicate`: this request repeated an earlier one's
    `client_id`, and `progress` is what the earlier one stored."""

    task: TaskOut
    progress: TaskProgressOut
    duplicate: bool = False


class TaskDetailOut(Out):
    task: TaskOut
    acks: list[TaskAckOut]
    progress: list[TaskProgressOut] = Field(default_factory=list)


class ProjectOut(Out):
    id: str
    code: str
    name: str
    owner_department_id: str
    responsible_department_ids: list[str]
    investment: float
    address: str
    latitude: float | None
    longitude: float | None
    phase: str
    created_by: str
    created_at: int
    updated_at: int
    version: int
    description: str
    planned: dict[str, int]
    actual: dict[str, int]
    progress: int
    room_id: str | None
    actions: list[str] = Field(default_factory=list)


class ProjectListOut(Out):
    projects: list[ProjectOut]


class ProgressOut(Out):
    id: str
    project_id: str
    percent: int
    text: str
    reporter_id: str
    created_at: int
    attachments: list[str]


class ProgressReportedOut(ProgressOut):
    """`duplicate`: this request repeated an earlier one's `client_id`, and this is the earlier report."""

    client_id: str | None = None
    duplicate: bool = False


class ProblemOut(Out):
    id: str
    project_id: str
    title: str
    description: str
    reporter_id: str
    state: str
    created_at: int
    updated_at: int
    task_id: str | None
    resolved_at: int | None
    version: int


class ProjectDetailOut(Out):
    project: ProjectOut
    progress: list[ProgressOut]
    problems: list[ProblemOut]
    tasks: list[TaskOut]


class ProblemTaskOut(Out):
    problem: ProblemOut
    task: TaskOut


class TimelineOut(Out):
    entries: list[dict[str, Any]]


class DashboardOut(Out):
    figures: dict[str, Any]
