"""The MongoDB backend (production, several nodes): pymongo's asynchronous client."""

from __future__ import annotations

from server.storage.mongo.audit import MongoAudit
from server.storage.mongo.departments import MongoDepartments
from server.storage.mongo.devices import MongoDevices
from server.storage.mongo.events import MongoEvents
from server.storage.mongo.files import MongoFiles
from server.storage.mongo.jobs import MongoJobs
from server.storage.mongo.rooms import MongoRooms
from server.storage.mongo.uploads import MongoUploads
from server.storage.mongo.users import MongoUsers
from server.storage.mongo.workflows import MongoWorkflows


class MongoStorage(
    MongoDepartments,
    MongoUsers,
    MongoDevices,
    MongoAudit,
    MongoRooms,
    MongoEvents,
    MongoJobs,
    MongoUploads,
    MongoFiles,
    MongoWorkflows,
):
    """All kernel stores on one MongoDB database."""


__all__ = ["MongoStorage"]
