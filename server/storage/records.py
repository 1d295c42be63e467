"""Records the kernel stores. Times are milliseconds since the Unix epoch (UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DepartmentKind = Literal["county", "department", "team"]
DeviceKind = Literal["console", "mobile"]
ROLES = ("admin", "commander", "dept_lead", "responder", "inspector")


@dataclass(frozen=True, slots=True)
class Department:
    id: str
    name: str
    kind: DepartmentKind
    parent_id: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str
    department_id: str | None
    title: str
    roles: tuple[str, ...]
    disabled: bool
    password_hash: str | None
    created_at: int
    updated_at: int

    def has_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    user_id: str
    name: str
    kind: DeviceKind
    created_at: int
    last_seen_at: int
    revoked_at: int | None = None
    # sha256 of the current and the previous refresh secret; the previous one
    # is kept to recognise a stolen refresh token being replayed.
    refresh_hash: str | None = None
    refresh_prev_hash: str | None = None
    refresh_expires_at: int | None = None
    # For devices registered by an external identity provider: its session id.
    external_session: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: str
    chain: str
    seq: int
    at: int
    actor_id: str | None
    device_id: str | None
    action: str
    subject_type: str
    subject_id: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""


RoomKind = Literal["incident", "project", "department", "group", "direct"]
MemberRole = Literal["owner", "admin", "member"]
# Everything that happens in a room is an event in its one sequence.
EventKind = Literal["message", "system", "edit", "recall", "pin", "unpin", "member", "room"]
MESSAGE_KINDS = ("message", "system")


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    kind: RoomKind
    name: str
    topic: str
    archived: bool
    created_by: str | None
    created_at: int
    updated_at: int
    # The department a department room follows, and the case (incident or project) a room belongs to.
    department_id: str | None = None
    case_type: str | None = None
    case_id: str | None = None
    # For direct chats: the two user ids, sorted and joined with "|" (unique).
    direct_key: str | None = None
    # The highest sequence number given out in this room.
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class Membership:
    room_id: str
    user_id: str
    role: MemberRole
    joined_at: int
    # The last sequence the user has read, on any of their devices.
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One entry of a room's sequence.

    For `message` and `system` events, `body` holds the message (text, mentions,
    reply_to, attachments, ack request) and the mutable state fields say whether it
    was edited, recalled or pinned since. For `edit`, `recall`, `pin` and `unpin`,
    `target_id` names the message. For `member` and `room` events `body` holds what
    changed.
    """

    id: str
    room_id: str
    seq: int
    kind: EventKind
    sender_id: str | None
    device_id: str | None
    client_id: str | None
    created_at: int
    body: dict[str, Any] = field(default_factory=dict)
    target_id: str | None = None
    edited_at: int | None = None
    recalled_at: int | None = None
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class MessageAck:
    """An acknowledgement (回执) of a message by one person, from one device."""

    room_id: str
    message_id: str
    user_id: str
    device_id: str | None
    at: int


@dataclass(frozen=True, slots=True)
class Job:
    """A durable scheduled job: a row with a due time, claimed by one node at a time."""

    id: str
    kind: str
    due_at: int
    payload: dict[str, Any] = field(default_factory=dict)
    # Set while a node works on it: which node, until when (then another may take it).
    claimed_by: str | None = None
    claimed_until: int | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class UploadSegment:
    """One committed run of bytes of an unfinished upload, kept as its own file in the spool."""

    start: int
    size: int
    # The spool file's name (made by the upload service; never from client input).
    key: str


@dataclass(frozen=True, slots=True)
class Upload:
    """A resumable (tus) upload, bound to the user and device that created it."""

    id: str
    user_id: str
    device_id: str
    length: int
    created_at: int
    expires_at: int
    # The decoded tus Upload-Metadata (filename, filetype, room_id, client_id); display text only.
    metadata: dict[str, str] = field(default_factory=dict)
    # Bytes received and committed so far: the sum of the segments' sizes.
    offset: int = 0
    segments: tuple[UploadSegment, ...] = ()
    # Set once the upload is complete and has become a file.
    file_id: str | None = None


FileStatus = Literal["ready", "scanning", "quarantined"]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A finished file. Its content is the blob named by `sha256` (identical content is stored once)."""

    id: str
    sha256: str
    size: int
    # Sniffed from the content, never taken from the client.
    mime: str
    # The client's file name, kept as display text only; it never becomes a path.
    name: str
    owner_id: str
    device_id: str | None
    created_at: int
    status: FileStatus = "ready"
    # The ClamAV signature for a quarantined file.
    scan_result: str | None = None
    scanned_at: int | None = None
    # The preview image's blob, and image dimensions, for pictures.
    thumbnail_sha256: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class FileLink:
    """A file attached to something (a message, later an incident, task or progress report).

    Access follows the scope: the members of a room (`scope_type="room"`), or whoever may
    see a case (`scope_type="case:incident"`...). Removing a link (a recalled message)
    leaves the file and its other links alone: evidence a case refers to stays.
    """

    file_id: str
    scope_type: str
    scope_id: str
    target_type: str
    target_id: str
    created_by: str | None
    created_at: int
    removed_at: int | None = None


IncidentState = Literal["reported", "verified", "responding", "resolved", "closed"]


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident (事件): a case. `level` 1 to 4 is I (特别重大) to IV (一般)."""

    id: str
    title: str
    type: str
    level: int
    description: str
    address: str
    latitude: float | None
    longitude: float | None
    reporter_id: str
    reporter_device_id: str | None
    state: IncidentState
    created_at: int
    updated_at: int
    # Every update is a compare-and-set on this number (two nodes never overwrite each other).
    version: int = 1
    attachments: tuple[str, ...] = ()
    room_id: str | None = None
    verified_by: str | None = None
    verified_at: int | None = None
    resolved_at: int | None = None
    closed_at: int | None = None
    # Chosen by the reporting client (a phone queues reports offline and may send one twice): one
    # incident per reporter and client id.
    client_id: str | None = None


TaskState = Literal["assigned", "accepted", "in_progress", "submitted", "sent_back", "passed", "cancelled"]
TaskPriority = Literal["low", "normal", "high", "urgent"]


@dataclass(frozen=True, slots=True)
class Task:
    """A task of a case, going round assign (交办), urge (催办), supervise (督办), inspect (督查)."""

    id: str
    case_type: str
    case_id: str
    title: str
    instructions: str
    priority: TaskPriority
    deadline: int
    assigned_by: str
    state: TaskState
    created_at: int
    updated_at: int
    version: int = 1
    # Assigned to a department (its lead or a member takes it on) or to one person, or both after delegation.
    department_id: str | None = None
    assignee_id: str | None = None
    accepted_by: str | None = None
    accepted_at: int | None = None
    urge_count: int = 0
    last_urged_at: int | None = None
    # Automatic urges and escalation run while this is true; acting on the task stops them.
    chain_active: bool = True
    supervised: bool = False
    supervised_at: int | None = None
    supervise_deadline: int | None = None
    result_text: str = ""
    result_attachments: tuple[str, ...] = ()
    submitted_at: int | None = None
    submitted_by: str | None = None
    review_comment: str = ""
    reviewed_by: str | None = None
    reviewed_at: int | None = None
    sent_back_count: int = 0
    completed_at: int | None = None
    # For a task made from a project problem.
    problem_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskAck:
    """Accepting an assignment is its acknowledgement: who, on which device, when."""

    task_id: str
    user_id: str
    device_id: str | None
    at: int


ProjectPhase = Literal["planning", "start", "construction", "completion", "operation"]


@dataclass(frozen=True, slots=True)
class Project:
    """A major project (重大项目): a case, through the phases start, construction, completion, operation."""

    id: str
    code: str
    name: str
    owner_department_id: str
    responsible_department_ids: tuple[str, ...]
    # In units of 10,000 yuan (万元), as projects are reported.
    investment: float
    address: str
    latitude: float | None
    longitude: float | None
    phase: ProjectPhase
    created_by: str
    created_at: int
    updated_at: int
    version: int = 1
    description: str = ""
    # Planned and actual dates (ms) by phase name.
    planned: dict[str, int] = field(default_factory=dict)
    actual: dict[str, int] = field(default_factory=dict)
    progress: int = 0
    room_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProgressReport:
    id: str
    project_id: str
    percent: int
    text: str
    reporter_id: str
    created_at: int
    attachments: tuple[str, ...] = ()
    # Chosen by the reporting client: one report per reporter and client id (a resend finds the first).
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """A progress report on a task (反馈进展): it leaves the task's state as it is."""

    id: str
    task_id: str
    reporter_id: str
    text: str
    created_at: int
    percent: int | None = None
    attachments: tuple[str, ...] = ()
    # Chosen by the reporting client: one report per reporter and client id (a resend finds the first).
    client_id: str | None = None


ProblemState = Literal["open", "tasked", "resolved"]


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    project_id: str
    title: str
    description: str
    reporter_id: str
    state: ProblemState
    created_at: int
    updated_at: int
    version: int = 1
    task_id: str | None = None
    resolved_at: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A notification the outbound webhook gave up on after its retries."""

    id: str
    channel: str
    event: str
    payload: dict[str, Any]
    attempts: int
    last_error: str
    created_at: int
