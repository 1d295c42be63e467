"""What the workflow services share: storage, audit, rooms, files, notifications, and who is asking."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from rooms.files.service import FileService
from rooms.service import RoomService
from server.audit.service import AuditLog, case_chain
from server.auth.service import Principal
from server.errors import AppError, Conflict, Forbidden, NotFound
from server.ids import now_ms
from server.logging import get_logger
from server.scheduler import Scheduler
from server.settings import WorkflowsSettings
from server.storage.ports import Storage
from server.storage.records import Department, User
from workflows.engine import Refused, Who
from workflows.notify import Notice, Notifier

log = get_logger("muster.workflows")


class UserNotifier(Protocol):
    async def to_user(self, user_id: str, name: str, data: dict[str, Any]) -> None: ...


class ConsoleFeed(Protocol):
    """Tells the commanders' consoles that the figures changed (socket room of the console)."""

    async def changed(self, kind: str, data: dict[str, Any]) -> None: ...


def refusal(exc: Refused) -> AppError:
    """A refused transition as the client sees it: 403 for the wrong person, 409 for the wrong state."""
    if exc.wrong_person:
        return Forbidden(exc.message, code=exc.code)
    return Conflict(exc.message, code=exc.code)


@dataclass
class WorkflowContext:
    storage: Storage
    audit: AuditLog
    rooms: RoomService
    files: FileService
    scheduler: Scheduler
    notify_user: UserNotifier
    notifier: Notifier
    settings: WorkflowsSettings
    console: ConsoleFeed
    clock: Callable[[], int] = now_ms

    # -- who ----------------------------------------------------------------------------------------------------------

    async def departments(self) -> list[Department]:
        return await self.storage.list_departments()

    async def department_named(self, name_or_id: str) -> Department | None:
        """A department by id or by name (settings name offices and responsible departments either way)."""
        if not name_or_id:
            return None
        for department in await self.departments():
            if name_or_id in (department.id, department.name):
                return department
        return None

    async def who(self, principal: Principal) -> Who:
        user = principal.user
        # Both offices are named in settings (by name or id): one read of the department list per request.
        mine = next((d for d in await self.departments() if d.id == user.department_id), None)
        names = {mine.id, mine.name} if mine is not None else set()
        return Who(
            user_id=user.id, roles=frozenset(user.roles), department_id=user.department_id,
            supervision=bool(self.settings.supervision_office) and self.settings.supervision_office in names,
            projects_office=bool(self.settings.projects_office) and self.settings.projects_office in names,
        )

    async def department_leads(self, department_id: str | None) -> list[User]:
        if department_id is None:
            return []
        return [u for u in await self.storage.list_users(department_id=department_id, role="dept_lead", limit=100)
                if not u.disabled]

    async def office_members(self, name_or_id: str) -> list[User]:
        department = await self.department_named(name_or_id)
        if department is None:
            return []
        return [u for u in await self.storage.list_users(department_id=department.id, limit=500) if not u.disabled]

    async def user_name(self, user_id: str | None) -> str:
        if user_id is None:
            return "系统"
        user = await self.storage.get_user(user_id)
        return user.display_name if user else user_id

    async def department_name(self, department_id: str | None) -> str:
        if department_id is None:
            return ""
        for department in await self.departments():
            if department.id == department_id:
                return department.name
        return department_id

    # -- record and tell ----------------------------------------------------------------------------------------------

    async def record(self, case_type: str, case_id: str, actor: Principal | None, action: str, subject_type: str,
                     subject_id: str, details: dict[str, Any]) -> None:
        await self.audit.record(chain=case_chain(case_type, case_id), action=action, subject_type=subject_type,
                                subject_id=subject_id, actor_id=actor.user_id if actor else None,
                                device_id=actor.device_id if actor else None, details=details)

    async def post(self, room_id: str | None, text: str, data: dict[str, Any], actor: Principal | None) -> None:
        """A workflow step as a system message in the case room."""
        if room_id is None:
            return
        try:
            await self.rooms.post_system_message(room_id, text, data, actor=actor)
        except NotFound:
            log.warning("case room is gone; step not posted", room_id=room_id)

    async def tell(self, user_ids: Iterable[str], event: str, data: dict[str, Any]) -> None:
        for user_id in dict.fromkeys(user_ids):
            await self.notify_user.to_user(user_id, event, data)

    async def notice(self, event: str, recipients: Iterable[str], title: str, body: str, data: dict[str, Any]) -> None:
        people = tuple(dict.fromkeys(recipients))
        if not people:
            return
        try:
            await self.notifier.send(Notice(event=event, recipients=people, title=title, body=body, data=data,
                                            at=self.clock()))
        except Exception:
            # Outbound notifications never block the workflow; the notifier keeps its own retries.
            log.exception("could not queue an outbound notification", notice_event=event)

    async def attach_files(self, actor: Principal, file_ids: Iterable[str], *, case_type: str, case_id: str,
                           target_type: str, target_id: str) -> list[dict[str, Any]]:
        """Check the actor may share the files and link them to the case (visible to who may see the case)."""
        described = await self.check_files(actor, file_ids)
        await self.link_files(actor, described, case_type=case_type, case_id=case_id, target_type=target_type,
                              target_id=target_id)
        return described

    async def check_files(self, actor: Principal, file_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Check the actor may share the files (without linking them yet); their descriptions."""
        refs = [{"file_id": f} for f in dict.fromkeys(file_ids)]
        if not refs:
            return []
        return await self.files.attachments(actor, refs)

    async def link_files(self, actor: Principal, described: list[dict[str, Any]], *, case_type: str, case_id: str,
                         target_type: str, target_id: str) -> None:
        """Link checked files to the case, once the record they belong to is stored."""
        if not described:
            return
        await self.files.link([d["file_id"] for d in described], scope_type=f"case:{case_type}", scope_id=case_id,
                              target_type=target_type, target_id=target_id, actor=actor)
