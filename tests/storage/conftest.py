"""The storage contract suite runs against every backend.

- ``sqlite``: a real SQLite file per test (always).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage.ports import Storage
from server.storage.sqlite import SqliteStorage

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "sqlite":
        store: Storage = SqliteStorage(tmp_path / "muster.sqlite3")
    else:  # pragma: no cover - every param is handled above
        raise AssertionError(request.param)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
