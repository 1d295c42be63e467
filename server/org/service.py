"""Rules of the back office: the department tree, users and their accounts. All audited on the admin chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from server.audit.service import ADMIN_CHAIN, AuditLog
from server.auth.service import AuthService, Principal
from server.errors import BadRequest, Conflict, NotFound
from server.ids import new_id, now_ms
from server.storage.ports import Storage, StorageConflict
from server.storage.records import ROLES, Department, DepartmentKind, User

# Which kind of department may sit under which (None: the top of the tree).
ALLOWED_PARENTS: dict[str, set[str | None]] = {
    "county": {None},
    "department": {"county", "department"},
    "team": {"department", "team"},
}


# Called after a user is created (before is None) or changed.
UserChanged = Callable[[User | None, User], Awaitable[None]]


class OrgService:
    def __init__(self, *, storage: Storage, audit: AuditLog, auth: AuthService) -> None:
        self._storage = storage
        self._audit = audit
        self._auth = auth
        self._user_hooks: list[UserChanged] = []

    def on_user_changed(self, hook: UserChanged) -> None:
        """Domains follow accounts here (department rooms follow their department's people)."""
        self._user_hooks.append(hook)

    async def _user_changed(self, before: User | None, after: User) -> None:
        for hook in self._user_hooks:
            await hook(before, after)

    async def _record(self, actor: Principal | None, action: str, subject_type: str, subject_id: str,
                      details: dict[str, Any]) -> None:
        await self._audit.record(
            chain=ADMIN_CHAIN, action=action, subject_type=subject_type, subject_id=subject_id,
            actor_id=actor.user_id if actor else None, device_id=actor.device_id if actor else None,
            details=details if actor else {**details, "via": "cli"},
        )

    # -- departments -----------------------------------------------------------------

    async def list_departments(self) -> list[Department]:
        return await self._storage.list_departments()

    async def get_department(self, department_id: str) -> Department:
        department = await self._storage.get_department(department_id)
        if department is None:
            raise NotFound("no such department", code="department.not_found")
        return department

    async def _check_parent(self, kind: str, parent_id: str | None, *, moving: str | None = None) -> None:
        parent = await self.get_department(parent_id) if parent_id else None
        if (parent.kind if parent else None) not in ALLOWED_PARENTS[kind]:
            where = f"under a {parent.kind}" if parent else "at the top of the tree"
            raise BadRequest(f"a {kind} cannot be placed {where}", code="department.bad_parent")
        # Walk up from the new parent: finding the moved department there would make a loop.
        seen: set[str] = set()
        while parent is not None and moving is not None:
            if parent.id == moving:
                raise BadRequest("a department cannot be placed under itself", code="department.cycle")
            if parent.id in seen or parent.parent_id is None:
                break
            seen.add(parent.id)
            parent = await self._storage.get_department(parent.parent_id)

    async def create_department(
        self, actor: Principal | None, *, name: str, kind: DepartmentKind, parent_id: str | None
    ) -> Department:
        await self._check_parent(kind, parent_id)
        now = now_ms()
        department = Department(id=new_id(), name=name, kind=kind, parent_id=parent_id, created_at=now,
                                updated_at=now)
        await self._storage.create_department(department)
        await self._record(actor, "department.create", "department", department.id,
                           {"name": name, "kind": kind, "parent_id": parent_id})
        return department

    async def update_department(
        self, actor: Principal | None, department_id: str, *, name: str | None, parent_id: str | None,
        make_root: bool,
    ) -> Department:
        department = await self.get_department(department_id)
        new_parent = None if make_root else (parent_id if parent_id is not None else department.parent_id)
        if new_parent != department.parent_id:
            await self._check_parent(department.kind, new_parent, moving=department.id)
        updated = replace(department, name=name if name is not None else department.name, parent_id=new_parent,
                          updated_at=now_ms())
        await self._storage.update_department(updated)
        changes = {k: v for k, v in (("name", name), ("parent_id", new_parent)) if v != getattr(department, k)}
        await self._record(actor, "department.update", "department", department.id, {"changes": changes})
        return updated

    async def delete_department(self, actor: Principal | None, department_id: str) -> None:
        department = await self.get_department(department_id)
        if any(d.parent_id == department_id for d in await self._storage.list_departments()):
            raise Conflict("the department still has sub-departments", code="department.not_empty")
        if await self._storage.list_users(department_id=department_id, limit=1):
            raise Conflict("the department still has users", code="department.not_empty")
        await self._storage.delete_department(department_id)
        await self._record(actor, "department.delete", "department", department_id, {"name": department.name})

    # -- users -------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        user = await self._storage.get_user(user_id)
        if user is None:
            raise NotFound("no such user", code="user.not_found")
        return user

    async def list_users(
        self, *, department_id: str | None = None, role: str | None = None, after: str | None = None,
        limit: int = 100,
    ) -> list[User]:
        return await self._storage.list_users(department_id=department_id, role=role, after_id=after, limit=limit)

    async def create_user(
        self,
        actor: Principal | None,
        *,
        username: str,
        display_name: str,
        password: str,
        department_id: str | None = None,
        title: str = "",
        roles: list[str] | tuple[str, ...] = ("responder",),
    ) -> User:
        roles = _clean_roles(roles)
        if department_id is not None:
            await self.get_department(department_id)
        password_hash = await self._auth.hash_new_password(password)
        now = now_ms()
        user = User(id=new_id(), username=username, display_name=display_name, department_id=department_id,
                    title=title, roles=roles, disabled=False, password_hash=password_hash, created_at=now,
                    updated_at=now)
        try:
            await self._storage.create_user(user)
        except StorageConflict:
            raise Conflict(f"username {username!r} is taken", code="user.username_taken") from None
        await self._record(actor, "user.create", "user", user.id, {
            "username": username, "display_name": display_name, "department_id": department_id,
            "title": title, "roles": list(roles),
        })
        await self._user_changed(None, user)
        return user

    async def update_user(
        self,
        actor: Principal | None,
        user_id: str,
        *,
        display_name: str | None = None,
        department_id: str | None = None,
        clear_department: bool = False,
        title: str | None = None,
        roles: list[str] | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> User:
        user = await self.get_user(user_id)
        locks_out = disabled or (roles is not None and "admin" not in roles)
        if actor is not None and actor.user_id == user_id and locks_out:
            raise BadRequest("you cannot disable yourself or remove your own admin role", code="user.self_lockout")
        if department_id is not None:
            await self.get_department(department_id)
        new_hash = await self._auth.hash_new_password(password) if password is not None else None
        new_department = None if clear_department else (department_id or user.department_id)
        updated = replace(
            user,
            display_name=display_name if display_name is not None else user.display_name,
            department_id=new_department,
            title=title if title is not None else user.title,
            roles=_clean_roles(roles) if roles is not None else user.roles,
            disabled=disabled if disabled is not None else user.disabled,
            password_hash=new_hash or user.password_hash,
            updated_at=now_ms(),
        )
        changes = {
            name: list(new) if isinstance(new, tuple) else new
            for name in ("display_name", "department_id", "title", "roles", "disabled")
            if (new := getattr(updated, name)) != getattr(user, name)
        }
        if new_hash is not None:
            changes["password"] = "changed"  # noqa: S105 (a note in the audit record, never the password)
        if changes:
            await self._storage.update_user(updated)
        await self._record(actor, "user.update", "user", user_id, {"changes": changes})
        if updated.disabled and not user.disabled:
            # A disabled account is signed out everywhere at once.
            for device in await self._storage.list_devices(user_id):
                if not device.revoked:
                    await self._auth.revoke_device(device, actor_id=actor.user_id if actor else None,
                                                   actor_device_id=actor.device_id if actor else None,
                                                   reason="account_disabled")
        if changes:
            await self._user_changed(user, updated)
        return updated


def _clean_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise BadRequest(f"unknown roles: {', '.join(unknown)}", code="user.bad_role")
    return tuple(dict.fromkeys(roles))
