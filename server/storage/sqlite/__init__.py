"""The embedded SQLite backend: one file in WAL mode."""

from __future__ import annotations

from server.storage.sqlite.audit import SqliteAudit
from server.storage.sqlite.departments import SqliteDepartments
from server.storage.sqlite.devices import SqliteDevices
from server.storage.sqlite.events import SqliteEvents
from server.storage.sqlite.files import SqliteFiles
from server.storage.sqlite.jobs import SqliteJobs
from server.storage.sqlite.rooms import SqliteRooms
from server.storage.sqlite.uploads import SqliteUploads
from server.storage.sqlite.users import SqliteUsers
from server.storage.sqlite.workflows import SqliteWorkflows


class SqliteStorage(
    SqliteDepartments,
    SqliteUsers,
    SqliteDevices,
    SqliteAudit,
    SqliteRooms,
    SqliteEvents,
    SqliteJobs,
    SqliteUploads,
    SqliteFiles,
    SqliteWorkflows,
):
    """All kernel stores on one SQLite file."""


__all__ = ["SqliteStorage"]
