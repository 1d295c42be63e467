"""Demo data: a small county with one user per role, created when the database is empty."""

from __future__ import annotations

from dataclasses import dataclass

from server.org.service import OrgService
from server.storage.ports import Storage


@dataclass(frozen=True, slots=True)
class DemoLogin:
    username: str
    display_name: str
    role: str
    department: str


async def seed_demo(storage: Storage, org: OrgService, *, password: str) -> list[DemoLogin] | None:
    """Create the demo county and its users; None when the database already has users."""
    if await storage.count_users() > 0:
        return None
    county = await org.create_department(None, name="示范县", kind="county", parent_id=None)
    command = await org.create_department(None, name="县应急指挥中心", kind="department", parent_id=county.id)
    emergency = await org.create_department(None, name="应急管理局", kind="department", parent_id=county.id)
    water = await org.create_department(None, name="水利局", kind="department", parent_id=county.id)
    await org.create_department(None, name="住房和城乡建设局", kind="department", parent_id=county.id)
    await org.create_department(None, name="重大项目办公室", kind="department", parent_id=county.id)
    supervision = await org.create_department(None, name="督查室", kind="department", parent_id=county.id)
    rescue = await org.create_department(None, name="综合应急救援队", kind="team", parent_id=emergency.id)
    people = [
        ("admin", "系统管理员", "admin", command.id, "管理员"),
        ("commander", "张伟", "commander", command.id, "指挥长"),
        ("lead", "李强", "dept_lead", water.id, "局长"),
        ("responder", "王磊", "responder", rescue.id, "队员"),
        ("inspector", "赵敏", "inspector", supervision.id, "督查员"),
    ]
    names = {d.id: d.name for d in await storage.list_departments()}
    logins = []
    for username, display_name, role, department_id, title in people:
        await org.create_user(None, username=username, display_name=display_name, password=password,
                              department_id=department_id, title=title, roles=[role])
        logins.append(DemoLogin(username, display_name, role, names[department_id]))
    return logins
