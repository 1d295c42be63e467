"""Storage ports. Each backend implements all of them; tests/storage runs one suite against each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from server.storage.records import AuditRecord, Department, Device, User


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


class Storage(DepartmentStore, UserStore, DeviceStore, AuditStore, Protocol):
    """Everything the kernel stores, plus lifecycle."""

    name: str

    async def open(self) -> None:
        """Connect and bring the schema or indexes up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the backend cannot answer."""
