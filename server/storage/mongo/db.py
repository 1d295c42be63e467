"""The MongoDB connection: one AsyncMongoClient, indexes created idempotently at start.

No multi-document transactions or explicit sessions: every operation is a single-document
write or a read, so a standalone server works as well as a replica set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.storage.ports import StorageConflict

Doc = dict[str, Any]

DEPARTMENTS = "departments"
USERS = "users"
DEVICES = "devices"
AUDIT_LOG = "audit_log"
ROOMS = "rooms"
MEMBERSHIPS = "memberships"
ROOM_EVENTS = "room_events"
MESSAGE_ACKS = "message_acks"
JOBS = "jobs"
UPLOADS = "uploads"
FILES = "files"
FILE_LINKS = "file_links"
INCIDENTS = "incidents"
TASKS = "tasks"
TASK_ACKS = "task_acks"
PROJECTS = "projects"
PROGRESS_REPORTS = "progress_reports"
TASK_PROGRESS = "task_progress"
PROBLEMS = "problems"
DEAD_LETTERS = "dead_letters"

# Every index a query or a uniqueness rule needs, by collection. Names are fixed so
# that creating them again at the next start is a no-op.
INDEXES: dict[str, list[IndexModel]] = {
    DEPARTMENTS: [
        IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)], name="departments_created"),
    ],
    USERS: [
        IndexModel([("username", ASCENDING)], name="users_username_unique", unique=True),
        IndexModel([("department_id", ASCENDING), ("_id", ASCENDING)], name="users_department"),
        IndexModel([("roles", ASCENDING), ("_id", ASCENDING)], name="users_roles"),
    ],
    DEVICES: [
        IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)], name="devices_user"),
        IndexModel(
            [("user_id", ASCENDING), ("external_session", ASCENDING), ("created_at", DESCENDING)],
            name="devices_external_session",
        ),
    ],
    AUDIT_LOG: [
        # Appends to a chain race on this key: the loser gets a duplicate key and retries.
        IndexModel([("chain", ASCENDING), ("seq", ASCENDING)], name="audit_chain_seq_unique", unique=True),
        IndexModel([("chain", ASCENDING), ("_id", ASCENDING)], name="audit_chain"),
        IndexModel([("actor_id", ASCENDING), ("_id", ASCENDING)], name="audit_actor"),
        IndexModel([("subject_type", ASCENDING), ("subject_id", ASCENDING), ("_id", ASCENDING)], name="audit_subject"),
        IndexModel([("action", ASCENDING), ("_id", ASCENDING)], name="audit_action"),
        IndexModel([("at", ASCENDING)], name="audit_at"),
    ],
    ROOMS: [
        # Partial: only rooms with a direct_key (a string) take part, so the many rooms
        # without one (stored as null) never collide.
        IndexModel(
            [("direct_key", ASCENDING)],
            name="rooms_direct_key_unique",
            unique=True,
            partialFilterExpression={"direct_key": {"$type": "string"}},
        ),
        IndexModel(
            [("department_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)], name="rooms_department"
        ),
        IndexModel(
            [("case_type", ASCENDING), ("case_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)],
            name="rooms_case",
        ),
    ],
    MEMBERSHIPS: [
        IndexModel([("room_id", ASCENDING), ("user_id", ASCENDING)], name="memberships_room_user_unique", unique=True),
        IndexModel([("room_id", ASCENDING), ("joined_at", ASCENDING), ("user_id", ASCENDING)], name="memberships_room"),
        IndexModel([("user_id", ASCENDING), ("room_id", ASCENDING)], name="memberships_user"),
    ],
    ROOM_EVENTS: [
        # The room's counter hands out each seq once; this makes a second writer fail loudly.
        IndexModel([("room_id", ASCENDING), ("seq", ASCENDING)], name="events_room_seq_unique", unique=True),
        # Sending is idempotent on the sender's client id; events without one (null) are left out.
        IndexModel(
            [("room_id", ASCENDING), ("sender_id", ASCENDING), ("client_id", ASCENDING)],
            name="events_client_unique",
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        ),
        # Multikey: one entry per token of a message.
        IndexModel([("room_id", ASCENDING), ("search_tokens", ASCENDING)], name="events_search"),
    ],
    MESSAGE_ACKS: [
        IndexModel(
            [("room_id", ASCENDING), ("message_id", ASCENDING), ("user_id", ASCENDING)],
            name="message_acks_unique",
            unique=True,
        ),
    ],
    JOBS: [
        IndexModel([("due_at", ASCENDING)], name="jobs_due"),
    ],
    UPLOADS: [
        # Unfinished uploads have file_id null: equality on it, then the expiry range.
        IndexModel([("file_id", ASCENDING), ("expires_at", ASCENDING), ("_id", ASCENDING)], name="uploads_expiry"),
        IndexModel([("user_id", ASCENDING), ("file_id", ASCENDING), ("expires_at", ASCENDING)], name="uploads_user"),
    ],
    FILES: [
        IndexModel([("owner_id", ASCENDING), ("size", ASCENDING)], name="files_owner"),
        IndexModel([("status", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)], name="files_status"),
    ],
    FILE_LINKS: [
        # One link per file and target: a second add is refused by this key.
        IndexModel(
            [("file_id", ASCENDING), ("target_type", ASCENDING), ("target_id", ASCENDING)],
            name="file_links_unique",
            unique=True,
        ),
        IndexModel([("file_id", ASCENDING), ("created_at", ASCENDING)], name="file_links_file"),
        IndexModel([("target_type", ASCENDING), ("target_id", ASCENDING)], name="file_links_target"),
        IndexModel(
            [("scope_type", ASCENDING), ("scope_id", ASCENDING), ("created_at", DESCENDING)], name="file_links_scope"
        ),
    ],
    INCIDENTS: [
        IndexModel([("state", ASCENDING), ("_id", ASCENDING)], name="incidents_state"),
        # One incident per reporter and client id (offline phones resend); those without one are left out.
        IndexModel(
            [("reporter_id", ASCENDING), ("client_id", ASCENDING)],
            name="incidents_client_unique",
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        ),
    ],
    TASKS: [
        IndexModel([("case_type", ASCENDING), ("case_id", ASCENDING), ("_id", ASCENDING)], name="tasks_case"),
        IndexModel([("assignee_id", ASCENDING), ("_id", ASCENDING)], name="tasks_assignee"),
        IndexModel([("department_id", ASCENDING), ("_id", ASCENDING)], name="tasks_department"),
        IndexModel([("state", ASCENDING), ("_id", ASCENDING)], name="tasks_state"),
        IndexModel([("supervised", ASCENDING), ("_id", ASCENDING)], name="tasks_supervised"),
    ],
    TASK_ACKS: [
        # One acknowledgement per task and user: a second add is refused by this key.
        IndexModel([("task_id", ASCENDING), ("user_id", ASCENDING)], name="task_acks_unique", unique=True),
    ],
    PROJECTS: [
        IndexModel([("code", ASCENDING)], name="projects_code_unique", unique=True),
        IndexModel([("phase", ASCENDING), ("_id", ASCENDING)], name="projects_phase"),
    ],
    PROGRESS_REPORTS: [
        IndexModel(
            [("project_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="progress_reports_project",
        ),
        IndexModel(
            [("reporter_id", ASCENDING), ("client_id", ASCENDING)],
            name="progress_reports_client_unique",
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        ),
    ],
    TASK_PROGRESS: [
        IndexModel(
            [("task_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="task_progress_task",
        ),
        IndexModel(
            [("reporter_id", ASCENDING), ("client_id", ASCENDING)],
            name="task_progress_client_unique",
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        ),
    ],
    PROBLEMS: [
        IndexModel([("project_id", ASCENDING), ("_id", ASCENDING)], name="problems_project"),
    ],
    DEAD_LETTERS: [
        IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="dead_letters_created"),
    ],
}


@contextmanager
def conflicts_as_storage_conflict() -> Iterator[None]:
    """Turn a duplicate key (id, username, chain position) into StorageConflict."""
    try:
        yield
    except DuplicateKeyError as exc:
        raise StorageConflict(str(exc)) from None


class MongoBase:
    """Connection handling shared by the topic mixins."""

    name = "mongo"

    def __init__(self, url: str, database: str, *, server_selection_timeout_ms: int = 5000) -> None:
        self.url = url
        self.database_name = database
        self.server_selection_timeout_ms = server_selection_timeout_ms
        self._client: AsyncMongoClient[Doc] | None = None

    @property
    def db(self) -> AsyncDatabase[Doc]:
        if self._client is None:
            raise RuntimeError("MongoDB storage is not open")
        return self._client[self.database_name]

    def collection(self, name: str) -> AsyncCollection[Doc]:
        return self.db[name]

    async def open(self) -> None:
        if self._client is not None:
            raise RuntimeError("MongoDB storage is already open")
        # The client connects lazily; creating the indexes is what first reaches the server.
        client: AsyncMongoClient[Doc] = AsyncMongoClient(
            self.url, serverSelectionTimeoutMS=self.server_selection_timeout_ms, appname="muster"
        )
        self._client = client
        try:
            for name, indexes in INDEXES.items():
                await self.db[name].create_indexes(indexes)
        except BaseException:
            self._client = None
            await client.close()
            raise

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def ping(self) -> None:
        await self.db.client.admin.command("ping")
