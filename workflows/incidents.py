"""Incidents: reported → verified → responding → resolved → closed (and reopened).

Verifying an incident creates its room with the commander and the leads of the departments
responsible for its type (`workflows.incident_departments`); from then on every step of the
incident and its tasks is posted there as a system message and written to the case's audit chain.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from server.auth.service import Principal
from server.errors import BadRequest, Conflict, NotFound
from server.ids import new_id
from server.storage.ports import StorageConflict
from server.storage.records import Incident
from workflows.context import WorkflowContext, refusal
from workflows.engine import INCIDENTS, Refused, Who

LEVELS = {1: "I级（特别重大）", 2: "II级（重大）", 3: "III级（较大）", 4: "IV级（一般）"}
READ_ROLES = ("admin", "commander", "inspector")


def incident_out(incident: Incident, who: Who | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": incident.id, "title": incident.title, "type": incident.type, "level": incident.level,
        "description": incident.description, "address": incident.address, "latitude": incident.latitude,
        "longitude": incident.longitude, "reporter_id": incident.reporter_id, "state": incident.state,
        "created_at": incident.created_at, "updated_at": incident.updated_at, "version": incident.version,
        "attachments": list(incident.attachments), "room_id": incident.room_id, "verified_by": incident.verified_by,
        "verified_at": incident.verified_at, "resolved_at": incident.resolved_at, "closed_at": incident.closed_at,
    }
    if who is not None:
        out["actions"] = INCIDENTS.allowed(incident.state, who, incident)
    return out


class IncidentService:
    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx

    async def get(self, incident_id: str) -> Incident:
        incident = await self.ctx.storage.get_incident(incident_id)
        if incident is None:
            raise NotFound("no such incident", code="incident.not_found")
        return incident

    async def may_read(self, who: Who, incident: Incident) -> bool:
        """Commanders, inspectors and the supervision office; the reporter; members of the incident room;
        departments with a task in it."""
        if who.has(*READ_ROLES) or who.supervision or who.user_id == incident.reporter_id:
            return True
        if incident.room_id and await self.ctx.storage.get_member(incident.room_id, who.user_id):
            return True
        if who.department_id is None:
            return False
        tasks = await self.ctx.storage.list_tasks(case_type="incident", case_id=incident.id,
                                                  department_id=who.department_id, limit=1)
        return bool(tasks)

    async def may_read_principal(self, principal: Principal, incident_id: str) -> bool:
        """For files attached to the incident: whether this user may see it."""
        incident = await self.ctx.storage.get_incident(incident_id)
        return incident is not None and await self.may_read(await self.ctx.who(principal), incident)

    async def readable(self, who: Who, incident_id: str) -> Incident:
        incident = await self.get(incident_id)
        if not await self.may_read(who, incident):
            # Existence is not confirmed to people who may not see the incident.
            raise NotFound("no such incident", code="incident.not_found")
        return incident

    async def report(self, actor: Principal, *, title: str, type: str, level: int, description: str, address: str,
                     latitude: float | None, longitude: float | None, attachments: list[str],
                     client_id: str | None = None) -> Incident:
        """Report an incident (上报): anyone signed in, from the console or a phone."""
        incident, _ = await self.report_once(actor, title=title, type=type, level=level, description=description,
                                             address=address, latitude=latitude, longitude=longitude,
                                             attachments=attachments, client_id=client_id)
        return incident

    async def report_once(self, actor: Principal, *, title: str, type: str, level: int, description: str,
                          address: str, latitude: float | None, longitude: float | None, attachments: list[str],
                          client_id: str | None) -> tuple[Incident, bool]:
        """Report an incident, idempotent on the reporter's `client_id`: the incident and whether it is the one an
        earlier request with that client id made (True: nothing new is recorded, told or linked)."""
        ctx = self.ctx
        if client_id is not None:
            earlier = await ctx.storage.find_incident_by_client_id(actor.user_id, client_id)
            if earlier is not None:
                return earlier, True
        if type not in ctx.settings.incident_types:
            raise BadRequest(f"type must be one of {', '.join(ctx.settings.incident_types)}",
                             code="incident.bad_type")
        if (latitude is None) != (longitude is None):
            raise BadRequest("give both latitude and longitude, or neither", code="incident.bad_location")
        now = ctx.clock()
        files = await ctx.check_files(actor, attachments)
        incident = Incident(id=new_id(), title=title, type=type, level=level, description=description,
                            address=address, latitude=latitude, longitude=longitude, reporter_id=actor.user_id,
                            reporter_device_id=actor.device_id, state="reported", created_at=now, updated_at=now,
                            attachments=tuple(f["file_id"] for f in files), client_id=client_id)
        try:
            await ctx.storage.create_incident(incident)
        except StorageConflict:
            # Two sends of one report raced: the other stored it, and records and tells the rest.
            earlier = await ctx.storage.find_incident_by_client_id(actor.user_id, client_id) if client_id else None
            if earlier is None:
                raise
            return earlier, True
        await ctx.link_files(actor, files, case_type="incident", case_id=incident.id, target_type="incident",
                             target_id=incident.id)
        await ctx.record("incident", incident.id, actor, "incident.report", "incident", incident.id, {
            "title": title, "type": type, "level": level, "address": address, "latitude": latitude,
            "longitude": longitude, "attachments": list(incident.attachments)})
        commanders = [u.id for u in await ctx.storage.list_users(role="commander", limit=200) if not u.disabled]
        await ctx.tell(commanders, "incident.reported", incident_out(incident))
        await ctx.console.changed("incident", {"incident_id": incident.id})
        return incident, False

    async def act(self, actor: Principal, who: Who, incident_id: str, action: str, *,
                  expected_version: int | None = None, **params: Any) -> Incident:
        ctx = self.ctx
        for _attempt in range(5):
            incident = await self.readable(who, incident_id)
            if expected_version is not None and incident.version != expected_version:
                raise Conflict("the incident changed since you loaded it", code="incident.changed")
            try:
                decision = INCIDENTS.decide(action, incident.state, who, incident)
            except Refused as exc:
                raise refusal(exc) from None
            now = ctx.clock()
            changed, details = self._apply(incident, action, who, now, params)
            updated = replace(changed, state=decision.target, updated_at=now,  # type: ignore[arg-type]
                              version=incident.version + 1)
            if await ctx.storage.update_incident(updated, expected_version=incident.version):
                break
            if expected_version is not None:
                raise Conflict("the incident changed since you loaded it", code="incident.changed")
        else:
            raise Conflict("the incident keeps changing; try again", code="incident.changed")
        await ctx.record("incident", incident.id, actor, decision.transition.audit, "incident", incident.id,
                         {"from": incident.state, "to": updated.state, **details})
        if action == "verify":
            updated = await self._open_room(actor, updated)
        await ctx.post(updated.room_id, f"{await ctx.user_name(actor.user_id)} {decision.transition.label}"
                       f"「{updated.title}」", {"workflow": decision.transition.audit, "incident_id": incident.id},
                       actor)
        await ctx.tell([updated.reporter_id], "incident.changed", incident_out(updated))
        await ctx.console.changed("incident", {"incident_id": incident.id})
        return updated

    def _apply(self, incident: Incident, action: str, who: Who, now: int,
               params: dict[str, Any]) -> tuple[Incident, dict[str, Any]]:
        if action == "verify":
            level = params.get("level")
            return replace(incident, verified_by=who.user_id, verified_at=now,
                           level=int(level) if level else incident.level), {"level": level or incident.level}
        if action == "resolve":
            return replace(incident, resolved_at=now), {"summary": str(params.get("summary", ""))}
        if action == "close":
            return replace(incident, closed_at=now), {"summary": str(params.get("summary", ""))}
        if action == "reopen":
            reason = str(params.get("reason", ""))
            if not reason.strip():
                raise BadRequest("give a reason to reopen", code="incident.reason_required")
            return replace(incident, resolved_at=None, closed_at=None), {"reason": reason}
        if action == "update":
            fields = {k: v for k, v in params.items()
                      if k in ("title", "description", "address", "level", "latitude", "longitude") and v is not None}
            if not fields:
                raise BadRequest("nothing to change", code="incident.nothing_to_change")
            return replace(incident, **fields), {"changes": fields}
        return incident, {}

    async def _open_room(self, actor: Principal, incident: Incident) -> Incident:
        """The incident room: the verifying commander and the leads of the responsible departments."""
        ctx = self.ctx
        if incident.room_id is not None:
            return incident
        leads: list[str] = []
        for name in ctx.settings.incident_departments.get(incident.type, []):
            department = await ctx.department_named(name)
            if department is not None:
                leads.extend(u.id for u in await ctx.department_leads(department.id))
        members = list(dict.fromkeys([incident.reporter_id, *leads]))
        room_name = f"【{LEVELS[incident.level].split('（')[0]}】{incident.title}"[:100]
        room = await ctx.rooms.create_case_room(kind="incident", name=room_name, case_type="incident",
                                                case_id=incident.id, owner_id=actor.user_id, member_ids=members,
                                                actor=actor)
        for _attempt in range(5):
            current = await self.get(incident.id)
            with_room = replace(current, room_id=room.id, version=current.version + 1)
            if await ctx.storage.update_incident(with_room, expected_version=current.version):
                return with_room
        raise Conflict("the incident keeps changing; try again", code="incident.changed")
