"""The durable job contract for every storage backend (see conftest)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from server.ids import new_id
from server.storage.ports import Storage
from server.storage.records import Job

LEASE = 60_000


def make_job(due_at: int, **kw: object) -> Job:
    base = dict(id=new_id(), kind="task.urge", due_at=due_at, payload={"task_id": "t1", "说明": "催办", "n": [1, 2]})
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


async def test_schedule_replace_get_and_cancel(storage: Storage) -> None:
    job = make_job(5000)
    assert await storage.get_job(job.id) is None
    await storage.schedule_job(job)
    assert await storage.get_job(job.id) == job
    moved = replace(job, due_at=9000, payload={"task_id": "t2"}, kind="task.inspect")
    await storage.schedule_job(moved)  # same id: replaced, not added
    assert await storage.get_job(job.id) == moved
    assert [j.id for j in await storage.claim_due_jobs(now=10_000, node="a", lease_ms=LEASE)] == [job.id]
    assert await storage.cancel_job(job.id) is True
    assert await storage.cancel_job(job.id) is False
    assert await storage.get_job(job.id) is None


async def test_claim_takes_due_jobs_in_order_once(storage: Storage) -> None:
    late, early, future = make_job(2000), make_job(1000), make_job(9000)
    for job in (late, early, future):
        await storage.schedule_job(job)
    claimed = await storage.claim_due_jobs(now=2000, node="a", lease_ms=LEASE)
    assert claimed == [
        replace(early, claimed_by="a", claimed_until=2000 + LEASE, attempts=1),
        replace(late, claimed_by="a", claimed_until=2000 + LEASE, attempts=1),
    ]
    assert await storage.get_job(early.id) == claimed[0]
    # held: nobody else (nor the same node) gets them again while the lease runs
    assert await storage.claim_due_jobs(now=2500, node="b", lease_ms=LEASE) == []
    assert await storage.claim_due_jobs(now=2500, node="a", lease_ms=LEASE) == []
    assert await storage.get_job(future.id) == future


async def test_claim_respects_the_limit(storage: Storage) -> None:
    jobs = [make_job(1000 + i) for i in range(5)]
    for job in jobs:
        await storage.schedule_job(job)
    assert await storage.claim_due_jobs(now=5000, node="a", lease_ms=LEASE, limit=0) == []
    first = await storage.claim_due_jobs(now=5000, node="a", lease_ms=LEASE, limit=2)
    second = await storage.claim_due_jobs(now=5000, node="b", lease_ms=LEASE, limit=2)
    rest = await storage.claim_due_jobs(now=5000, node="c", lease_ms=LEASE, limit=2)
    assert [[j.id for j in batch] for batch in (first, second, rest)] == [
        [jobs[0].id, jobs[1].id],
        [jobs[2].id, jobs[3].id],
        [jobs[4].id],
    ]


async def test_an_expired_lease_lets_another_node_take_over(storage: Storage) -> None:
    job = make_job(1000)
    await storage.schedule_job(job)
    assert len(await storage.claim_due_jobs(now=1000, node="a", lease_ms=500)) == 1
    assert await storage.claim_due_jobs(now=1499, node="b", lease_ms=500) == []
    taken = await storage.claim_due_jobs(now=1500, node="b", lease_ms=500)
    assert taken == [replace(job, claimed_by="b", claimed_until=2000, attempts=2)]
    # the first node comes back late: its finish must not undo the second node's claim
    await storage.finish_job(job.id, node="a")
    await storage.finish_job(job.id, node="a", next_due_at=50_000)
    assert await storage.get_job(job.id) == taken[0]
    await storage.finish_job(job.id, node="b")
    assert await storage.get_job(job.id) is None


async def test_finish_re_arms_and_releases(storage: Storage) -> None:
    job = make_job(1000)
    await storage.schedule_job(job)
    await storage.claim_due_jobs(now=1000, node="a", lease_ms=LEASE)
    await storage.finish_job(job.id, node="a", next_due_at=8000)
    # released and due later; the attempt count is kept (the scheduler backs off on it)
    assert await storage.get_job(job.id) == replace(job, due_at=8000, attempts=1)
    assert await storage.claim_due_jobs(now=7999, node="b", lease_ms=LEASE) == []
    again = await storage.claim_due_jobs(now=8000, node="b", lease_ms=LEASE)
    assert again == [replace(job, due_at=8000, claimed_by="b", claimed_until=8000 + LEASE, attempts=2)]
    await storage.finish_job(job.id, node="b")
    assert await storage.get_job(job.id) is None


async def test_finish_by_a_node_not_holding_the_job_does_nothing(storage: Storage) -> None:
    held, free = make_job(1000), make_job(1000)
    await storage.schedule_job(held)
    (claimed,) = await storage.claim_due_jobs(now=1000, node="a", lease_ms=LEASE, limit=1)
    await storage.schedule_job(free)
    for node in ("b", ""):
        await storage.finish_job(held.id, node=node)
        await storage.finish_job(held.id, node=node, next_due_at=99)
    assert await storage.get_job(held.id) == claimed
    await storage.finish_job(free.id, node="a")  # nobody holds it: not even a deletes it
    await storage.finish_job(free.id, node="a", next_due_at=99)
    assert await storage.get_job(free.id) == free
    await storage.finish_job("nope", node="a")  # unknown: nothing happens


async def test_rescheduling_a_running_job_releases_it(storage: Storage) -> None:
    job = make_job(1000)
    await storage.schedule_job(job)
    await storage.claim_due_jobs(now=1000, node="a", lease_ms=LEASE)
    moved = replace(job, due_at=20_000)
    await storage.schedule_job(moved)
    await storage.finish_job(job.id, node="a")  # the old run ends: the new schedule stays
    assert await storage.get_job(job.id) == moved


async def test_concurrent_claimers_never_share_a_job(storage: Storage) -> None:
    jobs = [make_job(1000 + i % 5) for i in range(60)]
    for job in jobs:
        await storage.schedule_job(job)
    batches = await asyncio.gather(
        *(storage.claim_due_jobs(now=2000, node=f"node{i}", lease_ms=LEASE, limit=10) for i in range(10))
    )
    claimed = [job.id for batch in batches for job in batch]
    assert len(claimed) == len(set(claimed)) == 60
    for i, batch in enumerate(batches):
        assert all(job.claimed_by == f"node{i}" and job.attempts == 1 for job in batch)
        assert [await storage.get_job(job.id) for job in batch] == batch
    assert await storage.claim_due_jobs(now=2000, node="late", lease_ms=LEASE) == []
