"""A small county for workflow tests: departments, people in every role, signed in with sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server.app import SCHEDULER
from server.ids import now_ms
from tests.factories import Muster, make_settings, running_muster
from tests.rooms.conftest import Client, connect
from workflows.views import INCIDENTS


class Clock:
    """A clock the test moves by hand; Muster's workflows and scheduler read it."""

    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@dataclass
class County:
    muster: Muster
    clock: Clock
    departments: dict[str, str]
    people: dict[str, Client] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Client:
        return self.people[name]

    async def call(self, who: str, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        if body is not None:
            kw["json"] = body
        return await self.muster.request(method, path, self.people[who].session, **kw)

    async def ok(self, who: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = await self.call(who, method, path, body, **kw)
        assert 200 <= status < 300, (who, method, path, status, data)
        return data

    async def run_due(self) -> int:
        return await self.muster.app[SCHEDULER].run_due()


PEOPLE = [
    # name, department, roles
    ("commander", "县应急指挥中心", ["commander"]),
    ("water_lead", "水利局", ["dept_lead"]),
    ("water_staff", "水利局", ["responder"]),
    ("emergency_lead", "应急管理局", ["dept_lead"]),
    ("rescuer", "应急管理局", ["responder"]),
    ("housing_lead", "住房和城乡建设局", ["dept_lead"]),
    ("builder", "住房和城乡建设局", ["responder"]),
    ("inspector", "督查室", ["inspector"]),
    ("supervisor", "督查室", ["responder"]),
    ("pmo", "重大项目办公室", ["responder"]),
    ("reporter", "综合应急救援队", ["responder"]),
    ("outsider", "县应急指挥中心", ["responder"]),
]
DEPARTMENTS = ["县应急指挥中心", "水利局", "应急管理局", "住房和城乡建设局", "督查室", "重大项目办公室",
               "综合应急救援队"]


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[County]:
    settings = make_settings(tmp_path, gateway={"events_per_second": 10_000.0, "event_burst": 10_000},
                             workflows={"urge_before": [3600], "overdue_urge_interval": 1800,
                                        "supervise_grace": 7200, "supervise_after_urges": 3,
                                        "supervise_extension": 86400})
    clock = Clock()
    async with running_muster(settings) as muster:
        # The test drives the scheduler (run_due) on its own clock: no background loop races it.
        await muster.app[SCHEDULER].stop()
        muster.app[SCHEDULER].clock = clock
        muster.app[INCIDENTS].ctx.clock = clock
        org = muster.kernel.org
        root = await org.create_department(None, name="示范县", kind="county", parent_id=None)
        departments = {}
        for name in DEPARTMENTS:
            departments[name] = (await org.create_department(None, name=name, kind="department",
                                                             parent_id=root.id)).id
        c = County(muster=muster, clock=clock, departments=departments)
        for name, department, roles in PEOPLE:
            user = await muster.create_user(username=name, roles=roles, department_id=departments[department],
                                            display_name=name)
            session = await muster.login(user["username"], device_kind="mobile" if "staff" in name else "console")
            client = await connect(muster, session)
            for event in ("task.assigned", "task.urged", "task.supervised", "task.changed", "incident.reported",
                          "incident.changed", "dashboard"):
                client.sio.on(event, _recorder(client.got(event)))
            c.people[name] = client
        yield c


def _recorder(into: list[Any]) -> Any:
    def record(data: Any = None) -> None:
        into.append(data)

    return record
