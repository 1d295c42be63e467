"""HTTP routes to query and verify the audit log (admins and inspectors)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from server.http.api import Api, ApiRequest
from server.kernel import KERNEL
from server.schemas import Id, Out, Query

api = Api()
Chain = Annotated[str, StringConstraints(min_length=1, max_length=140, pattern=r"^[A-Za-z0-9_.:-]+$")]
Action = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")]


class AuditQuery(Query):
    chain: Chain | None = None
    actor_id: Id | None = None
    action: Action | None = None
    subject_type: Action | None = None
    subject_id: Id | None = None
    since: int | None = Field(default=None, ge=0, le=2**53)
    until: int | None = Field(default=None, ge=0, le=2**53)
    before: Id | None = None
    limit: int = Field(default=100, ge=1, le=500)


class AuditRecordOut(Out):
    id: str
    chain: str
    seq: int
    at: int
    actor_id: str | None
    device_id: str | None
    action: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(Out):
    records: list[AuditRecordOut]
    next_before: str | None = None


class VerifyQuery(Query):
    chain: Chain | None = None


class BrokenLinkOut(Out):
    chain: str
    seq: int
    record_id: str | None
    reason: str


class VerifyOut(Out):
    ok: bool
    chains: int
    records: int
    broken: BrokenLinkOut | None


@api.route("GET", "/api/audit", summary="Query the audit log, newest first", tags=["audit"], query=AuditQuery,
           response=AuditPage)
async def query_audit(req: ApiRequest[None, AuditQuery]) -> AuditPage:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "audit.read", subject_type="audit", subject_id="*")
    q = req.query
    records = await k.storage.list_audit_records(
        chain=q.chain, actor_id=q.actor_id, action=q.action, subject_type=q.subject_type, subject_id=q.subject_id,
        since=q.since, until=q.until, before_id=q.before, limit=q.limit,
    )
    return AuditPage(records=[AuditRecordOut.model_validate(r) for r in records],
                     next_before=records[-1].id if len(records) == q.limit else None)


@api.route("GET", "/api/audit/verify", summary="Check every hash chain (or one) and report the first broken link",
           tags=["audit"], query=VerifyQuery, response=VerifyOut)
async def verify_audit(req: ApiRequest[None, VerifyQuery]) -> VerifyOut:
    k = req.app[KERNEL]
    await k.permissions.require(req.principal, "audit.verify", subject_type="audit", subject_id="*")
    report = await k.audit.verify(req.query.chain)
    return VerifyOut(ok=report.ok, chains=report.chains, records=report.records,
                     broken=BrokenLinkOut.model_validate(report.broken) if report.broken else None)
