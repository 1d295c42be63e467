"""Payloads and responses of the organisation API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from server.schemas import Id, Name, Out, Password, Payload, Query, ShortText, Username

Role = Literal["admin", "commander", "dept_lead", "responder", "inspector"]
Roles = Annotated[list[Role], Field(max_length=5)]


class DepartmentOut(Out):
    id: str
    name: str
    kind: Literal["county", "department", "team"]
    parent_id: str | None
    created_at: int
    updated_at: int


class DepartmentList(Out):
    departments: list[DepartmentOut]


class CreateDepartment(Payload):
    name: Name
    kind: Literal["county", "department", "team"]
    parent_id: Id | None = None


class UpdateDepartment(Payload):
    name: Name | None = None
    parent_id: Id | None = None
    # Set true to move the department to the top of the tree (parent_id null).
    make_root: bool = False


class UserOut(Out):
    id: str
    username: str
    display_name: str
    department_id: str | None
    title: str
    roles: list[Role]
    disabled: bool
    created_at: int
    updated_at: int


class UserList(Out):
    users: list[UserOut]
    next_after: str | None = None


class UserQuery(Query):
    department_id: Id | None = None
    role: Role | None = None
    after: Id | None = None
    limit: int = Field(default=100, ge=1, le=500)


class CreateUser(Payload):
    username: Username
    display_name: Name
    password: Password
    department_id: Id | None = None
    title: ShortText = ""
    roles: Roles = Field(default_factory=lambda: list[Role](["responder"]))


class UpdateUser(Payload):
    display_name: Name | None = None
    department_id: Id | None = None
    clear_department: bool = False
    title: ShortText | None = None
    roles: Roles | None = None
    disabled: bool | None = None
    password: Password | None = None

    @model_validator(mode="after")
    def _null_means_unchanged(self) -> UpdateUser:
        # A field sent as null is a field left out: "no change", as the service reads None. Without this,
        # model_dump(exclude_unset=True) hands the route an explicit None (`"roles": null` crashed it with a 500).
        kept = {name for name in self.model_fields_set if getattr(self, name) is not None}
        object.__setattr__(self, "__pydantic_fields_set__", kept)
        return self


class DeviceOut(Out):
    id: str
    user_id: str
    name: str
    kind: Literal["console", "mobile"]
    created_at: int
    last_seen_at: int
    revoked_at: int | None
    sso: bool = False


class DeviceList(Out):
    devices: list[DeviceOut]
