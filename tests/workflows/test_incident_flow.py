"""A whole incident over HTTP and sockets: report, verify, assign, urge, supervise, inspect, export the record."""

from __future__ import annotations

from typing import Any

from server.audit.service import record_hash
from tests.rooms.conftest import until
from tests.workflows.conftest import County

HOUR = 3600


async def test_a_flood_from_report_to_closed_case(county: County) -> None:
    c = county
    commander, reporter = c["commander"], c["reporter"]
    # A responder reports from the field, with coordinates.
    incident = await c.ok("reporter", "POST", "/api/incidents", {
        "title": "东沟水库水位超警戒", "type": "flood", "level": 3, "description": "坝体渗水",
        "address": "东沟村", "latitude": 30.1234567, "longitude": 120.7654321})
    assert incident["state"] == "reported" and incident["room_id"] is None
    assert incident["latitude"] == 30.1234567
    await until(lambda: bool(commander.got("incident.reported")), what="commander told of the report")

    # Verify: the incident room opens with the commander, the reporter and the leads of 水利局 and 应急管理局.
    verified = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/verify", {"level": 2})
    assert verified["state"] == "verified" and verified["level"] == 2
    room_id = verified["room_id"]
    members = await c.ok("commander", "GET", f"/api/rooms/{room_id}/members")
    member_ids = {m["user_id"] for m in members["members"]}
    assert member_ids == {commander.user_id, reporter.user_id, c["water_lead"].user_id,
                          c["emergency_lead"].user_id}
    await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/respond", {})

    # Assign to two departments.
    deadline = c.clock.now + 4 * HOUR * 1000
    water = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/tasks", {
        "title": "大坝巡查", "instructions": "每小时报告渗水情况", "priority": "urgent", "deadline": deadline,
        "department_id": c.departments["水利局"]})
    rescue = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/tasks", {
        "title": "转移下游群众", "priority": "high", "deadline": deadline,
        "assignee_id": c["rescuer"].user_id})
    assert rescue["department_id"] == c.departments["应急管理局"]
    await until(lambda: bool(c["water_lead"].got("task.assigned")), what="the water lead hears of the task")
    await until(lambda: bool(c["rescuer"].got("task.assigned")), what="the rescuer hears of the task")

    # The rescuer accepts at once: that is the acknowledgement, and it stops the automatic chain.
    accepted = await c.ok("rescuer", "POST", f"/api/tasks/{rescue['id']}/accept", {})
    assert accepted["state"] == "accepted" and not accepted["chain_active"]
    detail = await c.ok("commander", "GET", f"/api/tasks/{rescue['id']}")
    assert [(a["user_id"], a["device_id"]) for a in detail["acks"]] == [
        (c["rescuer"].user_id, c["rescuer"].session.device_id)]

    # Nobody at 水利局 answers: an hour before the deadline the first automatic urge fires, then at the deadline.
    c.clock.advance(3 * HOUR + 1)
    await c.run_due()
    task = await c.ok("commander", "GET", f"/api/tasks/{water['id']}")
    assert task["task"]["urge_count"] == 1
    await until(lambda: bool(c["water_lead"].got("task.urged")), what="urge on the lead's devices")
    # The commander urges by hand as well (counted).
    await c.ok("commander", "POST", f"/api/tasks/{water['id']}/urge", {"message": "请立即安排巡查"})
    c.clock.advance(HOUR)
    await c.run_due()
    task = (await c.ok("commander", "GET", f"/api/tasks/{water['id']}"))["task"]
    assert task["urge_count"] == 3
    # Urged three times without an answer: supervised (督办) on the next run, escalated to the office.
    c.clock.advance(1)
    await c.run_due()
    task = (await c.ok("commander", "GET", f"/api/tasks/{water['id']}"))["task"]
    assert task["supervised"] and task["supervise_deadline"] == c.clock.now + 86400 * 1000
    await until(lambda: bool(c["supervisor"].got("task.supervised")), what="the supervision office is told")
    assert c["inspector"].got("task.supervised")

    # The department lead delegates inside the department; the staff member accepts, works and submits.
    delegated = await c.ok("water_lead", "POST", f"/api/tasks/{water['id']}/delegate",
                           {"assignee_id": c["water_staff"].user_id})
    assert delegated["state"] == "assigned" and delegated["assignee_id"] == c["water_staff"].user_id
    await c.ok("water_staff", "POST", f"/api/tasks/{water['id']}/accept", {})
    await c.ok("water_staff", "POST", f"/api/tasks/{water['id']}/start", {})
    submitted = await c.ok("water_staff", "POST", f"/api/tasks/{water['id']}/submit",
                           {"result": "已巡查三次，渗水稳定"})
    assert submitted["state"] == "submitted"
    # The staff member cannot pass their own work; the inspector sends it back, then passes the resubmission.
    status, refused = await c.call("water_staff", "POST", f"/api/tasks/{water['id']}/pass", {})
    assert status == 403 and refused["error"]["code"] == "task.not_allowed"
    back = await c.ok("inspector", "POST", f"/api/tasks/{water['id']}/send_back", {"comment": "缺少照片"})
    assert back["state"] == "sent_back" and back["sent_back_count"] == 1
    await c.ok("water_staff", "POST", f"/api/tasks/{water['id']}/submit", {"result": "补充了照片说明"})
    passed = await c.ok("inspector", "POST", f"/api/tasks/{water['id']}/pass", {"comment": "合格"})
    assert passed["state"] == "passed" and passed["completed_at"]
    status, _ = await c.call("commander", "POST", f"/api/tasks/{water['id']}/urge", {})
    assert status == 409  # a finished task is not urged

    await c.ok("rescuer", "POST", f"/api/tasks/{rescue['id']}/submit", {"result": "已转移 320 人"})
    await c.ok("commander", "POST", f"/api/tasks/{rescue['id']}/pass", {})
    await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/resolve", {"summary": "险情解除"})
    closed = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/close", {})
    assert closed["state"] == "closed"

    # Every step was posted in the incident room.
    events = await c.ok("commander", "GET", f"/api/rooms/{room_id}/events?limit=200")
    steps = [e["body"].get("data", {}).get("workflow") for e in events["events"] if e["kind"] == "system"]
    for step in ("incident.verify", "incident.respond", "task.assign", "task.urge", "task.supervise",
                 "task.delegate", "task.accept", "task.submit", "task.inspect_send_back", "task.inspect_pass",
                 "incident.resolve", "incident.close"):
        assert step in steps, step

    # The disposal record lists every step, each with its audit seq and hash, and the chain verifies.
    record = await c.ok("commander", "GET", f"/api/incidents/{incident['id']}/record")
    assert record["verification"]["ok"] is True
    actions = [e["action"] for e in record["entries"] if e["kind"] in ("workflow", "call")]
    for action in ("incident.report", "incident.verify", "incident.respond", "task.assign", "task.accept",
                   "task.urge", "task.supervise", "task.delegate", "task.start", "task.submit",
                   "task.inspect_send_back", "task.inspect_pass", "incident.resolve", "incident.close"):
        assert action in actions, action
    assert actions.count("task.urge") == 3
    audited = [e for e in record["entries"] if e["audit_hash"]]
    stored = [r async for r in c.muster.kernel.storage.iter_audit_chain(f"case:incident:{incident['id']}")]
    by_seq = {r.seq: r for r in stored}
    for entry in audited:
        original = by_seq[entry["audit_seq"]]
        assert entry["audit_hash"] == original.hash == record_hash(original)
    page = await c.muster.http.get(f"{c.muster.url}/api/incidents/{incident['id']}/record?format=html",
                                   headers=commander.session.headers)
    text = await page.text()
    assert page.status == 200 and page.content_type == "text/html" and "处置记录" in text
    assert "<script" not in text and stored[-1].hash in text


async def test_who_may_act_on_an_incident_and_its_tasks(county: County) -> None:
    c = county
    incident = await c.ok("reporter", "POST", "/api/incidents", {"title": "化工厂泄漏", "type": "chemical"})
    # Only commanders verify; people who may not see the incident are not told it exists.
    for who in ("reporter", "inspector"):
        status, body = await c.call(who, "POST", f"/api/incidents/{incident['id']}/verify", {})
        assert status == 403 and body["error"]["code"] == "incident.not_allowed", who
    status, body = await c.call("water_lead", "POST", f"/api/incidents/{incident['id']}/verify", {})
    assert status == 404 and body["error"]["code"] == "incident.not_found"
    status, _ = await c.call("outsider", "GET", f"/api/incidents/{incident['id']}")
    assert status == 404
    listed = await c.ok("outsider", "GET", "/api/incidents")
    assert listed["incidents"] == []
    # Tasks wait for verification.
    deadline = c.clock.now + 3600_000
    status, body = await c.call("commander", "POST", f"/api/incidents/{incident['id']}/tasks",
                                {"title": "x", "deadline": deadline, "department_id": c.departments["水利局"]})
    assert status == 409 and body["error"]["code"] == "incident.bad_transition"
    await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/verify", {})
    # A lead in the incident room sees the incident but does not assign its tasks.
    status, body = await c.call("emergency_lead", "POST", f"/api/incidents/{incident['id']}/tasks",
                                {"title": "x", "deadline": deadline, "department_id": c.departments["水利局"]})
    assert status == 403 and body["error"]["code"] == "task.not_allowed"
    task = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/tasks", {
        "title": "堵漏", "deadline": deadline, "department_id": c.departments["应急管理局"]})
    # A lead of another department can neither accept, nor delegate, nor see the task.
    for action, body in (("accept", {}), ("delegate", {"assignee_id": c["water_staff"].user_id})):
        status, refused = await c.call("water_lead", "POST", f"/api/tasks/{task['id']}/{action}", body)
        assert status in (403, 404), (action, refused)
    status, _ = await c.call("builder", "GET", f"/api/tasks/{task['id']}")
    assert status == 404
    # The lead of the right department may delegate, but only to their own people.
    status, refused = await c.call("emergency_lead", "POST", f"/api/tasks/{task['id']}/delegate",
                                   {"assignee_id": c["water_staff"].user_id})
    assert status == 400 and refused["error"]["code"] == "task.wrong_department"
    await c.ok("emergency_lead", "POST", f"/api/tasks/{task['id']}/delegate", {"assignee_id": c["rescuer"].user_id})
    # A responder cannot pass their own task, nor urge or cancel it.
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/accept", {})
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/submit", {"result": "完成"})
    for action in ("pass", "send_back", "cancel"):
        status, refused = await c.call("rescuer", "POST", f"/api/tasks/{task['id']}/{action}", {"comment": "x"})
        assert status == 403, (action, refused)
    # Stale versions are refused.
    current = (await c.ok("commander", "GET", f"/api/tasks/{task['id']}"))["task"]
    status, body = await c.call("commander", "POST", f"/api/tasks/{task['id']}/pass",
                                {"version": current["version"] - 1})
    assert status == 409 and body["error"]["code"] == "task.changed"
    assert (await c.ok("commander", "POST", f"/api/tasks/{task['id']}/pass",
                       {"version": current["version"]}))["state"] == "passed"
    # Every refusal above changed nothing in the case record but the steps that succeeded.
    record = await c.ok("commander", "GET", f"/api/incidents/{incident['id']}/record")
    assert record["verification"]["ok"]


def actions_of(record: dict[str, Any]) -> list[str]:
    return [e["action"] for e in record["entries"] if e["kind"] == "workflow"]


async def test_photos_reported_with_an_incident_are_seen_by_whoever_sees_the_case(county: County) -> None:
    from tests.rooms.files_helpers import download, upload

    c = county
    photo = await upload(c.muster, c["reporter"].session, b"\xff\xd8\xff\xe0 fake jpeg", name="现场.jpg")
    incident = await c.ok("reporter", "POST", "/api/incidents",
                          {"title": "桥梁裂缝", "type": "collapse", "attachments": [photo]})
    assert incident["attachments"] == [photo]
    assert (await download(c.muster, c["commander"].session, photo)).status == 200
    assert (await download(c.muster, c["outsider"].session, photo)).status == 403
    # Someone else's file cannot be attached to a report.
    status, body = await c.call("outsider", "POST", "/api/incidents",
                                {"title": "x", "type": "other", "attachments": [photo]})
    assert status == 400 and body["error"]["code"] == "message.bad_attachment"
    # Task results carry files the same way; the inspector, who sees the case, can open them.
    await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/verify", {})
    task = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/tasks", {
        "title": "检测", "deadline": c.clock.now + 86400_000, "assignee_id": c["builder"].user_id})
    report = await upload(c.muster, c["builder"].session, b"%PDF-1.4 fake", name="检测报告.pdf")
    await c.ok("builder", "POST", f"/api/tasks/{task['id']}/accept", {})
    submitted = await c.ok("builder", "POST", f"/api/tasks/{task['id']}/submit",
                           {"result": "见报告", "attachments": [report]})
    assert submitted["result_attachments"] == [report]
    assert (await download(c.muster, c["inspector"].session, report)).status == 200
