"""Storage ports. Each backend implements all of them; tests/storage runs one suite against each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from server.storage.records import (
    AuditRecord,
    DeadLetter,
    Department,
    Device,
    FileLink,
    FileStatus,
    Incident,
    IncidentState,
    Job,
    MemberRole,
    Membership,
    MessageAck,
    Problem,
    ProgressReport,
    Project,
    ProjectPhase,
    Room,
    RoomEvent,
    StoredFile,
    Task,
    TaskAck,
    TaskProgress,
    TaskState,
    Upload,
    UploadSegment,
    User,
)


class StorageConflict(Exception):
    """A unique key is already taken (username, id, audit chain position)."""


class DepartmentStore(Protocol):
    async def create_department(self, department: Department) -> None:
        """Insert; raises StorageConflict when the id exists."""

    async def get_department(self, department_id: str) -> Department | None: ...

    async def list_departments(self) -> list[Department]:
        """All departments, ordered by creation."""

    async def update_department(self, department: Department) -> bool:
        """Replace the stored department; False when it does not exist."""

    async def delete_department(self, department_id: str) -> bool: ...


class UserStore(Protocol):
    async def create_user(self, user: User) -> None:
        """Insert; raises StorageConflict when the id or the username is taken."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_username(self, username: str) -> User | None: ...

    async def list_users(
        self,
        *,
        department_id: str | None = None,
        role: str | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[User]:
        """Users ordered by id, optionally filtered, paged by `after_id`."""

    async def update_user(self, user: User) -> bool:
        """Replace the stored user; False when it does not exist."""

    async def count_users(self) -> int: ...


class DeviceStore(Protocol):
    async def create_device(self, device: Device) -> None: ...

    async def get_device(self, device_id: str) -> Device | None: ...

    async def find_external_device(self, user_id: str, external_session: str) -> Device | None: ...

    async def list_devices(self, user_id: str) -> list[Device]:
        """A user's devices, revoked ones included, ordered by creation."""

    async def set_refresh(
        self,
        device_id: str,
        *,
        expected_hash: str | None,
        new_hash: str,
        expires_at: int,
        at: int,
    ) -> bool:
        """Compare-and-set the refresh secret of a live device.

        Succeeds only when the device is not revoked and its current hash equals
        `expected_hash` (None: any current value, used at login). The replaced hash
        becomes `refresh_prev_hash`.
        """

    async def revoke_device(self, device_id: str, *, at: int) -> bool:
        """Mark revoked and forget its refresh secret; False when unknown or already revoked."""

    async def touch_device(self, device_id: str, *, at: int) -> None: ...


class AuditStore(Protocol):
    async def last_audit_record(self, chain: str) -> AuditRecord | None: ...

    async def insert_audit_record(self, record: AuditRecord) -> bool:
        """Append; False (nothing written) when (chain, seq) is taken, so the caller retries."""

    async def list_audit_records(
        self,
        *,
        chain: str | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        subject_type: str | None = None,
        subject_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Newest first (by id), filtered; `before_id` pages backwards."""

    def iter_audit_chain(self, chain: str) -> AsyncIterator[AuditRecord]:
        """Every record of a chain in sequence order."""

    async def list_audit_chains(self) -> list[str]: ...


class RoomStore(Protocol):
    async def create_room(self, room: Room, members: list[Membership]) -> None:
        """Insert a room with its first members; StorageConflict when the id or direct_key is taken."""

    async def get_room(self, room_id: str) -> Room | None: ...

    async def find_direct_room(self, direct_key: str) -> Room | None: ...

    async def find_rooms(
        self, *, department_id: str | None = None, case_type: str | None = None, case_id: str | None = None
    ) -> list[Room]:
        """Rooms following a department, or belonging to a case."""

    async def update_room(self, room: Room) -> bool:
        """Replace name, topic, archived and updated_at (never last_seq); False when unknown."""

    async def list_user_rooms(self, user_id: str) -> list[tuple[Room, Membership]]:
        """Every room the user is a member of, with the membership."""

    async def get_member(self, room_id: str, user_id: str) -> Membership | None: ...

    async def get_room_member(self, room_id: str, user_id: str) -> tuple[Room | None, Membership | None]:
        """`get_room` and `get_member` together (the check made for every message): one read where
        the backend can join them."""

    async def list_members(self, room_id: str) -> list[Membership]:
        """Members ordered by joined_at, then user id."""

    async def add_member(self, member: Membership) -> bool:
        """False (nothing changed) when already a member."""

    async def remove_member(self, room_id: str, user_id: str) -> bool: ...

    async def set_member_role(self, room_id: str, user_id: str, role: MemberRole) -> bool: ...

    async def mark_read(self, room_id: str, user_id: str, seq: int) -> int:
        """Move the read position forward to `seq` (never back, never past the room's last_seq);
        returns the position now stored (0 when not a member)."""


class EventStore(Protocol):
    async def append_event(self, event: RoomEvent, *, search_tokens: list[str] | None = None) -> tuple[RoomEvent, bool]:
        """Give the event the room's next sequence number and store it, atomically.

        `event.seq` is ignored. When `event.client_id` is set and the same sender already
        stored an event with that client id in this room, nothing is written and that event
        is returned with False (a resend after a lost acknowledgement). `search_tokens`
        make a message findable by `search_messages`.
        """

    async def get_event(self, room_id: str, event_id: str) -> RoomEvent | None: ...

    async def update_message(
        self,
        room_id: str,
        message_id: str,
        *,
        body: dict[str, Any] | None = None,
        edited_at: int | None = None,
        recalled_at: int | None = None,
        pinned: bool | None = None,
        search_tokens: list[str] | None = None,
    ) -> bool:
        """Change a stored message's current state. `search_tokens=[]` removes it from search."""

    async def list_events(
        self, room_id: str, *, after_seq: int | None = None, before_seq: int | None = None, limit: int = 100
    ) -> list[RoomEvent]:
        """Events in ascending seq order: the first `limit` after `after_seq`, or the last `limit`
        before `before_seq` (or the newest `limit` when neither is given)."""

    async def count_unread(self, room_id: str, user_id: str, after_seq: int, *, cap: int = 1000) -> int:
        """Messages (message and system events) after `after_seq` not sent by `user_id`, up to `cap`."""

    async def search_messages(
        self, room_ids: list[str], tokens: list[str], *, limit: int = 50, before_id: str | None = None
    ) -> list[RoomEvent]:
        """Messages in `room_ids` holding every token, newest first (by id), paged by `before_id`."""

    async def add_message_ack(self, ack: MessageAck) -> bool:
        """Record an acknowledgement; False when this user had already acknowledged the message."""

    async def list_message_acks(self, room_id: str, message_id: str) -> list[MessageAck]: ...


class JobStore(Protocol):
    async def schedule_job(self, job: Job) -> None:
        """Insert or replace (by id) a job."""

    async def cancel_job(self, job_id: str) -> bool: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def claim_due_jobs(self, *, now: int, node: str, lease_ms: int, limit: int = 100) -> list[Job]:
        """Atomically claim jobs due at `now` that nobody holds (or whose lease ran out)."""

    async def finish_job(self, job_id: str, *, node: str, next_due_at: int | None = None) -> None:
        """Delete a claimed job, or re-arm it for `next_due_at` and release it."""


class UploadStore(Protocol):
    async def create_upload(self, upload: Upload) -> None:
        """Insert; StorageConflict when the id exists."""

    async def get_upload(self, upload_id: str) -> Upload | None: ...

    async def commit_upload_segment(self, upload_id: str, *, expected_offset: int, segment: UploadSegment) -> bool:
        """Compare-and-set: when the upload is unfinished and its offset is `expected_offset`
        (= `segment.start`), append the segment and move the offset by its size. False otherwise
        (another request committed first, or the upload is finished or gone)."""

    async def finish_upload(self, upload_id: str, *, file_id: str) -> bool:
        """Set `file_id` once, when the upload is complete (offset = length); False otherwise."""

    async def delete_upload(self, upload_id: str) -> bool: ...

    async def list_expired_uploads(self, *, now: int, limit: int = 100) -> list[Upload]:
        """Unfinished uploads with `expires_at <= now`, oldest expiry first."""

    async def open_upload_bytes(self, user_id: str, *, now: int) -> int:
        """The declared lengths of the user's unfinished, unexpired uploads, summed."""


class FileStore(Protocol):
    async def create_file(self, file: StoredFile) -> None:
        """Insert; StorageConflict when the id exists."""

    async def get_file(self, file_id: str) -> StoredFile | None: ...

    async def get_files(self, file_ids: list[str]) -> list[StoredFile]:
        """The files that exist among `file_ids`, in the order asked."""

    async def set_file_status(
        self, file_id: str, *, status: FileStatus, scan_result: str | None = None, scanned_at: int | None = None
    ) -> bool: ...

    async def set_file_preview(
        self, file_id: str, *, thumbnail_sha256: str | None, width: int | None, height: int | None
    ) -> bool: ...

    async def list_files_by_status(self, status: FileStatus, *, limit: int = 100) -> list[StoredFile]:
        """Files in a status (the scanner's backlog), oldest first."""

    async def owned_file_bytes(self, user_id: str) -> int:
        """Sizes of the files the user uploaded, summed (each file counts, even with shared content)."""

    async def add_file_link(self, link: FileLink) -> bool:
        """False (nothing changed) when the file is already linked to that target."""

    async def list_file_links(self, file_id: str, *, include_removed: bool = False) -> list[FileLink]:
        """A file's links, oldest first."""

    async def remove_file_links(self, target_type: str, target_id: str, *, at: int) -> int:
        """Mark every live link to the target removed; returns how many."""

    async def list_scope_files(
        self, scope_type: str, scope_id: str, *, before: int | None = None, limit: int = 50
    ) -> list[tuple[FileLink, StoredFile]]:
        """Live links of a scope (a room's files), newest link first, paged by link `created_at`."""


class WorkflowStore(Protocol):
    """Incidents, tasks and projects. Updates are compare-and-set on `version`: the caller passes the
    record with `version = expected_version + 1`; False (nothing written) when the stored version
    is not `expected_version` (another node changed it first) or the record does not exist.

    Incidents, project progress reports and task progress reports may carry the reporting client's
    `client_id`: at most one of each per (reporter_id, client_id), kept by the backend's unique key,
    so that of two identical requests racing exactly one is stored (the other gets StorageConflict
    and finds the winner with `find_*_by_client_id`). Records without a client id never collide."""

    async def create_incident(self, incident: Incident) -> None:
        """StorageConflict when the id is taken, or the reporter already has an incident with its client_id."""

    async def find_incident_by_client_id(self, reporter_id: str, client_id: str) -> Incident | None: ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def update_incident(self, incident: Incident, *, expected_version: int) -> bool: ...

    async def list_incidents(
        self, *, states: list[IncidentState] | None = None, before_id: str | None = None, limit: int = 50
    ) -> list[Incident]:
        """Newest first (by id), optionally in some states, paged by `before_id`."""

    async def create_task(self, task: Task) -> None: ...

    async def get_task(self, task_id: str) -> Task | None: ...

    async def update_task(self, task: Task, *, expected_version: int) -> bool: ...

    async def list_tasks(
        self,
        *,
        case_type: str | None = None,
        case_id: str | None = None,
        assignee_id: str | None = None,
        department_id: str | None = None,
        states: list[TaskState] | None = None,
        supervised: bool | None = None,
        limit: int = 500,
    ) -> list[Task]:
        """Tasks matching every filter given, oldest first (by id)."""

    async def add_task_ack(self, ack: TaskAck) -> bool:
        """False when this user already acknowledged this task."""

    async def list_task_acks(self, task_id: str) -> list[TaskAck]: ...

    async def create_project(self, project: Project) -> None:
        """StorageConflict when the id or the code is taken."""

    async def get_project(self, project_id: str) -> Project | None: ...

    async def update_project(self, project: Project, *, expected_version: int) -> bool: ...

    async def list_projects(self, *, phases: list[ProjectPhase] | None = None, limit: int = 500) -> list[Project]:
        """Oldest first (by id)."""

    async def add_progress_report(self, report: ProgressReport) -> None:
        """StorageConflict when the id is taken, or the reporter already has a report with its client_id."""

    async def find_progress_report_by_client_id(self, reporter_id: str, client_id: str) -> ProgressReport | None: ...

    async def list_progress_reports(self, project_id: str, *, limit: int = 200) -> list[ProgressReport]:
        """Newest first."""

    async def add_task_progress(self, progress: TaskProgress) -> None:
        """StorageConflict when the id is taken, or the reporter already has a report with its client_id."""

    async def find_task_progress_by_client_id(self, reporter_id: str, client_id: str) -> TaskProgress | None: ...

    async def list_task_progress(self, task_id: str, *, limit: int = 200) -> list[TaskProgress]:
        """A task's progress reports, newest first (by created_at, then id)."""

    async def create_problem(self, problem: Problem) -> None: ...

    async def get_problem(self, problem_id: str) -> Problem | None: ...

    async def update_problem(self, problem: Problem, *, expected_version: int) -> bool: ...

    async def list_problems(self, project_id: str | None = None, *, limit: int = 500) -> list[Problem]:
        """Oldest first; all projects' problems when `project_id` is None."""

    async def add_dead_letter(self, letter: DeadLetter) -> None: ...

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""


class Storage(
    DepartmentStore, UserStore, DeviceStore, AuditStore, RoomStore, EventStore, JobStore, UploadStore, FileStore,
    WorkflowStore, Protocol,
):
    """Everything the kernel stores, plus lifecycle."""

    name: str

    async def open(self) -> None:
        """Connect and bring the schema or indexes up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the backend cannot answer."""


class BlobStore(Protocol):
    """File contents, named by their sha256 (hex). Local disk by default, GridFS with MongoDB."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put_blob(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        """Store the bytes, hashing them on the way; returns (sha256, size). Content already
        stored is kept once (the new copy is dropped). Safe against concurrent puts of the
        same content and against a crash midway (no partial blob is ever visible)."""

    async def blob_size(self, sha256: str) -> int | None:
        """The stored size, or None when there is no such blob."""

    def read_blob(self, sha256: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob (to its end when `end` is None), in chunks.
        Raises KeyError when there is no such blob."""

    async def delete_blob(self, sha256: str) -> bool: ...
