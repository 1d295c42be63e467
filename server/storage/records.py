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
