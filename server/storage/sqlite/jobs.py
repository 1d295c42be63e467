"""Durable jobs on SQLite: rows with a due time, claimed with a lease.

Choices where the port is silent:
- A claim adds one to `attempts`; re-arming keeps the count (the scheduler backs off on
  it after a failure) and `schedule_job` stores whatever the job says (normally 0).
- `schedule_job` replaces every field, the claim included: rescheduling a job that a node
  is running releases it, and that node's `finish_job` then leaves the new schedule alone.
- `finish_job` acts only while `node` holds the claim, expired or not: once another node
  has taken the job over, the first node's finish does nothing.
- Claims go in due order (then id); a lease has run out when `claimed_until <= now`.
"""

from __future__ import annotations

import json
import sqlite3

from server.storage.records import Job
from server.storage.sqlite.db import SqliteBase


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        due_at=row["due_at"],
        payload=json.loads(row["payload"]),
        claimed_by=row["claimed_by"],
        claimed_until=row["claimed_until"],
        attempts=row["attempts"],
    )


class SqliteJobs(SqliteBase):
    async def schedule_job(self, job: Job) -> None:
        await self.write(
            "INSERT INTO jobs (id, kind, due_at, payload, claimed_by, claimed_until, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, due_at = excluded.due_at,"
            " payload = excluded.payload, claimed_by = excluded.claimed_by,"
            " claimed_until = excluded.claimed_until, attempts = excluded.attempts",
            (
                job.id,
                job.kind,
                job.due_at,
                json.dumps(job.payload, ensure_ascii=False),
                job.claimed_by,
                job.claimed_until,
                job.attempts,
            ),
        )

    async def cancel_job(self, job_id: str) -> bool:
        return await self.write("DELETE FROM jobs WHERE id = ?", (job_id,)) > 0

    async def get_job(self, job_id: str) -> Job | None:
        row = await self.fetch_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    async def claim_due_jobs(self, *, now: int, node: str, lease_ms: int, limit: int = 100) -> list[Job]:
        if limit <= 0:
            return []
        # One UPDATE picks and claims, inside a write transaction: two claimers cannot
        # both see a job as free.
        async with self.transaction() as db:
            async with db.execute(
                "UPDATE jobs SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM jobs WHERE due_at <= ?"
                " AND (claimed_by IS NULL OR claimed_until IS NULL OR claimed_until <= ?)"
                " ORDER BY due_at, id LIMIT ?) RETURNING *",
                (node, now + lease_ms, now, now, limit),
            ) as cursor:
                rows = await cursor.fetchall()
        return sorted((_job(row) for row in rows), key=lambda job: (job.due_at, job.id))

    async def finish_job(self, job_id: str, *, node: str, next_due_at: int | None = None) -> None:
        if next_due_at is None:
            await self.write("DELETE FROM jobs WHERE id = ? AND claimed_by = ?", (job_id, node))
        else:
            await self.write(
                "UPDATE jobs SET due_at = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?",
                (next_due_at, job_id, node),
            )
