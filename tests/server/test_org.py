"""The back office: the department tree, users, roles, disabling, and the directory."""

from __future__ import annotations

from typing import Any

from tests.factories import Muster, Session


async def make_dept(muster: Muster, admin: Session, name: str, kind: str, parent: str | None = None) -> dict[str, Any]:
    status, body = await muster.request("POST", "/api/admin/departments", admin,
                                        json={"name": name, "kind": kind, "parent_id": parent})
    assert status == 201, body
    return body


async def test_department_tree_rules(muster: Muster) -> None:
    admin = await muster.session("admin")
    county = await make_dept(muster, admin, "示范县", "county")
    water = await make_dept(muster, admin, "水利局", "department", county["id"])
    team = await make_dept(muster, admin, "抢险队", "team", water["id"])
    # a team cannot sit under a county, a county cannot sit under anything
    for body in ({"name": "x", "kind": "team", "parent_id": county["id"]},
                 {"name": "x", "kind": "county", "parent_id": county["id"]},
                 {"name": "x", "kind": "department"}):
        status, err = await muster.request("POST", "/api/admin/departments", admin, json=body)
        assert status == 400 and err["error"]["code"] == "department.bad_parent"
    status, err = await muster.request("POST", "/api/admin/departments", admin,
                                       json={"name": "x", "kind": "department", "parent_id": "missing"})
    assert status == 404
    # no loops: a department cannot move under its own team's parent chain
    sub = await make_dept(muster, admin, "科室", "department", water["id"])
    status, err = await muster.request("PATCH", f"/api/admin/departments/{water['id']}", admin,
                                       json={"parent_id": sub["id"]})
    assert status == 400 and err["error"]["code"] == "department.cycle"
    status, moved = await muster.request("PATCH", f"/api/admin/departments/{team['id']}", admin,
                                         json={"parent_id": sub["id"], "name": "防汛抢险队"})
    assert status == 200 and moved["parent_id"] == sub["id"] and moved["name"] == "防汛抢险队"
    # deleting refuses non-empty departments
    status, err = await muster.request("DELETE", f"/api/admin/departments/{sub['id']}", admin)
    assert status == 409 and err["error"]["code"] == "department.not_empty"
    assert (await muster.request("DELETE", f"/api/admin/departments/{team['id']}", admin))[0] == 204
    assert (await muster.request("DELETE", f"/api/admin/departments/{sub['id']}", admin))[0] == 204
    status, tree = await muster.request("GET", "/api/departments", admin)
    assert [d["name"] for d in tree["departments"]] == ["示范县", "水利局"]


async def test_department_with_users_cannot_be_deleted(muster: Muster) -> None:
    admin = await muster.session("admin")
    county = await make_dept(muster, admin, "示范县", "county")
    await muster.create_user(department_id=county["id"])
    status, err = await muster.request("DELETE", f"/api/admin/departments/{county['id']}", admin)
    assert status == 409


async def test_user_lifecycle(muster: Muster) -> None:
    admin = await muster.session("admin")
    county = await make_dept(muster, admin, "示范县", "county")
    status, user = await muster.request("POST", "/api/admin/users", admin, json={
        "username": "li.qiang", "display_name": "李强", "password": "first-password", "department_id": county["id"],
        "title": "局长", "roles": ["dept_lead", "commander"]})
    assert status == 201 and user["roles"] == ["dept_lead", "commander"] and "password" not in user
    status, err = await muster.request("POST", "/api/admin/users", admin, json={
        "username": "li.qiang", "display_name": "x", "password": "first-password"})
    assert status == 409 and err["error"]["code"] == "user.username_taken"
    lead = await muster.login("li.qiang", "first-password")
    status, changed = await muster.request("PATCH", f"/api/admin/users/{user['id']}", admin, json={
        "title": "副局长", "password": "second-password", "clear_department": True})
    assert status == 200 and changed["title"] == "副局长" and changed["department_id"] is None
    await muster.login("li.qiang", "second-password")
    # disabling signs every device out at once
    status, _ = await muster.request("PATCH", f"/api/admin/users/{user['id']}", admin, json={"disabled": True})
    assert status == 200
    assert (await muster.request("GET", "/api/me", lead))[0] == 401
    status, devices = await muster.request("GET", f"/api/admin/users/{user['id']}/devices", admin)
    assert status == 200 and all(d["revoked_at"] for d in devices["devices"]) and len(devices["devices"]) == 2


async def test_admin_cannot_lock_themselves_out(muster: Muster) -> None:
    admin = await muster.session("admin")
    for change in ({"disabled": True}, {"roles": ["commander"]}):
        status, err = await muster.request("PATCH", f"/api/admin/users/{admin.user_id}", admin, json=change)
        assert status == 400 and err["error"]["code"] == "user.self_lockout"


async def test_weak_password_refused(muster: Muster) -> None:
    admin = await muster.session("admin")
    status, err = await muster.request("POST", "/api/admin/users", admin, json={
        "username": "weak", "display_name": "x", "password": "short"})
    assert status == 400 and err["error"]["code"] == "auth.weak_password"
    assert await muster.kernel.storage.get_user_by_username("weak") is None


async def test_directory_filters_and_pages(muster: Muster) -> None:
    responder = await muster.session("responder")
    for _ in range(3):
        await muster.create_user(roles=["dept_lead"])
    status, leads = await muster.request("GET", "/api/users?role=dept_lead", responder)
    assert status == 200 and len(leads["users"]) == 3
    status, page = await muster.request("GET", "/api/users?limit=2", responder)
    assert len(page["users"]) == 2 and page["next_after"]
    status, rest = await muster.request("GET", f"/api/users?after={page['next_after']}", responder)
    assert len(page["users"]) + len(rest["users"]) == 4
    status, one = await muster.request("GET", f"/api/users/{page['users'][0]['id']}", responder)
    assert status == 200 and one["id"] == page["users"][0]["id"]
    assert (await muster.request("GET", "/api/users/nobody", responder))[0] == 404


async def test_admin_revokes_any_device(muster: Muster) -> None:
    admin = await muster.session("admin")
    target = await muster.session("responder")
    client = await muster.socket(target.access_token)
    ended: list[dict[str, Any]] = []
    client.on("session.ended", lambda data: ended.append(data))
    assert (await muster.request("DELETE", f"/api/admin/devices/{target.device_id}", admin))[0] == 204
    await client.wait()  # returns once the server has closed the connection
    assert not client.connected
    assert ended == [{"reason": "device_revoked"}]
    assert (await muster.request("DELETE", "/api/admin/devices/unknown", admin))[0] == 404
