"""HTTP routes of the back office (admin) and the read-only directory (everyone signed in)."""

from __future__ import annotations

from typing import Any

from server.http.api import Api, ApiRequest
from server.kernel import KERNEL
from server.org.models import (
    CreateDepartment,
    CreateUser,
    DepartmentList,
    DepartmentOut,
    DeviceList,
    DeviceOut,
    UpdateDepartment,
    UpdateUser,
    UserList,
    UserOut,
    UserQuery,
)
from server.storage.records import Device, User

api = Api()


def user_out(user: User) -> UserOut:
    return UserOut.model_validate(user)


def device_out(device: Device) -> DeviceOut:
    return DeviceOut(
        id=device.id, user_id=device.user_id, name=device.name, kind=device.kind, created_at=device.created_at,
        last_seen_at=device.last_seen_at, revoked_at=device.revoked_at, sso=device.external_session is not None,
    )


@api.route("GET", "/api/departments", summary="The department tree (flat, with parent ids)", tags=["org"],
           response=DepartmentList)
async def list_departments(req: ApiRequest[None, None]) -> DepartmentList:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "org.read")
    return DepartmentList(departments=[DepartmentOut.model_validate(d) for d in await k.org.list_departments()])


@api.route("GET", "/api/users", summary="The user directory", tags=["org"], query=UserQuery, response=UserList)
async def list_users(req: ApiRequest[None, UserQuery]) -> UserList:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "org.read")
    q = req.query
    users = await k.org.list_users(department_id=q.department_id, role=q.role, after=q.after, limit=q.limit)
    return UserList(users=[user_out(u) for u in users],
                    next_after=users[-1].id if len(users) == q.limit else None)


@api.route("GET", "/api/users/{user_id}", summary="One user of the directory", tags=["org"], response=UserOut)
async def get_user(req: ApiRequest[None, None]) -> UserOut:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "org.read")
    return user_out(await k.org.get_user(req.path["user_id"]))


@api.route("POST", "/api/admin/departments", summary="Create a department", tags=["admin"],
           body=CreateDepartment, response=DepartmentOut, status=201, errors=[404])
async def create_department(req: ApiRequest[CreateDepartment, None]) -> DepartmentOut:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "org.manage", subject_type="department", subject_id="new")
    b = req.body
    department = await k.org.create_department(req.principal, name=b.name, kind=b.kind, parent_id=b.parent_id)
    return DepartmentOut.model_validate(department)


@api.route("PATCH", "/api/admin/departments/{department_id}", summary="Rename or move a department",
           tags=["admin"], body=UpdateDepartment, response=DepartmentOut)
async def update_department(req: ApiRequest[UpdateDepartment, None]) -> DepartmentOut:
    k = req.app[KERNEL]
    dept_id = req.path["department_id"]
    await k.permissions.require(req.principal, "org.manage", subject_type="department", subject_id=dept_id)
    b = req.body
    department = await k.org.update_department(req.principal, dept_id, name=b.name, parent_id=b.parent_id,
                                               make_root=b.make_root)
    return DepartmentOut.model_validate(department)


@api.route("DELETE", "/api/admin/departments/{department_id}", summary="Delete an empty department",
           tags=["admin"], errors=[409])
async def delete_department(req: ApiRequest[None, None]) -> None:
    k = req.app[KERNEL]
    dept_id = req.path["department_id"]
    await k.permissions.require(req.principal, "org.manage", subject_type="department", subject_id=dept_id)
    await k.org.delete_department(req.principal, dept_id)


@api.route("GET", "/api/admin/users", summary="Users with their account state", tags=["admin"],
           query=UserQuery, response=UserList)
async def admin_list_users(req: ApiRequest[None, UserQuery]) -> UserList:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "org.manage", subject_type="user", subject_id="*")
    q = req.query
    users = await k.org.list_users(department_id=q.department_id, role=q.role, after=q.after, limit=q.limit)
    return UserList(users=[user_out(u) for u in users],
                    next_after=users[-1].id if len(users) == q.limit else None)


@api.route("POST", "/api/admin/users", summary="Create a user", tags=["admin"], body=CreateUser,
           response=UserOut, status=201, errors=[404, 409])
async def create_user(req: ApiRequest[CreateUser, None]) -> UserOut:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "org.manage", subject_type="user", subject_id="new")
    b = req.body
    user = await k.org.create_user(req.principal, username=b.username, display_name=b.display_name,
                                   password=b.password, department_id=b.department_id, title=b.title,
                                   roles=list(b.roles))
    return user_out(user)


@api.route("PATCH", "/api/admin/users/{user_id}", summary="Change a user: name, department, roles, "
           "disabled flag, password", tags=["admin"], body=UpdateUser, response=UserOut)
async def update_user(req: ApiRequest[UpdateUser, None]) -> UserOut:
    k = req.app[KERNEL]
    user_id = req.path["user_id"]
    await k.permissions.require(req.principal, "org.manage", subject_type="user", subject_id=user_id)
    changes: dict[str, Any] = req.body.model_dump(exclude_unset=True)
    if changes.get("roles") is not None:
        changes["roles"] = list(changes["roles"])
    user = await k.org.update_user(req.principal, user_id, **changes)
    return user_out(user)


@api.route("GET", "/api/admin/users/{user_id}/devices", summary="A user's devices", tags=["admin"],
           response=DeviceList)
async def admin_list_devices(req: ApiRequest[None, None]) -> DeviceList:
    k = req.app[KERNEL]
    user_id = req.path["user_id"]
    await k.permissions.require(req.principal, "org.manage", subject_type="user", subject_id=user_id)
    user = await k.org.get_user(user_id)
    return DeviceList(devices=[device_out(d) for d in await k.auth.list_devices(user.id)])


@api.route("DELETE", "/api/admin/devices/{device_id}", summary="Sign any device out (its sockets close at once)",
           tags=["admin"])
async def admin_revoke_device(req: ApiRequest[None, None]) -> None:
    k = req.app[KERNEL]
    device_id = req.path["device_id"]
    await k.permissions.require(req.principal, "org.manage", subject_type="device", subject_id=device_id)
    device = await k.auth.get_device_of(None, device_id)
    await k.auth.revoke_device(device, actor_id=req.principal.user_id, actor_device_id=req.principal.device_id,
                               reason="admin")
