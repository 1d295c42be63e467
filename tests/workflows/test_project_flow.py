"""A major project through its four phases, with progress reports and a problem turned into a task."""

from __future__ import annotations

from tests.rooms.files_helpers import upload
from tests.workflows.conftest import County

DAY = 86400 * 1000


async def test_a_bridge_project_through_its_phases(county: County) -> None:
    c = county
    housing, water = c.departments["住房和城乡建设局"], c.departments["水利局"]
    status, refused = await c.call("builder", "POST", "/api/projects", {
        "code": "XM-2026-001", "name": "城东大桥", "owner_department_id": housing})
    assert status == 403 and refused["error"]["code"] == "project.not_allowed"
    project = await c.ok("pmo", "POST", "/api/projects", {
        "code": "XM-2026-001", "name": "城东大桥", "owner_department_id": housing,
        "responsible_department_ids": [water], "investment": 12800.5, "address": "城东",
        "planned": {"start": c.clock.now + DAY, "completion": c.clock.now + 300 * DAY}})
    assert project["phase"] == "planning" and project["room_id"] and project["investment"] == 12800.5
    status, _ = await c.call("pmo", "POST", "/api/projects", {
        "code": "XM-2026-001", "name": "重复", "owner_department_id": housing})
    assert status == 409
    members = {m["user_id"] for m in (await c.ok("pmo", "GET", f"/api/rooms/{project['room_id']}/members"))["members"]}
    assert {c["housing_lead"].user_id, c["water_lead"].user_id, c["pmo"].user_id} <= members

    # Responsible units report progress with a photo; outsiders see nothing.
    photo = await upload(c.muster, c["builder"].session, b"\x89PNG fake photo bytes", name="工地.png")
    await c.ok("housing_lead", "POST", f"/api/projects/{project['id']}/start", {})
    report = await c.ok("builder", "POST", f"/api/projects/{project['id']}/progress",
                        {"percent": 15, "text": "桩基完成", "attachments": [photo]})
    assert report["attachments"] == [photo]
    # Files of a project report are visible to whoever may see the project (the projects office).
    got = await c.muster.http.get(f"{c.muster.url}/api/files/{photo}/content", headers=c["pmo"].session.headers)
    assert got.status == 200
    status, _ = await c.call("rescuer", "GET", f"/api/projects/{project['id']}")
    assert status == 404
    got = await c.muster.http.get(f"{c.muster.url}/api/files/{photo}/content", headers=c["rescuer"].session.headers)
    assert got.status == 403
    status, _ = await c.call("water_staff", "POST", f"/api/projects/{project['id']}/build", {})
    assert status == 403  # a responsible unit reports, it does not move phases

    # A problem becomes a task in the same loop; passing the task resolves the problem.
    problem = await c.ok("water_staff", "POST", f"/api/projects/{project['id']}/problems",
                         {"title": "施工占用河道", "description": "需要水利局审批"})
    status, _ = await c.call("water_staff", "POST", f"/api/problems/{problem['id']}/task",
                             {"deadline": c.clock.now + DAY, "department_id": water})
    assert status == 403
    made = await c.ok("pmo", "POST", f"/api/problems/{problem['id']}/task",
                      {"deadline": c.clock.now + DAY, "department_id": water, "instructions": "三日内完成审批"})
    task = made["task"]
    assert made["problem"]["state"] == "tasked" and task["case_type"] == "project"
    await c.ok("water_lead", "POST", f"/api/tasks/{task['id']}/accept", {})
    await c.ok("water_lead", "POST", f"/api/tasks/{task['id']}/submit", {"result": "审批已完成"})
    status, _ = await c.call("water_lead", "POST", f"/api/tasks/{task['id']}/pass", {})
    assert status == 403  # the lead did the work
    await c.ok("inspector", "POST", f"/api/tasks/{task['id']}/pass", {})

    for action in ("build", "complete", "operate"):
        await c.ok("pmo", "POST", f"/api/projects/{project['id']}/{action}", {})
    detail = await c.ok("commander", "GET", f"/api/projects/{project['id']}")
    assert detail["project"]["phase"] == "operation" and detail["project"]["progress"] == 15
    assert set(detail["project"]["actual"]) == {"start", "construction", "completion", "operation"}
    assert [p["state"] for p in detail["problems"]] == ["resolved"]
    assert [t["state"] for t in detail["tasks"]] == ["passed"]
    status, body = await c.call("pmo", "POST", f"/api/projects/{project['id']}/operate", {})
    assert status == 409 and body["error"]["code"] == "project.bad_transition"

    record = await c.ok("commander", "GET", f"/api/projects/{project['id']}/record")
    assert record["verification"]["ok"]
    actions = [e["action"] for e in record["entries"] if e["kind"] == "workflow"]
    for action in ("project.create", "project.advance", "project.progress", "project.problem", "problem.task",
                   "task.assign", "task.accept", "task.submit", "task.inspect_pass", "problem.resolve"):
        assert action in actions, action
    assert actions.count("project.advance") == 4
    dashboard = await c.ok("pmo", "GET", "/api/dashboard")
    assert dashboard["figures"]
    status, _ = await c.call("builder", "GET", "/api/dashboard")
    assert status == 403
