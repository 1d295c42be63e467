"""The MongoDB backend (production, several nodes): pymongo's asynchronous client."""

from __future__ import annotations

from server.storage.mongo.audit import MongoAudit
from server.storage.mongo.departments import MongoDepartments
from server.storage.mongo.devices import MongoDevices
from server.storage.mongo.users import MongoUsers


class MongoStorage(MongoDepartments, MongoUsers, MongoDevices, MongoAudit):
    """All kernel stores on one MongoDB database."""


__all__ = ["MongoStorage"]
