"""Storage ports. Each backend implements all of them; tests/storage runs one suite against each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from server.storage.records import (
    AuditRecord,
    Department,
    Device,
    Job,
    MemberRole,
    Membership,
    MessageAck,
    Room,
    RoomEvent,
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


class Storage(DepartmentStore, UserStore, DeviceStore, AuditStore, RoomStore, EventStore, JobStore, Protocol):
    """Everything the kernel stores, plus lifecycle."""

    name: str

    async def open(self) -> None:
        """Connect and bring the schema or indexes up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the backend cannot answer."""
