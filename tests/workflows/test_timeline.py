"""A case's timeline and disposal record on a real SQLite storage: merging, summaries, verification, HTML."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.audit.service import AuditLog, case_chain
from server.storage.records import (
    Department,
    FileLink,
    Incident,
    Membership,
    Room,
    RoomEvent,
    StoredFile,
    Task,
    User,
)
from server.storage.sqlite import SqliteStorage
from workflows.timeline import TimelineEntry, case_timeline, disposal_record, disposal_record_html, format_time

# 2024-05-01 08:00:00 UTC = 16:00:00 in Beijing.
T0 = int(datetime(2024, 5, 1, 8, 0, 0, tzinfo=UTC).timestamp() * 1000)
CASE = "inc1"
ROOM = "room1"
CHAIN = case_chain("incident", CASE)


class Clock:
    """The audit log's clock, set by the test (nodes whose clocks disagree included)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    storage: SqliteStorage
    audit: AuditLog
    clock: Clock
    path: Path

    async def record(self, at: int, action: str, *, actor: str | None = "zhang", subject_type: str = "incident",
                     subject_id: str = CASE, details: dict[str, Any] | None = None, **more: Any) -> None:
        self.clock.now = at
        await self.audit.record(chain=CHAIN, action=action, subject_type=subject_type, subject_id=subject_id,
                                actor_id=actor, details={**(details or {}), **more})

    async def message(self, at: int, text: str, *, sender: str | None = "li", kind: str = "message",
                      **body: Any) -> RoomEvent:
        event = RoomEvent(id=f"ev{at}", room_id=ROOM, seq=0, kind=kind, sender_id=sender,  # type: ignore[arg-type]
                          device_id=None, client_id=None, created_at=at, body={"text": text, **body})
        stored, created = await self.storage.append_event(event)
        assert created
        return stored

    async def attach(self, at: int, file_id: str, name: str, *, by: str = "li") -> None:
        await self.storage.create_file(StoredFile(id=file_id, sha256=file_id * 8, size=1234, mime="image/jpeg",
                                                  name=name, owner_id=by, device_id=None, created_at=at))
        await self.storage.add_file_link(FileLink(file_id=file_id, scope_type="case:incident", scope_id=CASE,
                                                  target_type="incident", target_id=CASE, created_by=by,
                                                  created_at=at))


def user(user_id: str, name: str, department_id: str | None = None) -> User:
    return User(id=user_id, username=user_id, display_name=name, department_id=department_id, title="",
                roles=("commander",), disabled=False, password_hash=None, created_at=T0, updated_at=T0)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    path = tmp_path / "m.sqlite3"
    storage = SqliteStorage(path)
    await storage.open()
    await storage.create_department(Department(id="water", name="水利局", kind="department", parent_id=None,
                                               created_at=T0, updated_at=T0))
    for u in (user("zhang", "张伟"), user("li", "李娜", "water"), user("wang", "王强", "water")):
        await storage.create_user(u)
    await storage.create_incident(Incident(
        id=CASE, title="东沟水库渗漏", type="flood", level=2, description="", address="东沟村", latitude=None,
        longitude=None, reporter_id="li", reporter_device_id=None, state="responding", created_at=T0,
        updated_at=T0, room_id=ROOM))
    await storage.create_room(
        Room(id=ROOM, kind="incident", name="东沟水库渗漏", topic="", archived=False, created_by="zhang",
             created_at=T0, updated_at=T0, case_type="incident", case_id=CASE),
        [Membership(ROOM, "zhang", "owner", T0), Membership(ROOM, "li", "member", T0)])
    await storage.create_task(Task(
        id="task1", case_type="incident", case_id=CASE, title="清理河道", instructions="", priority="high",
        deadline=T0 + 3_600_000, assigned_by="zhang", state="in_progress", created_at=T0, updated_at=T0,
        department_id="water", assignee_id="wang"))
    clock = Clock()
    yield World(storage, AuditLog(storage, clock=clock), clock, path)
    await storage.close()


def tamper(path: Path, sql: str) -> None:
    """What someone holding the database file could do: drop the append-only guards and edit."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql)
    conn.commit()
    conn.close()


async def timeline(world: World) -> list[TimelineEntry]:
    return await case_timeline(world.storage, case_type="incident", case_id=CASE, room_id=ROOM)


async def test_audit_messages_and_files_merge_by_time(world: World) -> None:
    await world.record(T0 + 1000, "incident.report", actor="li", title="东沟水库渗漏", level=2)
    await world.message(T0 + 1500, "现场水位上涨")
    await world.record(T0 + 2000, "incident.verify", details={"from": "reported", "to": "verified", "level": 2})
    # A workflow step and its system message in the same millisecond: the audit record first.
    await world.message(T0 + 2000, "张伟 核实「东沟水库渗漏」", sender="zhang", kind="system",
                        data={"workflow": "incident.verify"})
    await world.attach(T0 + 2500, "f1", "现场照片.jpg")
    await world.message(T0 + 2500, "照片已上传")
    # Room events that are not messages (members, rooms) stay out: the audit chain has them.
    await world.storage.append_event(RoomEvent(id="evm", room_id=ROOM, seq=0, kind="member", sender_id="zhang",
                                               device_id=None, client_id=None, created_at=T0 + 2600,
                                               body={"action": "invite", "text": "张伟 邀请 王强 加入"}))
    await world.record(T0 + 3000, "incident.respond", details={"from": "verified", "to": "responding"})

    entries = await timeline(world)
    assert [(e.at - T0, e.kind, e.action) for e in entries] == [
        (1000, "workflow", "incident.report"),
        (1500, "message", "message.send"),
        (2000, "workflow", "incident.verify"),
        (2000, "message", "message.system"),
        (2500, "message", "message.send"),
        (2500, "file", "file.link"),
        (3000, "workflow", "incident.respond"),
    ]
    audited = [e for e in entries if e.audit_seq is not None]
    chain = [r async for r in world.storage.iter_audit_chain(CHAIN)]
    assert [(e.audit_seq, e.audit_hash) for e in audited] == [(r.seq, r.hash) for r in chain]
    assert all(e.audit_hash is None for e in entries if e.audit_seq is None)
    assert len(audited) == 3
    message = entries[1]
    assert (message.actor_id, message.actor_name, message.summary) == ("li", "李娜", "李娜：现场水位上涨")
    assert message.details["text"] == "现场水位上涨" and message.details["room_id"] == ROOM
    assert entries[3].summary == "张伟 核实「东沟水库渗漏」" and entries[3].details["data"] == {
        "workflow": "incident.verify"}
    photo = entries[5]
    assert photo.summary == "李娜 附加了文件「现场照片.jpg」"
    assert (photo.subject_type, photo.subject_id, photo.details["name"]) == ("file", "f1", "现场照片.jpg")


async def test_audit_order_is_kept_when_clocks_step_back(world: World) -> None:
    await world.record(T0 + 5000, "task.urge", actor=None, subject_type="task", subject_id="task1", count=1,
                       automatic=True)
    await world.message(T0 + 4950, "收到")
    # Another node with a slow clock writes the next record of the chain.
    await world.record(T0 + 4900, "task.extend", subject_type="task", subject_id="task1",
                       deadline=T0 + 7_200_000, previous=T0 + 3_600_000, reason="雨天")
    entries = await timeline(world)
    assert [e.action for e in entries] == ["message.send", "task.urge", "task.extend"]
    assert [e.audit_seq for e in entries if e.audit_seq is not None] == [1, 2]


async def test_a_recalled_message_shows_without_its_content(world: World) -> None:
    secret = await world.message(T0 + 1000, "秘密内容不外传", attachments=[{"file_id": "f9", "name": "机密.pdf"}])
    await world.message(T0 + 1100, "另一条")
    # As the room service does it: the original goes to the audit record, the message is marked recalled.
    # The body is left in place here, to show the timeline itself withholds it.
    await world.record(T0 + 2000, "message.recall", actor="li", subject_type="message", subject_id=secret.id,
                       room_id=ROOM, original={"text": "秘密内容不外传"})
    assert await world.storage.update_message(ROOM, secret.id, recalled_at=T0 + 2000)

    entries = await timeline(world)
    recalled = entries[0]
    assert (recalled.action, recalled.summary) == ("message.recalled", "李娜 撤回了一条消息")
    assert recalled.details == {"room_id": ROOM, "seq": secret.seq, "event_id": secret.id, "recalled_at": T0 + 2000}
    audit_entry = entries[2]
    assert audit_entry.summary == "李娜 撤回了一条消息" and audit_entry.audit_seq == 1
    assert "original" not in audit_entry.details and audit_entry.details["original_withheld"] is True

    record = await disposal_record(world.storage, world.audit, case_type="incident", case_id=CASE, title="东沟",
                                   case={"id": CASE, "room_id": ROOM}, generated_by="张伟", now=T0 + 9000)
    dumped = json.dumps(record, ensure_ascii=False)
    assert "秘密内容" not in dumped and "机密.pdf" not in dumped
    assert "秘密内容" not in disposal_record_html(record)
    assert "另一条" in dumped


SUMMARIES: list[tuple[str, str | None, str, dict[str, Any], str]] = [
    ("incident.report", "li", "incident", {"title": "东沟水库渗漏", "level": 2},
     "李娜 上报了事件「东沟水库渗漏」，Ⅱ级（重大）"),
    ("incident.verify", "zhang", "incident", {"from": "reported", "to": "verified", "level": 2},
     "张伟 核实了事件，定为Ⅱ级（重大）"),
    ("incident.respond", "zhang", "incident", {"from": "verified", "to": "responding"}, "张伟 启动了处置"),
    ("incident.resolve", "zhang", "incident", {"summary": "险情排除"}, "张伟 处置完毕（处置情况：险情排除）"),
    ("incident.close", "zhang", "incident", {"summary": ""}, "张伟 结案"),
    ("incident.reopen", "zhang", "incident", {"reason": "再次渗漏"}, "张伟 重新启动了处置（原因：再次渗漏）"),
    ("incident.update", "zhang", "incident", {"changes": {"address": "西沟村", "level": 1}},
     "张伟 更新了事件信息：地点、等级"),
    ("task.assign", "zhang", "task", {"title": "清理河道", "department_id": "water", "assignee_id": "wang",
                                      "deadline": T0 + 3_600_000, "priority": "high"},
     "张伟 交办任务「清理河道」给 水利局 王强，期限 2024-05-01 17:00"),
    ("task.accept", "wang", "task", {"from": "assigned", "to": "accepted", "title": "清理河道"},
     "王强 签收了任务「清理河道」"),
    # No title in the details: looked up from the task.
    ("task.start", "wang", "task", {"from": "accepted", "to": "in_progress"}, "王强 开始办理任务「清理河道」"),
    ("task.submit", "wang", "task", {"title": "清理河道", "result": "已清理"},
     "王强 提交了任务「清理河道」的办理结果（结果：已清理）"),
    ("task.delegate", "li", "task", {"title": "清理河道", "assignee_id": "wang"}, "李娜 转派任务「清理河道」给 王强"),
    ("task.inspect_pass", "zhang", "task", {"title": "清理河道", "comment": ""}, "张伟 督查通过任务「清理河道」"),
    ("task.inspect_send_back", "zhang", "task", {"title": "清理河道", "comment": "照片不清"},
     "张伟 督查退回任务「清理河道」（意见：照片不清）"),
    ("task.spot_check", "zhang", "task", {"title": "清理河道", "comment": "属实"},
     "张伟 督查抽查了任务「清理河道」（意见：属实）"),
    ("task.spot_check_failed", "zhang", "task", {"title": "清理河道", "comment": "未清完"},
     "张伟 抽查未通过，任务「清理河道」重新办理（意见：未清完）"),
    ("task.urge", "zhang", "task", {"title": "清理河道", "count": 2, "message": "", "automatic": False},
     "张伟 催办任务「清理河道」（第2次）"),
    ("task.urge", None, "task", {"title": "清理河道", "count": 3, "message": "", "automatic": True},
     "系统 自动催办任务「清理河道」（第3次）"),
    ("task.supervise", "zhang", "task", {"title": "清理河道", "deadline": T0 + 86_400_000, "reason": "进展慢",
                                         "automatic": False},
     "张伟 将任务「清理河道」列为督办，督办期限 2024-05-02 16:00（原因：进展慢）"),
    ("task.restart_chain", "zhang", "task", {"title": "清理河道", "step": "supervise"},
     "张伟 重启了任务「清理河道」的催办（从督办开始）"),
    ("task.extend", "zhang", "task", {"title": "清理河道", "deadline": T0 + 7_200_000, "previous": T0,
                                      "reason": "暴雨"},
     "张伟 延期任务「清理河道」至 2024-05-01 18:00（原因：暴雨）"),
    ("task.reassign", "zhang", "task", {"title": "清理河道", "department_id": "water", "assignee_id": "li"},
     "张伟 改派任务「清理河道」给 水利局 李娜"),
    ("task.cancel", "zhang", "task", {"title": "清理河道", "reason": "重复交办"},
     "张伟 撤销了任务「清理河道」（原因：重复交办）"),
    ("project.create", "zhang", "project", {"name": "城东污水厂", "code": "XM-2024-01"},
     "张伟 创建了项目「城东污水厂」（XM-2024-01）"),
    ("project.advance", "zhang", "project", {"from": "start", "to": "construction"}, "张伟 将项目阶段推进到 建设"),
    ("project.progress", "li", "project", {"percent": 60, "text": "主体完工"}, "李娜 报告进度 60%：主体完工"),
    ("project.problem", "li", "problem", {"title": "征地未完成"}, "李娜 报告了存在问题「征地未完成」"),
    ("problem.task", "zhang", "problem", {"title": "征地未完成", "task_id": "task1"},
     "张伟 将问题「征地未完成」转为交办任务"),
    ("problem.resolve", None, "problem", {}, "系统 确认问题已解决"),
    ("room.member_invite", "zhang", "room", {"room_id": ROOM, "user_ids": ["li", "wang"]},
     "张伟 邀请 李娜、王强 加入群组"),
    ("file.attach", "li", "file", {"room_id": ROOM, "name": "图.png", "message_id": "m"}, "李娜 发送了文件「图.png」"),
    ("call.start", "zhang", "call", {"kind": "consultation"}, "张伟 发起了视频会商"),
    ("call.end", "zhang", "call", {"kind": "consultation", "duration_s": 125}, "张伟 视频会商结束（时长 2分05秒）"),
    ("recording.stop", "zhang", "recording", {}, "张伟 结束录制"),
    ("case.export", "zhang", "incident", {"format": "html"}, "张伟 导出了处置记录（HTML）"),
    ("something.new", "zhang", "thing", {"x": 1}, "张伟 something.new"),
]


@pytest.mark.parametrize(("action", "actor", "subject_type", "details", "summary"), SUMMARIES,
                         ids=[f"{i}-{row[0]}" for i, row in enumerate(SUMMARIES)])
async def test_summaries(world: World, action: str, actor: str | None, subject_type: str, details: dict[str, Any],
                         summary: str) -> None:
    subject_id = {"task": "task1", "incident": CASE}.get(subject_type, "x1")
    await world.record(T0, action, actor=actor, subject_type=subject_type, subject_id=subject_id, details=details)
    [entry] = await case_timeline(world.storage, case_type="incident", case_id=CASE, room_id=None)
    assert entry.summary == summary
    assert entry.actor_name == ("系统" if actor is None else {"zhang": "张伟", "li": "李娜", "wang": "王强"}[actor])
    expected_kind = "call" if action.startswith(("call.", "recording.")) else \
        "message" if action.startswith("room.") else "file" if action.startswith("file.") else "workflow"
    assert entry.kind == expected_kind
    assert entry.details == details


def test_times_are_beijing_time() -> None:
    assert format_time(T0) == "2024-05-01 16:00:00"
    assert format_time(T0 + 59_999, seconds=False) == "2024-05-01 16:00"


async def fill_case(world: World) -> None:
    await world.record(T0 + 1000, "incident.report", actor="li", title="东沟水库渗漏", level=2)
    await world.record(T0 + 2000, "incident.verify", details={"from": "reported", "to": "verified", "level": 2})
    await world.message(T0 + 2500, "<script>alert('x')</script> 收到")
    await world.record(T0 + 3000, "task.assign", subject_type="task", subject_id="task1", title="清理<河道>",
                       department_id="water", assignee_id="wang", deadline=T0 + 3_600_000)
    await world.attach(T0 + 3500, "f1", "<img src=x onerror=alert(1)>.jpg")


async def make_record(world: World, *, title: str = "东沟水库渗漏") -> dict[str, Any]:
    return await disposal_record(
        world.storage, world.audit, case_type="incident", case_id=CASE, title=title,
        case={"id": CASE, "title": title, "level": 2, "state": "responding", "created_at": T0, "room_id": ROOM,
              "address": "东沟村 <b>3组</b>"},
        generated_by="zhang", now=T0 + 10_000)


async def test_disposal_record_verifies_the_chain(world: World) -> None:
    await fill_case(world)
    record = await make_record(world)
    chain = [r async for r in world.storage.iter_audit_chain(CHAIN)]
    assert record["chain"] == CHAIN == "case:incident:inc1"
    assert (record["title"], record["generated_at"], record["generated_by"], record["generated_by_name"]) == (
        "东沟水库渗漏", T0 + 10_000, "zhang", "张伟")
    assert record["case"]["id"] == CASE
    assert record["verification"] == {
        "ok": True, "records": 3, "last_seq": 3, "last_hash": chain[-1].hash, "broken": None,
        "how": "python -m server audit verify --chain case:incident:inc1",
    }
    assert [e["action"] for e in record["entries"]] == [
        "incident.report", "incident.verify", "message.send", "task.assign", "file.link"]
    assert record["entries"][3]["audit_seq"] == 3 and record["entries"][3]["audit_hash"] == chain[-1].hash
    assert json.loads(json.dumps(record)) == record  # plain JSON

    tamper(world.path, f"UPDATE audit_log SET details = '{{\"level\": 1}}' WHERE chain = '{CHAIN}' AND seq = 2")
    broken = await make_record(world)
    assert broken["verification"]["ok"] is False
    assert broken["verification"]["broken"]["seq"] == 2
    assert "edited" in broken["verification"]["broken"]["reason"]
    assert "已损坏" in disposal_record_html(broken)


async def test_a_deleted_record_fails_verification(world: World) -> None:
    await fill_case(world)
    tamper(world.path, f"DELETE FROM audit_log WHERE chain = '{CHAIN}' AND seq = 1")
    record = await make_record(world)
    assert record["verification"]["ok"] is False and record["verification"]["broken"]["seq"] == 1


async def test_an_empty_case_is_verified_with_no_records(world: World) -> None:
    record = await make_record(world)
    assert record["entries"] == []
    assert record["verification"]["ok"] is True
    assert (record["verification"]["records"], record["verification"]["last_seq"],
            record["verification"]["last_hash"]) == (0, None, None)
    assert "（无记录）" in disposal_record_html(record)


async def test_html_is_printable_self_contained_and_escaped(world: World) -> None:
    await fill_case(world)
    record = await make_record(world, title="<script>alert(1)</script>东沟")
    page = disposal_record_html(record)
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="zh-CN">' in page
    assert "<title>处置记录 — &lt;script&gt;alert(1)&lt;/script&gt;东沟</title>" in page
    assert "<h1>处置记录</h1>" in page
    assert "@media print" in page
    # Nothing runs, nothing is fetched.
    assert "<script" not in page.lower()
    assert not re.search(r"<(img|link|iframe|object|embed)\b", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page and "url(" not in page
    # Every value escaped: the message, the title, the task title, the file name, the case facts.
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; 收到" in page
    assert "清理&lt;河道&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page
    assert "东沟村 &lt;b&gt;3组&lt;/b&gt;" in page
    # The facts, in words; times in Beijing time.
    assert "Ⅱ级（重大）" in page and "处置中（responding）" in page and "2024-05-01 16:00:00" in page
    assert "2024-05-01 16:00:01" in page  # the report, one second after T0
    # Each audit entry with its seq and the first 16 hex characters of its hash; the last hash in full.
    chain = [r async for r in world.storage.iter_audit_chain(CHAIN)]
    for r in chain:
        assert f"#{r.seq}<br><span class=\"hash\">{r.hash[:16]}</span>" in page
    assert chain[-1].hash in page and chain[0].hash not in page
    assert "python -m server audit verify --chain case:incident:inc1" in page
    assert "完整：审计链校验通过" in page
    assert "生成人 张伟" in page


def test_html_escapes_whatever_the_record_holds() -> None:
    evil = '"><script>x</script>'
    record = {
        "case": {evil: evil, "nested": {"a": evil}, "list": [evil]},
        "title": evil, "generated_at": T0, "generated_by": evil, "chain": evil,
        "verification": {"ok": False, "records": evil, "last_seq": evil, "last_hash": evil,
                         "broken": {"seq": evil, "reason": evil}, "how": evil},
        "entries": [{"at": T0, "kind": evil, "action": evil, "actor_id": evil, "actor_name": evil, "summary": evil,
                     "subject_type": evil, "subject_id": evil, "details": {}, "audit_seq": evil,
                     "audit_hash": evil}],
    }
    page = disposal_record_html(record)
    assert "<script" not in page.lower()
    assert evil not in page
    assert "&quot;&gt;&lt;script&gt;x&lt;/script&gt;" in page
