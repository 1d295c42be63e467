"""Writing and verifying the audit log.

Records form chains: one per case (``case:incident:<id>``), one for administration
(``admin``), one per user for sign-in and security events (``user:<id>``). Each record's
hash covers its content and the previous record's hash, so editing, removing or
reordering a record breaks the chain at that point. Unrelated chains never wait for
each other: appends to one chain are ordered by a unique (chain, seq) key in storage,
so nodes racing on the same chain retry instead of forking it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from server.ids import new_id, now_ms
from server.logging import get_logger
from server.storage.ports import AuditStore
from server.storage.records import AuditRecord

GENESIS = "0" * 64
ADMIN_CHAIN = "admin"
log = get_logger("muster.audit")


def user_chain(user_id: str) -> str:
    return f"user:{user_id}"


def case_chain(case_type: str, case_id: str) -> str:
    return f"case:{case_type}:{case_id}"


def record_hash(record: AuditRecord) -> str:
    """sha256 over a canonical JSON of every field except the hash itself."""
    content = {
        "id": record.id,
        "chain": record.chain,
        "seq": record.seq,
        "at": record.at,
        "actor_id": record.actor_id,
        "device_id": record.device_id,
        "action": record.action,
        "subject_type": record.subject_type,
        "subject_id": record.subject_id,
        "details": record.details,
        "prev_hash": record.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class BrokenLink:
    chain: str
    seq: int
    record_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    chains: int
    records: int
    broken: BrokenLink | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class AuditLog:
    """Appends records to chains and verifies them."""

    def __init__(self, store: AuditStore, *, clock: Callable[[], int] = now_ms, max_retries: int = 50) -> None:
        self._store = store
        self._clock = clock
        self._max_retries = max_retries
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, chain: str) -> asyncio.Lock:
        lock = self._locks.get(chain)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[chain] = lock
        return lock

    async def record(
        self,
        *,
        chain: str,
        action: str,
        subject_type: str,
        subject_id: str,
        actor_id: str | None,
        device_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record to `chain` and return it (with its seq and hash)."""
        body = json.loads(json.dumps(details or {}, ensure_ascii=False))  # plain JSON values only
        # Within one process, appends to a chain take turns; across nodes the
        # storage's unique (chain, seq) decides and the loser retries.
        async with self._lock(chain):
            for attempt in range(self._max_retries):
                last = await self._store.last_audit_record(chain)
                draft = AuditRecord(
                    id=new_id(), chain=chain, seq=(last.seq + 1) if last else 1, at=self._clock(),
                    actor_id=actor_id, device_id=device_id, action=action, subject_type=subject_type,
                    subject_id=subject_id, details=body, prev_hash=last.hash if last else GENESIS,
                )
                final = replace(draft, hash=record_hash(draft))
                if await self._store.insert_audit_record(final):
                    log.info("audit", action=action, chain=chain, seq=final.seq, subject=f"{subject_type}:{subject_id}")
                    return final
                # Lost a race with another node: back off a random little while, so
                # two nodes that keep colliding fall out of step.
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311 (jitter, not a secret)
        raise RuntimeError(f"audit chain {chain!r} stayed contended after {self._max_retries} tries")

    async def verify(self, chain: str | None = None) -> VerifyReport:
        """Walk every chain (or one) in order; report the first record whose link is broken."""
        chains = [chain] if chain else await self._store.list_audit_chains()
        total = 0
        for name in chains:
            expected_seq, prev = 1, GENESIS
            async for record in self._store.iter_audit_chain(name):
                total += 1
                if record.seq != expected_seq:
                    return VerifyReport(len(chains), total, BrokenLink(
                        name, expected_seq, record.id,
                        f"record {expected_seq} is missing (next present is {record.seq})"))
                if record.prev_hash != prev:
                    return VerifyReport(len(chains), total, BrokenLink(
                        name, record.seq, record.id, "prev_hash does not match the previous record's hash"))
                if record_hash(record) != record.hash:
                    return VerifyReport(len(chains), total, BrokenLink(
                        name, record.seq, record.id, "content does not match its hash (record was edited)"))
                prev = record.hash
                expected_seq += 1
        return VerifyReport(len(chains), total, None)

