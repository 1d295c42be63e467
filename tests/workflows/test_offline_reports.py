"""Progress reports on tasks (反馈进展), and the three reports an offline phone may send twice, idempotent on
`client_id`: incident reports, task progress and project progress."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.rooms.conftest import until
from tests.rooms.files_helpers import upload
from tests.workflows.conftest import County

HOUR = 3600 * 1000
DAY = 24 * HOUR


async def _incident_with_task(c: County, *, assignee: str = "rescuer") -> tuple[dict[str, Any], dict[str, Any]]:
    incident = await c.ok("reporter", "POST", "/api/incidents", {"title": "山体滑坡", "type": "geological"})
    incident = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/verify", {})
    task = await c.ok("commander", "POST", f"/api/incidents/{incident['id']}/tasks", {
        "title": "转移群众", "deadline": c.clock.now + 4 * HOUR, "assignee_id": c[assignee].user_id})
    return incident, task


async def _audit(c: County, case: str, action: str) -> list[Any]:
    return await c.muster.kernel.storage.list_audit_records(chain=case, action=action)


async def _room_steps(c: County, room_id: str, workflow: str) -> list[dict[str, Any]]:
    events = await c.ok("commander", "GET", f"/api/rooms/{room_id}/events?limit=200")
    return [e for e in events["events"]
            if e["kind"] == "system" and e["body"].get("data", {}).get("workflow") == workflow]


async def test_task_progress_is_reported_recorded_and_told(county: County) -> None:
    c = county
    incident, task = await _incident_with_task(c)
    url = f"/api/tasks/{task['id']}/progress"
    chain = f"case:incident:{incident['id']}"

    # Not before the task is accepted (the same answer for everyone); never by the wrong person.
    status, body = await c.call("rescuer", "POST", url, {"text": "出发"})
    assert status == 409 and body["error"]["code"] == "task.bad_transition"
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/accept", {})
    status, body = await c.call("reporter", "POST", url, {"text": "我来"})  # sees the incident, not the task's
    assert status == 403 and body["error"]["code"] == "task.not_allowed"
    status, body = await c.call("builder", "POST", url, {"text": "我来"})  # may not even see it
    assert status == 404
    for bad in ({}, {"text": ""}, {"text": "ok", "percent": 101}, {"text": "ok", "percent": -1},
                {"text": "ok", "client_id": "有中文"}, {"text": "ok", "client_id": "x" * 65},
                {"text": "ok", "version": 1}):
        status, body = await c.call("rescuer", "POST", url, bad)
        assert status == 400, bad
    status, body = await c.call("rescuer", "POST", url, {"text": "   "})
    assert status == 400 and body["error"]["code"] == "task.text_required"

    # The assignee reports, with a photo: the state, the version and the chain stay as they are.
    photo = await upload(c.muster, c["rescuer"].session, b"\x89PNG photo of the road", name="现场.png")
    before = (await c.ok("commander", "GET", f"/api/tasks/{task['id']}"))["task"]
    told = len(c["commander"].got("task.changed"))
    first = await c.ok("rescuer", "POST", url, {"text": "已转移 120 人", "percent": 40, "attachments": [photo],
                                                "client_id": "q-1"})
    assert first["duplicate"] is False
    assert first["progress"]["text"] == "已转移 120 人" and first["progress"]["percent"] == 40
    assert first["progress"]["attachments"] == [photo] and first["progress"]["client_id"] == "q-1"
    assert first["progress"]["reporter_id"] == c["rescuer"].user_id
    assert first["task"]["state"] == "accepted"
    for field in ("version", "chain_active", "updated_at", "urge_count"):
        assert first["task"][field] == before[field], field
    await until(lambda: len(c["commander"].got("task.changed")) > told, what="the assigner is told")
    # Audited in the case chain, posted in the room; the photo is visible to whoever sees the case.
    [record] = await _audit(c, chain, "task.progress")
    assert record.subject_id == task["id"]
    assert (record.details["text"], record.details["percent"], record.details["attachments"]) == (
        "已转移 120 人", 40, [photo])
    [step] = await _room_steps(c, incident["room_id"], "task.progress")
    assert step["body"]["text"] == "rescuer 反馈进展「转移群众」（40%）：已转移 120 人"
    got = await c.muster.http.get(f"{c.muster.url}/api/files/{photo}/content",
                                  headers=c["commander"].session.headers)
    assert got.status == 200
    timeline = await c.ok("commander", "GET", f"/api/incidents/{incident['id']}/timeline")
    assert any(e["action"] == "task.progress" and "反馈了任务「转移群众」的进展（40%）" in e["summary"]
               for e in timeline["entries"]), timeline

    # A started task, and one sent back, take reports too; the lead of the department may report.
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/start", {})
    await c.ok("emergency_lead", "POST", url, {"text": "增派两台车"})
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/submit", {"result": "全部转移"})
    status, body = await c.call("rescuer", "POST", url, {"text": "补充"})
    assert status == 409 and body["error"]["code"] == "task.bad_transition"
    await c.ok("commander", "POST", f"/api/tasks/{task['id']}/send_back", {"comment": "缺名单"})
    reported = await c.ok("rescuer", "POST", url, {"text": "名单整理中", "percent": 90})
    assert reported["task"]["state"] == "sent_back" and reported["task"]["chain_active"]
    assert reported["progress"]["client_id"] is None

    detail = await c.ok("commander", "GET", f"/api/tasks/{task['id']}")
    assert [p["text"] for p in detail["progress"]] == ["名单整理中", "增派两台车", "已转移 120 人"]
    assert "progress" in detail["task"]["actions"] or detail["task"]["state"] == "sent_back"
    mine = await c.ok("rescuer", "GET", f"/api/tasks/{task['id']}")
    assert "progress" in mine["task"]["actions"]


async def test_task_progress_sent_twice_is_recorded_once(county: County) -> None:
    c = county
    incident, task = await _incident_with_task(c)
    other_incident, other_task = await _incident_with_task(c)
    for t in (task, other_task):
        await c.ok("rescuer", "POST", f"/api/tasks/{t['id']}/accept", {})
    url = f"/api/tasks/{task['id']}/progress"
    chain = f"case:incident:{incident['id']}"
    commander = c["commander"]
    told = len(commander.got("task.changed"))

    first = await c.ok("rescuer", "POST", url, {"text": "到达现场", "percent": 10, "client_id": "phone-1:7"})
    again = await c.ok("rescuer", "POST", url, {"text": "到达现场", "percent": 10, "client_id": "phone-1:7"})
    assert again["duplicate"] is True and first["duplicate"] is False
    assert again["progress"] == first["progress"]
    # A resend that differs is still the same report: the first one wins.
    changed = await c.ok("rescuer", "POST", url, {"text": "改过的", "client_id": "phone-1:7"})
    assert changed["duplicate"] is True and changed["progress"] == first["progress"]
    # The same client id on another task is a client's mistake, not a resend.
    status, body = await c.call("rescuer", "POST", f"/api/tasks/{other_task['id']}/progress",
                                {"text": "到达现场", "client_id": "phone-1:7"})
    assert status == 409 and body["error"]["code"] == "task.client_id_reused"
    # Another person's client id is their own.
    lead = await c.ok("emergency_lead", "POST", url, {"text": "已调度", "client_id": "phone-1:7"})
    assert lead["duplicate"] is False and lead["progress"]["id"] != first["progress"]["id"]

    # Two sends of one report racing: one stores it, the other answers with it.
    race = await asyncio.gather(*(c.call("rescuer", "POST", url, {"text": "道路打通", "client_id": "phone-1:8"})
                                  for _ in range(3)))
    assert [status for status, _ in race] == [201, 201, 201]
    assert sorted(body["duplicate"] for _, body in race) == [False, True, True]
    assert len({body["progress"]["id"] for _, body in race}) == 1

    # Recorded, posted and told once per report (the lead's reports go to the assigner and the assignee).
    assert len(await _audit(c, chain, "task.progress")) == 3
    assert len(await _room_steps(c, incident["room_id"], "task.progress")) == 3
    await until(lambda: len(commander.got("task.changed")) >= told + 3, what="the assigner is told")
    # A last report after everything: its event comes after any the duplicates could have caused.
    await c.ok("rescuer", "POST", url, {"text": "收尾", "client_id": "phone-1:9"})
    await until(lambda: len(commander.got("task.changed")) >= told + 4, what="the last report is told")
    assert len(commander.got("task.changed")) == told + 4
    detail = await c.ok("rescuer", "GET", f"/api/tasks/{task['id']}")
    assert len(detail["progress"]) == 4

    # A resend after the task moved on (submitted: no more reports) still gets the first answer.
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/submit", {"result": "完成"})
    late = await c.ok("rescuer", "POST", url, {"text": "到达现场", "client_id": "phone-1:7"})
    assert late["duplicate"] is True and late["progress"] == first["progress"]
    assert late["task"]["state"] == "submitted"
    assert len(await _audit(c, chain, "task.progress")) == 4
    assert not await _audit(c, f"case:incident:{other_incident['id']}", "task.progress")


async def test_an_incident_reported_twice_is_one_incident(county: County) -> None:
    c = county
    body = {"title": "桥面塌陷", "type": "collapse", "level": 2, "latitude": 30.5, "longitude": 120.5,
            "client_id": "phone-9:1"}
    commander = c["commander"]
    first = await c.ok("reporter", "POST", "/api/incidents", body)
    status, again = await c.call("reporter", "POST", "/api/incidents", {**body, "title": "改过的标题"})
    assert status == 201 and again["duplicate"] is True and first["duplicate"] is False
    assert again["id"] == first["id"] and again["title"] == "桥面塌陷" and again["client_id"] == "phone-9:1"
    # Two more sends racing.
    race = await asyncio.gather(*(c.call("reporter", "POST", "/api/incidents", {**body, "client_id": "phone-9:2"})
                                  for _ in range(3)))
    assert [status for status, _ in race] == [201, 201, 201]
    assert sorted(b["duplicate"] for _, b in race) == [False, True, True]
    assert len({b["id"] for _, b in race}) == 1
    # Someone else's client id is their own; no client id, no idempotency.
    theirs = await c.ok("rescuer", "POST", "/api/incidents", body)
    assert theirs["id"] != first["id"] and theirs["duplicate"] is False
    plain = [await c.ok("reporter", "POST", "/api/incidents", {"title": "无编号", "type": "other"}) for _ in range(2)]
    assert plain[0]["id"] != plain[1]["id"] and plain[0]["client_id"] is None

    listed = await c.ok("commander", "GET", "/api/incidents")
    ids = [i["id"] for i in listed["incidents"]]
    assert len(ids) == len(set(ids)) == 5
    assert ids.count(first["id"]) == 1
    storage = c.muster.kernel.storage
    assert len(await storage.list_audit_records(chain=f"case:incident:{first['id']}", action="incident.report")) == 1
    await until(lambda: len(commander.got("incident.reported")) >= 5, what="the commander hears of each incident")
    await c.ok("reporter", "POST", "/api/incidents", {"title": "最后一个", "type": "other"})
    await until(lambda: len(commander.got("incident.reported")) >= 6, what="the last report")
    assert len(commander.got("incident.reported")) == 6


async def test_project_progress_sent_twice_is_recorded_once(county: County) -> None:
    c = county
    housing = c.departments["住房和城乡建设局"]
    project = await c.ok("pmo", "POST", "/api/projects", {"code": "XM-9", "name": "城西水厂",
                                                          "owner_department_id": housing})
    other = await c.ok("pmo", "POST", "/api/projects", {"code": "XM-10", "name": "城北道路",
                                                        "owner_department_id": housing})
    url = f"/api/projects/{project['id']}/progress"
    first = await c.ok("builder", "POST", url, {"percent": 20, "text": "基坑开挖", "client_id": "b-1"})
    status, again = await c.call("builder", "POST", url, {"percent": 25, "text": "基坑开挖", "client_id": "b-1"})
    assert status == 201 and again["duplicate"] is True and first["duplicate"] is False
    assert {k: v for k, v in again.items() if k != "duplicate"} == {k: v for k, v in first.items() if k != "duplicate"}
    race = await asyncio.gather(*(c.call("builder", "POST", url, {"percent": 30, "text": "封顶", "client_id": "b-2"})
                                  for _ in range(3)))
    assert [status for status, _ in race] == [201, 201, 201]
    assert sorted(b["duplicate"] for _, b in race) == [False, True, True]
    status, body = await c.call("builder", "POST", f"/api/projects/{other['id']}/progress",
                                {"percent": 5, "text": "x", "client_id": "b-1"})
    assert status == 409 and body["error"]["code"] == "project.client_id_reused"
    lead = await c.ok("housing_lead", "POST", url, {"percent": 35, "text": "验收", "client_id": "b-1"})
    assert lead["duplicate"] is False and lead["id"] != first["id"]

    detail = await c.ok("pmo", "GET", f"/api/projects/{project['id']}")
    assert sorted(p["percent"] for p in detail["progress"]) == [20, 30, 35]
    assert detail["project"]["progress"] == 35
    records = await c.muster.kernel.storage.list_audit_records(chain=f"case:project:{project['id']}",
                                                               action="project.progress")
    assert len(records) == 3
    events = await c.ok("pmo", "GET", f"/api/rooms/{project['room_id']}/events?limit=200")
    steps = [e for e in events["events"] if e["body"].get("data", {}).get("workflow") == "project.progress"]
    assert len(steps) == 3


async def test_the_loser_of_a_race_answers_with_the_winner(county: County, monkeypatch: Any) -> None:
    """The unique key decides a race: a send that found nothing, then lost the insert, answers with the winner's."""
    c = county
    storage = c.muster.kernel.storage
    _, task = await _incident_with_task(c)
    await c.ok("rescuer", "POST", f"/api/tasks/{task['id']}/accept", {})
    project = await c.ok("pmo", "POST", "/api/projects", {"code": "XM-R", "name": "R",
                                                          "owner_department_id": c.departments["住房和城乡建设局"]})
    sends = {
        "find_incident_by_client_id": ("/api/incidents", {"title": "T", "type": "other", "client_id": "r-1"}),
        "find_task_progress_by_client_id": (f"/api/tasks/{task['id']}/progress", {"text": "T", "client_id": "r-1"}),
        "find_progress_report_by_client_id": (f"/api/projects/{project['id']}/progress",
                                              {"percent": 1, "client_id": "r-1"}),
    }
    who = {"find_incident_by_client_id": "rescuer", "find_task_progress_by_client_id": "rescuer",
           "find_progress_report_by_client_id": "pmo"}
    for method, (url, body) in sends.items():
        winner = await c.ok(who[method], "POST", url, body)
        real = getattr(storage, method)
        calls: list[str] = []

        async def blind_first(reporter_id: str, client_id: str, real: Any = real, calls: list[str] = calls) -> Any:
            calls.append(client_id)
            return None if len(calls) == 1 else await real(reporter_id, client_id)

        monkeypatch.setattr(storage, method, blind_first)
        loser = await c.ok(who[method], "POST", url, body)
        monkeypatch.undo()
        assert len(calls) == 2, method  # the pre-check, then the look-up after the refused insert
        assert loser["duplicate"] is True and winner["duplicate"] is False
        key = "progress" if "progress" in winner and isinstance(winner["progress"], dict) else "id"
        assert (loser[key] if key == "id" else loser[key]["id"]) == (
            winner[key] if key == "id" else winner[key]["id"])
