"""Durable scheduling: jobs are rows with a due time; a loop on each node claims due ones.

A claim is a lease: the claiming node runs the job and then deletes or re-arms it. If the
node dies, the lease runs out and another node takes the job, so no timer lives only in
memory and several nodes never run one job at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from server.ids import new_id, now_ms
from server.logging import get_logger
from server.storage.ports import JobStore
from server.storage.records import Job
from server.tasks import cancel_and_wait

# A handler runs a job and returns when to run it again (ms epoch), or None when done.
JobHandler = Callable[[Job], Awaitable[int | None]]
log = get_logger("muster.scheduler")


class Scheduler:
    def __init__(
        self, store: JobStore, *, node_id: str | None = None, poll_interval: float = 1.0, lease_ms: int = 60_000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        # Injectable so that tests move time forward instead of waiting for it.
        self.clock = clock
        self.node_id = node_id or new_id()
        self._poll = poll_interval
        self._lease_ms = lease_ms
        self._handlers: dict[str, JobHandler] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def register(self, kind: str, handler: JobHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} is already registered")
        self._handlers[kind] = handler

    async def schedule(self, kind: str, *, job_id: str, due_at: int, payload: dict[str, Any] | None = None) -> None:
        """Insert or replace the job `job_id`."""
        await self._store.schedule_job(Job(id=job_id, kind=kind, due_at=due_at, payload=payload or {}))
        if due_at <= self.clock() + int(self._poll * 1000):
            self._wake.set()

    async def cancel(self, job_id: str) -> bool:
        return await self._store.cancel_job(job_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="muster-scheduler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def run_due(self) -> int:
        """Claim and run what is due now; returns how many jobs ran."""
        jobs = await self._store.claim_due_jobs(now=self.clock(), node=self.node_id, lease_ms=self._lease_ms)
        for job in jobs:
            handler = self._handlers.get(job.kind)
            next_due: int | None = None
            if handler is None:
                log.error("no handler for job kind; dropping it", kind=job.kind, job_id=job.id)
            else:
                try:
                    next_due = await handler(job)
                except Exception:
                    log.exception("job failed; retrying later", kind=job.kind, job_id=job.id)
                    next_due = self.clock() + min(300_000, 1000 * 2 ** min(job.attempts, 8))
            await self._store.finish_job(job.id, node=self.node_id, next_due_at=next_due)
        return len(jobs)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
