"""Durable jobs on MongoDB: documents with a due time, claimed with a lease.

Each claim is one `find_one_and_update`, atomic on its document: when two nodes race for
the same job, the server applies one update and the other's filter no longer matches, so
it moves on to the next job. A batch is claimed one job at a time, up to `limit`.

Choices where the port is silent (the same as on SQLite):
- A claim adds one to `attempts`; re-arming keeps the count (the scheduler backs off on
  it after a failure) and `schedule_job` stores whatever the job says (normally 0).
- `schedule_job` replaces every field, the claim included: rescheduling a job that a node
  is running releases it, and that node's `finish_job` then leaves the new schedule alone.
- `finish_job` acts only while `node` holds the claim, expired or not: once another node
  has taken the job over, the first node's finish does nothing.
- Claims go in due order (then id); a lease has run out when `claimed_until <= now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ReturnDocument

from server.storage.mongo.db import JOBS, Doc, MongoBase
from server.storage.records import Job


def _job(doc: Mapping[str, Any]) -> Job:
    return Job(
        id=doc["_id"],
        kind=doc["kind"],
        due_at=doc["due_at"],
        payload=doc.get("payload") or {},
        claimed_by=doc.get("claimed_by"),
        claimed_until=doc.get("claimed_until"),
        attempts=int(doc.get("attempts", 0)),
    )


class MongoJobs(MongoBase):
    async def schedule_job(self, job: Job) -> None:
        doc: Doc = {
            "kind": job.kind,
            "due_at": job.due_at,
            "payload": job.payload,
            "claimed_by": job.claimed_by,
            "claimed_until": job.claimed_until,
            "attempts": job.attempts,
        }
        await self.collection(JOBS).replace_one({"_id": job.id}, doc, upsert=True)

    async def cancel_job(self, job_id: str) -> bool:
        result = await self.collection(JOBS).delete_one({"_id": job_id})
        return result.deleted_count > 0

    async def get_job(self, job_id: str) -> Job | None:
        doc = await self.collection(JOBS).find_one({"_id": job_id})
        return _job(doc) if doc else None

    async def claim_due_jobs(self, *, now: int, node: str, lease_ms: int, limit: int = 100) -> list[Job]:
        free: Doc = {"due_at": {"$lte": now}, "$or": [{"claimed_by": None}, {"claimed_until": {"$lte": now}}]}
        claimed: list[Job] = []
        while len(claimed) < limit:
            doc = await self.collection(JOBS).find_one_and_update(
                free,
                {"$set": {"claimed_by": node, "claimed_until": now + lease_ms}, "$inc": {"attempts": 1}},
                sort=[("due_at", 1), ("_id", 1)],
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                break
            claimed.append(_job(doc))
        return claimed

    async def finish_job(self, job_id: str, *, node: str, next_due_at: int | None = None) -> None:
        mine = {"_id": job_id, "claimed_by": node}
        if next_due_at is None:
            await self.collection(JOBS).delete_one(mine)
        else:
            await self.collection(JOBS).update_one(
                mine, {"$set": {"due_at": next_due_at, "claimed_by": None, "claimed_until": None}}
            )
