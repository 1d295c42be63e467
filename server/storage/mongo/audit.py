"""The audit log on MongoDB: insert and read only.

Nothing here updates or deletes a record. MongoDB has no triggers to refuse edits the way
the SQLite schema does; give Muster's database user only find, insert and createIndex on `audit_log`
to get that guarantee from the server, and `audit verify` catches edits made around it.

`details` is stored as a sub-document, so it can be queried in the shell. Values are the
plain JSON the audit service produces; BSON cannot hold integers beyond 64 bits, so such a
value fails the insert instead of being stored differently from what was hashed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.storage.mongo.db import AUDIT_LOG, Doc, MongoBase
from server.storage.records import AuditRecord

# Records per page when walking a chain: each page is one query on the (chain, seq) index.
CHAIN_PAGE = 500


def _record(doc: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=doc["_id"],
        chain=doc["chain"],
        seq=doc["seq"],
        at=doc["at"],
        actor_id=doc["actor_id"],
        device_id=doc["device_id"],
        action=doc["action"],
        subject_type=doc["subject_type"],
        subject_id=doc["subject_id"],
        details=doc["details"],
        prev_hash=doc["prev_hash"],
        hash=doc["hash"],
    )


class MongoAudit(MongoBase):
    async def last_audit_record(self, chain: str) -> AuditRecord | None:
        doc = await self.collection(AUDIT_LOG).find_one({"chain": chain}, sort=[("seq", -1)])
        return _record(doc) if doc else None

    async def insert_audit_record(self, record: AuditRecord) -> bool:
        doc: Doc = {
            "_id": record.id,
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
            "hash": record.hash,
        }
        try:
            await self.collection(AUDIT_LOG).insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def list_audit_records(
        self,
        *,
        chain: str | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        subject_type: str | None = None,
        subject_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        if limit <= 0:  # MongoDB reads a limit of 0 as "no limit"
            return []
        query: Doc = {}
        for field, value in (
            ("chain", chain),
            ("actor_id", actor_id),
            ("action", action),
            ("subject_type", subject_type),
            ("subject_id", subject_id),
        ):
            if value is not None:
                query[field] = value
        at: Doc = {}
        if since is not None:
            at["$gte"] = since
        if until is not None:
            at["$lt"] = until
        if at:
            query["at"] = at
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        cursor = self.collection(AUDIT_LOG).find(query, sort=[("_id", -1)], limit=limit, batch_size=limit)
        return [_record(doc) async for doc in cursor]

    async def iter_audit_chain(self, chain: str) -> AsyncIterator[AuditRecord]:
        # Keyset paging rather than one long cursor: a slow reader cannot hit the
        # server's idle-cursor timeout, and each page survives a failover on its own.
        query: Doc = {"chain": chain}
        while True:
            cursor = self.collection(AUDIT_LOG).find(query, sort=[("seq", 1)], limit=CHAIN_PAGE, batch_size=CHAIN_PAGE)
            page = [_record(doc) async for doc in cursor]
            for record in page:
                yield record
            if len(page) < CHAIN_PAGE:
                return
            query = {"chain": chain, "seq": {"$gt": page[-1].seq}}

    async def list_audit_chains(self) -> list[str]:
        # A $group streams through a cursor; `distinct` would cap the answer at 16 MB.
        cursor = await self.collection(AUDIT_LOG).aggregate(
            [{"$sort": {"chain": 1}}, {"$group": {"_id": "$chain"}}, {"$sort": {"_id": 1}}]
        )
        return [doc["_id"] async for doc in cursor]
