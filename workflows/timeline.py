"""A case's timeline and its disposal record (处置记录).

The timeline is the case's audit chain (``case:<type>:<id>``: every record, in chain order, each
with its seq and hash) merged by time with the messages of the case room and the files attached
to the case. Audit records keep their chain order even when their clocks disagree; at the same
millisecond an audit record comes before a message, and a message before a file.

The disposal record is that timeline exported with the case's facts and a verification of the
chain, as JSON (`disposal_record`) and as a printable, self-contained HTML page
(`disposal_record_html`). Whoever holds the database checks the chain again with
``python -m server audit verify --chain case:<type>:<id>``.

Recalled messages show as "撤回了一条消息" with no content; the original text of a recalled or
edited message, which the audit record keeps, is withheld from the timeline too (the audit log
itself still holds it, and the chain verification does not depend on the export).
"""

from __future__ import annotations

import functools
import heapq
import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.audit.service import AuditLog, case_chain
from server.storage.ports import Storage
from server.storage.records import MESSAGE_KINDS, AuditRecord, FileLink, RoomEvent, StoredFile
from workflows.engine import PHASE_LABELS

EntryKind = Literal["workflow", "message", "file", "call"]
SYSTEM_NAME = "系统"
SYSTEM_ACTOR = "system"
_PAGE = 500

LEVEL_LABELS = {1: "Ⅰ级（特别重大）", 2: "Ⅱ级（重大）", 3: "Ⅲ级（较大）", 4: "Ⅳ级（一般）"}
STATE_LABELS = {
    # incidents
    "reported": "已上报", "verified": "已核实", "responding": "处置中", "resolved": "已处置", "closed": "已关闭",
    # tasks
    "assigned": "已交办", "accepted": "已签收", "in_progress": "办理中", "submitted": "待督查",
    "sent_back": "已退回", "passed": "已办结", "cancelled": "已撤销",
    # problems
    "open": "未解决", "tasked": "已转交办",
    # projects
    **PHASE_LABELS,
}
KIND_LABELS: dict[str, str] = {"workflow": "流程", "message": "消息", "file": "文件", "call": "通话"}


@functools.cache
def _shanghai() -> tzinfo:
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:  # pragma: no cover - no tz database: China has kept UTC+8 without DST since 1991
        return timezone(timedelta(hours=8), "CST")



def format_time(ms: int, *, seconds: bool = True) -> str:
    """Milliseconds since the epoch as Beijing time, `YYYY-MM-DD HH:MM:SS` (or without seconds)."""
    at = datetime.fromtimestamp(ms / 1000, UTC).astimezone(_shanghai())
    return at.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a case's timeline. `audit_seq` and `audit_hash` are set for entries from the audit chain."""

    at: int
    kind: EntryKind
    action: str
    actor_id: str | None
    actor_name: str
    summary: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]
    audit_seq: int | None
    audit_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Lookup:
    """Names for ids met while building one timeline, each looked up once."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._users: dict[str, str] = {}
        self._departments: dict[str, str] | None = None
        self._tasks: dict[str, str | None] = {}

    async def user(self, user_id: str | None) -> str:
        if user_id is None or user_id == SYSTEM_ACTOR:
            return SYSTEM_NAME
        if user_id not in self._users:
            user = await self._storage.get_user(user_id)
            self._users[user_id] = user.display_name if user else user_id
        return self._users[user_id]

    async def department(self, department_id: str) -> str:
        if self._departments is None:
            self._departments = {d.id: d.name for d in await self._storage.list_departments()}
        return self._departments.get(department_id, department_id)

    async def task_title(self, task_id: str) -> str | None:
        if task_id not in self._tasks:
            task = await self._storage.get_task(task_id)
            self._tasks[task_id] = task.title if task else None
        return self._tasks[task_id]

    async def assignee(self, details: Mapping[str, Any]) -> str:
        """The department and/or person named by `department_id` / `assignee_id` in audit details."""
        parts = []
        if isinstance(details.get("department_id"), str):
            parts.append(await self.department(details["department_id"]))
        if isinstance(details.get("assignee_id"), str):
            parts.append(await self.user(details["assignee_id"]))
        return " ".join(parts)

    async def users(self, user_ids: Any) -> str:
        if not isinstance(user_ids, list):
            return ""
        return "、".join([await self.user(u) for u in user_ids if isinstance(u, str)])


def _text(details: Mapping[str, Any], *keys: str) -> str:
    """The first non-empty string among `keys`."""
    for key in keys:
        value = details.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _int(details: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = details.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _tail(label: str, value: str) -> str:
    return f"（{label}：{value}）" if value else ""


def _level(details: Mapping[str, Any]) -> str:
    level = _int(details, "level")
    return LEVEL_LABELS.get(level, "") if level is not None else ""


def _phase(value: Any) -> str:
    return PHASE_LABELS.get(value, str(value)) if isinstance(value, str) else ""


async def _audit_summary(record: AuditRecord, actor: str, look: _Lookup) -> str:
    """What an audit record says, in Chinese, beginning with who did it."""
    d = record.details
    action = record.action
    title = _text(d, "title", "name")
    if not title and record.subject_type == "task":
        title = await look.task_title(record.subject_id) or ""
    quoted = f"「{title}」" if title else ""

    if action.startswith("incident."):
        verb = action.split(".", 1)[1]
        if verb == "report":
            level = _level(d)
            return f"{actor} 上报了事件{quoted}" + (f"，{level}" if level else "")
        if verb == "verify":
            level = _level(d)
            return f"{actor} 核实了事件" + (f"，定为{level}" if level else "")
        if verb == "respond":
            return f"{actor} 启动了处置"
        if verb == "resolve":
            return f"{actor} 处置完毕" + _tail("处置情况", _text(d, "summary"))
        if verb == "close":
            return f"{actor} 结案" + _tail("结案意见", _text(d, "summary"))
        if verb == "reopen":
            return f"{actor} 重新启动了处置" + _tail("原因", _text(d, "reason"))
        if verb == "update":
            changes = d.get("changes")
            fields = "、".join(_FIELD_LABELS.get(str(k), str(k)) for k in changes) if isinstance(changes, dict) else ""
            return f"{actor} 更新了事件信息" + (f"：{fields}" if fields else "")

    if action.startswith("task."):
        verb = action.split(".", 1)[1]
        if verb == "assign":
            to = await look.assignee(d)
            deadline = _int(d, "deadline")
            text = f"{actor} 交办任务{quoted}" + (f"给 {to}" if to else "")
            return text + (f"，期限 {format_time(deadline, seconds=False)}" if deadline is not None else "")
        if verb == "accept":
            return f"{actor} 签收了任务{quoted}"
        if verb == "start":
            return f"{actor} 开始办理任务{quoted}"
        if verb == "submit":
            return f"{actor} 提交了任务{quoted}的办理结果" + _tail("结果", _text(d, "result"))
        if verb == "progress":
            percent = _int(d, "percent")
            return (f"{actor} 反馈了任务{quoted}的进展" + (f"（{percent}%）" if percent is not None else "")
                    + _tail("进展", _text(d, "text")))
        if verb == "delegate":
            to = await look.assignee({"assignee_id": d.get("assignee_id")})
            return f"{actor} 转派任务{quoted}" + (f"给 {to}" if to else "")
        if verb == "inspect_pass":
            return f"{actor} 督查通过任务{quoted}" + _tail("意见", _text(d, "comment"))
        if verb == "inspect_send_back":
            return f"{actor} 督查退回任务{quoted}" + _tail("意见", _text(d, "comment"))
        if verb == "spot_check":
            return f"{actor} 督查抽查了任务{quoted}" + _tail("意见", _text(d, "comment"))
        if verb == "spot_check_failed":
            return f"{actor} 抽查未通过，任务{quoted}重新办理" + _tail("意见", _text(d, "comment"))
        if verb == "urge":
            count = _int(d, "count", "urge_count")
            auto = "自动" if d.get("automatic") else ""
            text = f"{actor} {auto}催办任务{quoted}" + (f"（第{count}次）" if count is not None else "")
            message = _text(d, "message")
            return text + (f"：{message}" if message else "")
        if verb == "supervise":
            deadline = _int(d, "deadline", "supervise_deadline")
            text = f"{actor} 将任务{quoted}列为督办" if not d.get("automatic") else f"{actor} 自动督办任务{quoted}"
            if deadline is not None:
                text += f"，督办期限 {format_time(deadline, seconds=False)}"
            return text + _tail("原因", _text(d, "reason"))
        if verb == "restart_chain":
            step = {"urge": "催办", "supervise": "督办"}.get(_text(d, "step"), "")
            return f"{actor} 重启了任务{quoted}的催办" + (f"（从{step}开始）" if step else "")
        if verb == "extend":
            deadline = _int(d, "deadline")
            text = f"{actor} 延期任务{quoted}"
            if deadline is not None:
                text += f"至 {format_time(deadline, seconds=False)}"
            return text + _tail("原因", _text(d, "reason"))
        if verb == "reassign":
            to = await look.assignee(d)
            return f"{actor} 改派任务{quoted}" + (f"给 {to}" if to else "")
        if verb == "cancel":
            return f"{actor} 撤销了任务{quoted}" + _tail("原因", _text(d, "reason"))

    if action.startswith("project."):
        verb = action.split(".", 1)[1]
        if verb == "create":
            code = _text(d, "code")
            return f"{actor} 创建了项目{quoted}" + (f"（{code}）" if code else "")
        if verb == "advance":
            phase = _phase(d.get("to", d.get("phase")))
            return f"{actor} 将项目阶段推进到 {phase}" if phase else f"{actor} 推进了项目阶段"
        if verb == "progress":
            percent = _int(d, "percent", "progress")
            text = f"{actor} 报告进度" + (f" {percent}%" if percent is not None else "")
            report = _text(d, "text")
            return text + (f"：{report}" if report else "")
        if verb == "problem":
            return f"{actor} 报告了存在问题{quoted}"
        if verb == "update":
            return f"{actor} 更新了项目信息"

    if action == "case.export":
        fmt = _text(d, "format")
        return f"{actor} 导出了处置记录" + (f"（{fmt.upper()}）" if fmt else "")
    if action == "problem.task":
        return f"{actor} 将问题{quoted}转为交办任务"
    if action == "problem.resolve":
        return f"{actor} 确认问题{quoted}已解决"

    if action == "room.create":
        return f"{actor} 创建了群组{quoted}"
    if action == "room.update":
        return f"{actor} 修改了群组信息"
    if action == "room.archive":
        return f"{actor} 归档了群组"
    if action == "room.join":
        return f"{actor} 加入了群组"
    if action == "room.leave":
        return f"{actor} 退出了群组"
    if action.startswith("room.member_"):
        verb = action.removeprefix("room.member_")
        names = await look.users(d.get("user_ids"))
        if verb == "invite":
            return f"{actor} 邀请 {names} 加入群组" if names else f"{actor} 邀请成员加入群组"
        if verb in ("join", "department"):
            return f"{names or actor} 加入了群组"
        if verb == "remove":
            return f"{actor} 将 {names} 移出群组" if names else f"{actor} 移出了群组成员"
        if verb == "leave":
            return f"{actor} 退出了群组"
        if verb == "role":
            who = await look.user(d["user_id"]) if isinstance(d.get("user_id"), str) else ""
            role = {"owner": "群主", "admin": "管理员", "member": "成员"}.get(_text(d, "role"), _text(d, "role"))
            return f"{actor} 将 {who} 设为{role}" if who else f"{actor} 调整了成员角色"
        return f"{actor} 调整了群组成员"
    if action == "message.edit":
        return f"{actor} 编辑了一条消息"
    if action == "message.recall":
        return f"{actor} 撤回了一条消息"
    if action == "message.pin":
        return f"{actor} 置顶了一条消息"
    if action == "message.unpin":
        return f"{actor} 取消置顶了一条消息"
    if action == "message.ack_stop":
        return f"{actor} 停止了回执提醒"
    if action == "file.attach":
        return f"{actor} 发送了文件{quoted}" if title else f"{actor} 发送了文件"

    if action == "call.start":
        return f"{actor} 发起了{_call_kind(d)}"
    if action == "call.end":
        seconds = _int(d, "duration_s", "duration")
        text = f"{_call_kind(d)}结束"
        return f"{actor} {text}" + (f"（时长 {seconds // 60}分{seconds % 60:02d}秒）" if seconds is not None else "")
    if action == "recording.start":
        return f"{actor} 开始录制"
    if action == "recording.stop":
        return f"{actor} 结束录制" + (f"「{title}」" if title else "")

    return f"{actor} {action}"


def _call_kind(details: Mapping[str, Any]) -> str:
    kind = _text(details, "kind", "mode")
    return {"consultation": "视频会商", "field_video": "视频回传", "monitor": "多设备监听", "audio": "语音通话",
            "video": "视频通话"}.get(kind, "通话")


_FIELD_LABELS = {"title": "标题", "description": "描述", "address": "地点", "level": "等级", "latitude": "纬度",
                 "longitude": "经度"}


def _audit_kind(action: str) -> EntryKind:
    if action.startswith(("call.", "recording.")):
        return "call"
    if action.startswith(("message.", "room.")):
        return "message"
    if action.startswith("file."):
        return "file"
    return "workflow"


def _public_details(record: AuditRecord) -> dict[str, Any]:
    """The record's details, without the original text of a recalled or edited message."""
    details = dict(record.details)
    if record.action in ("message.recall", "message.edit") and "original" in details:
        del details["original"]
        details["original_withheld"] = True
    return details


async def _audit_entries(storage: Storage, chain: str, look: _Lookup) -> list[TimelineEntry]:
    entries = []
    async for record in storage.iter_audit_chain(chain):
        actor = await look.user(record.actor_id)
        entries.append(TimelineEntry(
            at=record.at, kind=_audit_kind(record.action), action=record.action, actor_id=record.actor_id,
            actor_name=actor, summary=await _audit_summary(record, actor, look), subject_type=record.subject_type,
            subject_id=record.subject_id, details=_public_details(record), audit_seq=record.seq,
            audit_hash=record.hash,
        ))
    return entries


def _attachment_names(body: Mapping[str, Any]) -> list[str]:
    files = body.get("attachments")
    if not isinstance(files, list):
        return []
    return [str(f.get("name", "")) for f in files if isinstance(f, dict)]


async def _message_entry(event: RoomEvent, look: _Lookup) -> TimelineEntry:
    actor = await look.user(event.sender_id)
    base: dict[str, Any] = {"room_id": event.room_id, "seq": event.seq, "event_id": event.id}
    if event.recalled_at is not None:
        return TimelineEntry(
            at=event.created_at, kind="message", action="message.recalled", actor_id=event.sender_id,
            actor_name=actor, summary=f"{actor} 撤回了一条消息", subject_type="message", subject_id=event.id,
            details={**base, "recalled_at": event.recalled_at}, audit_seq=None, audit_hash=None,
        )
    body = event.body
    text = str(body.get("text", ""))
    details = {**base, "text": text, "edited_at": event.edited_at}
    if event.kind == "system":
        data = body.get("data")
        details["data"] = data if isinstance(data, dict) else {}
        summary = text or "系统消息"
        action = "message.system"
    else:
        names = _attachment_names(body)
        details["attachments"] = [f for f in body.get("attachments", []) if isinstance(f, dict)]
        details["reply_to"] = body.get("reply_to")
        summary = f"{actor}：{text}" if text else f"{actor} 发送了消息"
        if names:
            summary += ("" if not text else " ") + "［文件：" + "、".join(names) + "］"
        if event.edited_at is not None:
            summary += "（已编辑）"
        action = "message.send"
    return TimelineEntry(
        at=event.created_at, kind="message", action=action, actor_id=event.sender_id, actor_name=actor,
        summary=summary, subject_type="message", subject_id=event.id, details=details, audit_seq=None,
        audit_hash=None,
    )


async def _message_entries(storage: Storage, room_id: str, look: _Lookup) -> list[TimelineEntry]:
    entries = []
    after = 0
    while True:
        events = await storage.list_events(room_id, after_seq=after, limit=_PAGE)
        for event in events:
            if event.kind in MESSAGE_KINDS:
                entries.append(await _message_entry(event, look))
        if len(events) < _PAGE:
            return entries
        after = events[-1].seq


async def _scope_files(storage: Storage, scope_type: str, scope_id: str) -> list[tuple[FileLink, StoredFile]]:
    """Every live link of the scope, oldest first."""
    found: dict[tuple[str, str, str], tuple[FileLink, StoredFile]] = {}
    before: int | None = None
    while True:
        page = await storage.list_scope_files(scope_type, scope_id, before=before, limit=_PAGE)
        for link, file in page:
            found.setdefault((link.file_id, link.target_type, link.target_id), (link, file))
        if len(page) < _PAGE:
            break
        before = min(link.created_at for link, _ in page)
    return sorted(found.values(), key=lambda pair: pair[0].created_at)


async def _file_entries(storage: Storage, case_type: str, case_id: str, look: _Lookup) -> list[TimelineEntry]:
    entries = []
    for link, file in await _scope_files(storage, f"case:{case_type}", case_id):
        actor = await look.user(link.created_by)
        entries.append(TimelineEntry(
            at=link.created_at, kind="file", action="file.link", actor_id=link.created_by, actor_name=actor,
            summary=f"{actor} 附加了文件「{file.name}」", subject_type="file", subject_id=file.id,
            details={"file_id": file.id, "name": file.name, "size": file.size, "mime": file.mime,
                     "sha256": file.sha256, "status": file.status, "target_type": link.target_type,
                     "target_id": link.target_id},
            audit_seq=None, audit_hash=None,
        ))
    return entries


def _merge(audit: list[TimelineEntry], *others: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    # heapq.merge keeps each stream's own order (the audit chain's, even where its clocks step back)
    # and, at equal times, takes from the earlier stream first.
    return list(heapq.merge(audit, *others, key=lambda e: e.at))


async def case_timeline(storage: Storage, *, case_type: str, case_id: str, room_id: str | None) -> list[TimelineEntry]:
    """The case's audit chain merged by time with its room's messages and the files attached to it."""
    look = _Lookup(storage)
    audit = await _audit_entries(storage, case_chain(case_type, case_id), look)
    messages = await _message_entries(storage, room_id, look) if room_id else []
    files = await _file_entries(storage, case_type, case_id, look)
    return _merge(audit, messages, files)


async def disposal_record(
    storage: Storage,
    audit: AuditLog,
    *,
    case_type: str,
    case_id: str,
    title: str,
    case: dict[str, Any],
    generated_by: str,
    now: int,
    room_id: str | None = None,
) -> dict[str, Any]:
    """The disposal record (处置记录) of a case as JSON: its facts, its timeline and the chain's verification.

    `generated_by_name` is the display name of `generated_by` when that is a user id (else the same text).
    The room is `room_id`, else `case["room_id"]`. `verification.last_seq` and `last_hash` are those of the
    last audit entry exported; `ok` is the verification of the whole chain as stored right after."""
    chain = case_chain(case_type, case_id)
    if room_id is None and isinstance(case.get("room_id"), str):
        room_id = case["room_id"]
    entries = await case_timeline(storage, case_type=case_type, case_id=case_id, room_id=room_id)
    audited = [e for e in entries if e.audit_seq is not None]
    last = max(audited, key=lambda e: e.audit_seq or 0) if audited else None
    report = await audit.verify(chain)
    broken = report.broken
    return {
        "case": case,
        "title": title,
        "generated_at": now,
        "generated_by": generated_by,
        # `generated_by` may be a user id: its display name, when it is one.
        "generated_by_name": await _Lookup(storage).user(generated_by),
        "chain": chain,
        "verification": {
            "ok": report.ok,
            "records": len(audited),
            "last_seq": last.audit_seq if last else None,
            "last_hash": last.audit_hash if last else None,
            "broken": None if broken is None else {"seq": broken.seq, "record_id": broken.record_id,
                                                   "reason": broken.reason},
            "how": f"python -m server audit verify --chain {chain}",
        },
        "entries": [e.to_dict() for e in entries],
    }


# -- HTML ------------------------------------------------------------------------------------------------------------

_CASE_LABELS = {
    "id": "编号", "code": "项目编号", "title": "标题", "name": "名称", "type": "类型", "level": "等级",
    "state": "状态", "phase": "阶段", "progress": "进度", "description": "描述", "address": "地点",
    "latitude": "纬度", "longitude": "经度", "reporter_id": "上报人", "created_at": "创建时间",
    "updated_at": "更新时间", "verified_by": "核实人", "verified_at": "核实时间", "resolved_at": "处置完毕时间",
    "closed_at": "结案时间", "room_id": "群组", "investment": "投资（万元）", "owner_department_id": "牵头单位",
    "responsible_department_ids": "责任单位", "attachments": "附件", "version": "版本",
}

_CSS = """
@page { size: A4; margin: 15mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC", sans-serif;
       font-size: 12px; color: #111; margin: 24px; line-height: 1.5; }
h1 { font-size: 22px; margin: 0 0 4px; letter-spacing: 4px; text-align: center; }
h2 { font-size: 15px; margin: 20px 0 8px; border-bottom: 2px solid #333; padding-bottom: 2px; }
.subtitle { text-align: center; font-size: 15px; margin: 0 0 6px; }
.meta { text-align: center; color: #555; margin: 0 0 12px; }
table { width: 100%; border-collapse: collapse; }
th, td { border: 1px solid #999; padding: 4px 6px; vertical-align: top; text-align: left; word-break: break-word; }
th { background: #eee; white-space: nowrap; }
table.facts th { width: 9em; }
td.time { white-space: nowrap; }
.mono, code { font-family: "SFMono-Regular", Consolas, "Liberation Mono", monospace; font-size: 11px; }
.hash { word-break: break-all; }
.ok { color: #0a6b2c; font-weight: bold; }
.bad { color: #b00020; font-weight: bold; }
.verify { border: 1px solid #333; padding: 8px 12px; margin-top: 8px; }
.verify p { margin: 4px 0; }
@media print {
  body { margin: 0; }
  thead { display: table-header-group; }
  tr { page-break-inside: avoid; break-inside: avoid; }
  th { background: #eee !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fact(key: str, value: Any) -> str:
    """A case fact as display text (not yet escaped)."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int) and (key.endswith("_at") or key == "deadline"):
        return format_time(value)
    if key == "level" and isinstance(value, int):
        return LEVEL_LABELS.get(value, str(value))
    if key in ("state", "phase") and isinstance(value, str):
        return f"{STATE_LABELS.get(value, value)}（{value}）"
    if key == "progress" and isinstance(value, int):
        return f"{value}%"
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _time(value: Any) -> str:
    return format_time(value) if isinstance(value, int) and not isinstance(value, bool) else "—"


def disposal_record_html(record: dict[str, Any]) -> str:
    """The disposal record as one printable HTML page: no scripts, no external resources, every value escaped."""
    case = record.get("case") or {}
    verification = record.get("verification") or {}
    entries = record.get("entries") or []
    title = str(record.get("title", ""))

    facts = "\n".join(
        f"<tr><th>{_e(_CASE_LABELS.get(str(k), k))}</th><td>{_e(_fact(str(k), v))}</td></tr>"
        for k, v in case.items()
    )
    rows = []
    for entry in entries:
        seq, digest = entry.get("audit_seq"), entry.get("audit_hash")
        audit_cell = (f"#{_e(seq)}<br><span class=\"hash\">{_e(str(digest)[:16])}</span>"
                      if seq is not None else "")
        kind = str(entry.get("kind", ""))
        rows.append(
            "<tr>"
            f"<td class=\"time mono\">{_e(_time(entry.get('at')))}</td>"
            f"<td>{_e(entry.get('actor_name', ''))}</td>"
            f"<td>{_e(KIND_LABELS.get(kind, kind))}</td>"
            f"<td>{_e(entry.get('summary', ''))}<br><span class=\"mono\">{_e(entry.get('action', ''))}</span></td>"
            f"<td class=\"mono\">{audit_cell}</td>"
            "</tr>"
        )
    timeline = "\n".join(rows) or "<tr><td colspan=\"5\">（无记录）</td></tr>"

    ok = bool(verification.get("ok"))
    if ok:
        status = "<span class=\"ok\">完整：审计链校验通过</span>"
    else:
        broken = verification.get("broken") or {}
        status = ("<span class=\"bad\">已损坏：审计链校验未通过</span>"
                  + (f"（第 {_e(broken.get('seq'))} 条：{_e(broken.get('reason', ''))}）" if broken else ""))
    last_hash = verification.get("last_hash")
    by = record.get("generated_by_name") or record.get("generated_by", "")
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>处置记录 — {_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>处置记录</h1>
<p class="subtitle">{_e(title)}</p>
<p class="meta">生成时间 {_e(_time(record.get("generated_at")))}（北京时间）
　生成人 {_e(by)}　审计链 <span class="mono">{_e(record.get("chain", ""))}</span></p>

<h2>基本情况</h2>
<table class="facts">
{facts}
</table>

<h2>处置过程</h2>
<table class="timeline">
<thead><tr><th>时间</th><th>人员</th><th>类别</th><th>事项</th><th>审计序号 / 哈希</th></tr></thead>
<tbody>
{timeline}
</tbody>
</table>

<h2>完整性校验</h2>
<div class="verify">
<p>{status}</p>
<p>审计记录 {_e(verification.get("records", 0))} 条；最后序号 {_e(verification.get("last_seq") or "—")}</p>
<p>最后哈希 <span class="mono hash">{_e(last_hash or "—")}</span></p>
<p>校验方法：在服务器上运行 <code>{_e(verification.get("how", ""))}</code>，
结果应为“audit log intact”，且该链最后一条记录的序号与哈希与上面一致。</p>
</div>
</body>
</html>
"""
