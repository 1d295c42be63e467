"""The storage contract suite runs against every backend.

- ``sqlite``: a real SQLite file per test (always).
- ``mongo-standin-mockupdb``: the MongoDB adapter with the real ``AsyncMongoClient``, talking
  to a stand-in, NOT a MongoDB server: ``tests/storage/mongo_standin.py`` (mockupdb speaking
  the wire protocol, mongomock executing the commands). Always runs; one stand-in per
  session, a fresh database per test. It checks the adapter's commands and the driver's
  handling of replies, not MongoDB's own behaviour (see the stand-in's docstring).
- ``mongo-real``: the MongoDB adapter against a real MongoDB at ``MUSTER_TEST_MONGO_URL``;
  only present when that variable is set. Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.storage.mongo import MongoStorage
from server.storage.ports import Storage
from server.storage.sqlite import SqliteStorage
from tests.storage.mongo_standin import MongoStandin

REAL_MONGO_URL = os.environ.get("MUSTER_TEST_MONGO_URL", "")

BACKENDS = ["sqlite", "mongo-standin-mockupdb"]
if REAL_MONGO_URL:
    BACKENDS.append("mongo-real")


@pytest.fixture(scope="session")
def mongo_standin_url() -> Iterator[str]:
    """One stand-in for the session (it starts fast, but stopping waits up to a second)."""
    with MongoStandin() as url:
        yield url


@pytest.fixture
async def sqlite_storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    """For SQLite-only tests: the adapter open on a real file, `tmp_path / "muster.db"`."""
    opened = SqliteStorage(tmp_path / "muster.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    mongo: MongoStorage | None = None
    if request.param == "sqlite":
        store: Storage = SqliteStorage(tmp_path / "muster.sqlite3")
    elif request.param in ("mongo-standin-mockupdb", "mongo-real"):
        url = (
            request.getfixturevalue("mongo_standin_url")
            if request.param == "mongo-standin-mockupdb"
            else REAL_MONGO_URL
        )
        store = mongo = MongoStorage(url, f"muster_test_{uuid.uuid4().hex[:16]}")
    else:  # pragma: no cover - every param is handled above
        raise AssertionError(request.param)
    await store.open()
    try:
        yield store
    finally:
        try:
            if mongo is not None:
                await mongo.db.client.drop_database(mongo.db.name)
        finally:
            await store.close()
