"""A MongoDB wire-protocol stand-in for tests. It is NOT a MongoDB server.

No MongoDB server can be installed on the test machines, so this gives the real
``pymongo.AsyncMongoClient`` something to talk to: ``mockupdb`` speaks the wire
protocol (handshake, OP_MSG framing) and every command is executed on an in-memory
``mongomock`` client. The driver's own code paths run unchanged: command building,
server selection, cursors and ``getMore``, and error parsing (a duplicate key comes
back as a write error or a command error with code 11000, exactly as from a server,
so the driver raises ``DuplicateKeyError`` itself).

It answers only the commands listed in ``MongoStandin.COMMANDS``, and only the
options each of them lists; anything else is refused with an error reply (code 59
for an unknown command, 238 for an unknown option or a feature mongomock lacks), so
a gap fails loudly instead of being silently ignored.

It advertises a standalone MongoDB 7.0 (wire version 21) with logical sessions, like
a real standalone ``mongod``: the driver sends ``lsid`` and ``endSessions``, which are
accepted and ignored; transaction numbers are refused the way a standalone refuses them.

Commands run one at a time (one lock), so every single-document write is atomic, as on
a server; there is no concurrency inside the stand-in to find races with.

GridFS (pymongo's ``AsyncGridFSBucket``) runs on it unchanged: its files and chunks are
ordinary collections, served by the same commands, and binary chunk data round-trips.

Unique indexes: partial ones (``partialFilterExpression``) leave documents outside the
filter out, both when the index is built and on later writes, like a server. Known gaps,
from mongomock: a *sparse* unique index treats an explicit null like a missing field (a
server indexes the null), and a duplicate key caused by an update does not name the index.

Usage::

    with MongoStandin() as url:
        client = AsyncMongoClient(url)
"""

from __future__ import annotations

import logging
import secrets
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar

import bson
import mongomock
from bson.int64 import Int64
from mockupdb import MockupDB, OpMsg, Request
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError, OperationFailure, WriteError

log = logging.getLogger(__name__)

Doc = dict[str, Any]

MAX_WIRE_VERSION = 21  # MongoDB 7.0
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
DEFAULT_FIRST_BATCH = 101  # what a real server puts in a first batch when not told
# A batch is cut before it would outgrow one BSON document, like a server does.
_BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 64 * 1024
_OP_MSG_MORE_TO_COME = 1 << 1

# Arguments the driver may add to any command; they mean nothing to mongomock.
_GENERIC_ARGS = frozenset(
    {
        "lsid",
        "writeConcern",
        "readConcern",
        "maxTimeMS",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
    }
)
_TRANSACTION_ARGS = frozenset({"txnNumber", "startTransaction", "autocommit"})

_CODE_NAMES = {
    1: "InternalError",
    2: "BadValue",
    9: "FailedToParse",
    13: "Unauthorized",
    20: "IllegalOperation",
    26: "NamespaceNotFound",
    43: "CursorNotFound",
    59: "CommandNotFound",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    238: "NotImplemented",
    11000: "DuplicateKey",
}


class CommandFailed(Exception):
    """A command error to send back as ``{"ok": 0, "code": ..., "errmsg": ...}``."""

    def __init__(self, code: int, errmsg: str, **extra: Any) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def reply(self) -> Doc:
        return {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": _CODE_NAMES.get(self.code, "UnknownError"),
            **self.extra,
        }


def _not_implemented(what: str) -> CommandFailed:
    return CommandFailed(238, f"stand-in does not implement {what}")


def _check_options(command: str, body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = set(body) - {command, *allowed}
    if unknown:
        raise _not_implemented(f"option(s) {sorted(unknown)} of {command}")


def _sort_spec(sort: Mapping[str, Any] | None) -> list[tuple[str, Any]] | None:
    if not sort:
        return None
    for key, direction in sort.items():
        if direction not in (1, -1):
            raise _not_implemented(f"sort direction {direction!r} on {key!r}")
    return [(key, int(direction)) for key, direction in sort.items()]


def _non_negative(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandFailed(14, f"{key} must be a number")
    if value < 0:
        raise CommandFailed(2, f"{key} must be non-negative, not {value}")
    return value


@dataclass
class _Cursor:
    namespace: str
    docs: list[Doc]
    position: int = 0


@dataclass(frozen=True)
class _IndexSpec:
    name: str
    key: tuple[tuple[str, Any], ...]
    options: tuple[tuple[str, Any], ...]


_INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")


def _index_options(spec: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    options: list[tuple[str, Any]] = []
    for option in _INDEX_OPTIONS:
        value = spec.get(option)
        if value in (None, False):
            continue
        options.append((option, bson.encode({"v": value}) if isinstance(value, Mapping) else value))
    return tuple(options)


class MongoStandin:
    """A mockupdb server that executes MongoDB commands on mongomock. Not a real MongoDB.

    ``start()`` returns a ``mongodb://host:port`` URL; ``stop()`` closes every
    connection and joins the server's threads. Databases live as long as the
    stand-in; give each test its own database name (and drop it afterwards).
    """

    COMMANDS: ClassVar[tuple[str, ...]] = (
        "hello",
        "isMaster",
        "ismaster",
        "ping",
        "endSessions",
        "insert",
        "find",
        "getMore",
        "killCursors",
        "update",
        "delete",
        "findAndModify",
        "aggregate",
        "count",
        "distinct",
        "createIndexes",
        "listIndexes",
        "drop",
        "dropDatabase",
    )

    def __init__(self) -> None:
        self._mongo: mongomock.MongoClient[Doc] = mongomock.MongoClient()
        # mongomock is not thread-safe and mockupdb serves every connection on its
        # own thread: one command at a time, which also makes each command atomic.
        self._lock = threading.Lock()
        self._cursors: dict[int, _Cursor] = {}
        self._connection_ids = 0
        self._server: MockupDB | None = None
        self._handlers: dict[str, Callable[[str, Doc], Doc]] = {
            "hello": self._hello,
            "isMaster": self._hello,
            "ismaster": self._hello,
            "ping": self._ok,
            "endSessions": self._ok,
            "insert": self._insert,
            "find": self._find,
            "getMore": self._get_more,
            "killCursors": self._kill_cursors,
            "update": self._update,
            "delete": self._delete,
            "findAndModify": self._find_and_modify,
            "aggregate": self._aggregate,
            "count": self._count,
            "distinct": self._distinct,
            "createIndexes": self._create_indexes,
            "listIndexes": self._list_indexes,
            "drop": self._drop,
            "dropDatabase": self._drop_database,
        }
        assert set(self._handlers) == set(self.COMMANDS)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> str:
        """Listen on a free local port; returns the URL to connect to."""
        if self._server is not None:
            raise RuntimeError("stand-in already started")
        # No auto_ismaster: the handler below answers hello/isMaster itself, so the
        # handshake advertises exactly what a standalone mongod 7.0 would.
        server = MockupDB(port=None)
        server.autoresponds(self._respond)
        port = server.run()
        self._server = server
        return f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def stop(self) -> None:
        """Close every client connection and join the server's threads."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        with self._lock:
            self._cursors.clear()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- dispatch ----------------------------------------------------------------

    def _respond(self, request: Request) -> bool:
        """mockupdb handler: answer every request (never leave the client waiting)."""
        if not request.is_command:
            # Legacy opcodes: the driver has not sent these since MongoDB 3.6.
            return bool(request.fail("stand-in speaks OP_MSG commands only"))
        try:
            with self._lock:
                reply = self._execute(request)
        except CommandFailed as failure:
            reply = failure.reply()
        except NotImplementedError as exc:
            reply = _not_implemented(f"this {request.command_name} (mongomock: {exc})").reply()
        except OperationFailure as exc:
            reply = CommandFailed(exc.code or 2, str(exc)).reply()
        except Exception as exc:
            log.error("stand-in failed on %r:\n%s", request, traceback.format_exc())
            reply = CommandFailed(1, f"stand-in failed: {type(exc).__name__}: {exc}").reply()
        if isinstance(request, OpMsg) and request.flags & _OP_MSG_MORE_TO_COME:
            return True  # unacknowledged write: the client expects no reply
        return bool(request.replies(reply))

    def _execute(self, request: Request) -> Doc:
        doc: Mapping[str, Any] = request.doc
        name = request.command_name
        database = doc.get("$db") or request.namespace
        if _TRANSACTION_ARGS & doc.keys():
            raise CommandFailed(20, "Transaction numbers are only allowed on a replica set member or mongos")
        concern = doc.get("writeConcern") or {}
        if isinstance(concern.get("w"), int) and concern["w"] > 1:
            raise CommandFailed(2, "cannot use 'w' > 1 when a host is not replicated")
        body = {k: v for k, v in doc.items() if not k.startswith("$") and k not in _GENERIC_ARGS}
        handler = self._handlers.get(name)
        if handler is None:
            raise CommandFailed(59, f"stand-in does not implement {name}")
        return handler(database, body)

    def _collection(self, database: str, name: Any) -> mongomock.Collection[Doc]:
        if not isinstance(name, str) or not name:
            raise CommandFailed(73, f"collection name must be a non-empty string, not {name!r}")
        return self._mongo[database][name]

    def _exists(self, database: str, name: str) -> bool:
        return name in self._mongo[database].list_collection_names()

    # -- cursors -----------------------------------------------------------------

    def _batch(self, cursor: _Cursor, size: int | None) -> list[Doc]:
        batch: list[Doc] = []
        total = 0
        while cursor.position < len(cursor.docs) and (size is None or len(batch) < size):
            doc = cursor.docs[cursor.position]
            total += len(bson.encode(doc))
            if batch and total > _BATCH_BYTES:
                break
            batch.append(doc)
            cursor.position += 1
        return batch

    def _open_cursor(self, namespace: str, docs: list[Doc], batch_size: int | None, *, single: bool = False) -> Doc:
        cursor = _Cursor(namespace, docs)
        first = self._batch(cursor, DEFAULT_FIRST_BATCH if batch_size is None else batch_size)
        cursor_id = 0
        if not single and cursor.position < len(docs):
            cursor_id = secrets.randbits(62) + 1
            self._cursors[cursor_id] = cursor
        return {"cursor": {"firstBatch": first, "id": Int64(cursor_id), "ns": namespace}, "ok": 1.0}

    def _get_more(self, database: str, body: Doc) -> Doc:
        _check_options("getMore", body, ("collection", "batchSize"))
        cursor_id = int(body["getMore"])
        namespace = f"{database}.{body.get('collection')}"
        cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise CommandFailed(43, f"cursor id {cursor_id} not found")
        if cursor.namespace != namespace:
            raise CommandFailed(
                13, f"Requested getMore on namespace '{namespace}', but cursor belongs to '{cursor.namespace}'"
            )
        size = body.get("batchSize") or None
        batch = self._batch(cursor, size)
        if cursor.position >= len(cursor.docs):
            del self._cursors[cursor_id]
            cursor_id = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": namespace}, "ok": 1.0}

    def _kill_cursors(self, database: str, body: Doc) -> Doc:
        _check_options("killCursors", body, ("cursors",))
        killed: list[Any] = []
        missing: list[Any] = []
        for cursor_id in body.get("cursors", []):
            (killed if self._cursors.pop(int(cursor_id), None) is not None else missing).append(cursor_id)
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": missing,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    def _forget_cursors(self, database: str, collection: str | None = None) -> None:
        def doomed(namespace: str) -> bool:
            if collection is None:
                return namespace.startswith(f"{database}.")
            return namespace == f"{database}.{collection}"

        for cursor_id in [i for i, c in self._cursors.items() if doomed(c.namespace)]:
            del self._cursors[cursor_id]

    # -- commands ----------------------------------------------------------------

    def _ok(self, database: str, body: Doc) -> Doc:
        return {"ok": 1.0}

    def _hello(self, database: str, body: Doc) -> Doc:
        self._connection_ids += 1
        return {
            "helloOk": True,
            "ismaster": True,
            "isWritablePrimary": True,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": datetime.now(UTC),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": self._connection_ids,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }

    def _insert(self, database: str, body: Doc) -> Doc:
        _check_options("insert", body, ("documents", "ordered", "bypassDocumentValidation"))
        collection = self._collection(database, body["insert"])
        inserted, errors = 0, []
        for index, document in enumerate(body.get("documents", [])):
            doc = dict(document)
            try:
                collection.insert_one(doc)
            except (WriteError, bson.errors.InvalidDocument, ValueError) as exc:
                errors.append(self._write_error(index, exc, collection, doc))
                if body.get("ordered", True):
                    break
            else:
                inserted += 1
        return self._write_reply(inserted, errors)

    def _update(self, database: str, body: Doc) -> Doc:
        _check_options("update", body, ("updates", "ordered", "bypassDocumentValidation"))
        collection = self._collection(database, body["update"])
        matched, modified, upserted, errors = 0, 0, [], []
        for index, spec in enumerate(body.get("updates", [])):
            _check_options(
                "update statement", {"update statement": 1, **spec}, ("q", "u", "upsert", "multi", "arrayFilters")
            )
            try:
                result = self._apply_update(
                    collection,
                    spec.get("q") or {},
                    spec["u"],
                    upsert=bool(spec.get("upsert")),
                    multi=bool(spec.get("multi")),
                    array_filters=spec.get("arrayFilters"),
                )
            except (WriteError, ValueError) as exc:
                errors.append(self._write_error(index, exc, collection, None))
                if body.get("ordered", True):
                    break
                continue
            matched += result["n"]
            modified += result["nModified"]
            if result.get("upserted") is not None:
                upserted.append({"index": index, "_id": result["upserted"]})
        reply = self._write_reply(matched, errors)
        reply["nModified"] = modified
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _apply_update(
        self,
        collection: mongomock.Collection[Doc],
        query: Mapping[str, Any],
        update: Any,
        *,
        upsert: bool,
        multi: bool = False,
        array_filters: list[Any] | None = None,
    ) -> Doc:
        """Run one update statement; returns mongomock's raw result (n, nModified, upserted)."""
        try:
            if isinstance(update, list) or (update and all(key.startswith("$") for key in update)):
                # A pipeline or an operator update.
                if isinstance(update, list) and array_filters:
                    raise CommandFailed(72, "arrayFilters may not be specified for pipeline-style updates")
                method = collection.update_many if multi else collection.update_one
                result = method(query, update, upsert=upsert, array_filters=array_filters)
            else:
                if multi:
                    raise CommandFailed(9, "multi update is not supported for replacement-style update")
                result = collection.replace_one(query, update, upsert=upsert)
        except NotImplementedError as exc:
            raise _not_implemented(f"this update (mongomock: {exc})") from None
        raw = result.raw_result
        assert raw is not None
        return dict(raw)

    def _delete(self, database: str, body: Doc) -> Doc:
        _check_options("delete", body, ("deletes", "ordered"))
        collection = self._collection(database, body["delete"])
        deleted = 0
        for spec in body.get("deletes", []):
            _check_options("delete statement", {"delete statement": 1, **spec}, ("q", "limit"))
            if spec.get("limit", 0) not in (0, 1):
                raise CommandFailed(9, "The limit field in delete objects must be 0 or 1")
            method = collection.delete_one if spec.get("limit") else collection.delete_many
            deleted += method(spec.get("q") or {}).deleted_count
        return {"n": deleted, "ok": 1.0}

    def _find(self, database: str, body: Doc) -> Doc:
        _check_options("find", body, ("filter", "sort", "projection", "skip", "limit", "batchSize", "singleBatch"))
        collection = self._collection(database, body["find"])
        skip = _non_negative(body, "skip")
        limit = _non_negative(body, "limit")
        batch_size = body.get("batchSize")
        try:
            docs = list(
                collection.find(
                    body.get("filter") or {},
                    body.get("projection") or None,
                    skip=skip,
                    limit=limit,
                    sort=_sort_spec(body.get("sort")),
                )
            )
        except NotImplementedError as exc:
            raise _not_implemented(f"this find (mongomock: {exc})") from None
        single = bool(body.get("singleBatch"))
        if single and batch_size is None:
            batch_size = limit or DEFAULT_FIRST_BATCH
        return self._open_cursor(collection.full_name, docs, batch_size, single=single)

    def _find_and_modify(self, database: str, body: Doc) -> Doc:
        _check_options(
            "findAndModify",
            body,
            (
                "query",
                "sort",
                "remove",
                "update",
                "new",
                "fields",
                "upsert",
                "arrayFilters",
                "bypassDocumentValidation",
            ),
        )
        collection = self._collection(database, body["findAndModify"])
        query = body.get("query") or {}
        fields = body.get("fields") or None
        remove, update = bool(body.get("remove")), body.get("update")
        new, upsert = bool(body.get("new")), bool(body.get("upsert"))
        if remove == (update is not None):
            raise CommandFailed(9, "Either an update or remove=true must be specified")
        if remove and (new or upsert):
            raise CommandFailed(9, "Cannot specify remove=true together with new=true or upsert=true")
        found = collection.find_one(query, sort=_sort_spec(body.get("sort")))
        value: Doc | None = None
        last_error: Doc
        try:
            if found is not None:
                key = {"_id": found["_id"]}
                before = collection.find_one(key, fields)
                if remove:
                    collection.delete_one(key)
                    value, last_error = before, {"n": 1}
                else:
                    self._apply_update(collection, key, update, upsert=False, array_filters=body.get("arrayFilters"))
                    value = collection.find_one(key, fields) if new else before
                    last_error = {"n": 1, "updatedExisting": True}
            elif upsert:
                result = self._apply_update(
                    collection, query, update, upsert=True, array_filters=body.get("arrayFilters")
                )
                if new:
                    value = collection.find_one({"_id": result["upserted"]}, fields)
                last_error = {"n": 1, "updatedExisting": False, "upserted": result["upserted"]}
            else:
                last_error = {"n": 0} if remove else {"n": 0, "updatedExisting": False}
        except (WriteError, ValueError) as exc:
            error = self._write_error(0, exc, collection, None)
            raise CommandFailed(error["code"], error["errmsg"]) from None
        return {"lastErrorObject": last_error, "value": value, "ok": 1.0}

    def _aggregate(self, database: str, body: Doc) -> Doc:
        _check_options("aggregate", body, ("pipeline", "cursor", "allowDiskUse", "bypassDocumentValidation"))
        if not isinstance(body["aggregate"], str):
            raise _not_implemented("database-level aggregate")
        collection = self._collection(database, body["aggregate"])
        if not isinstance(body.get("cursor"), Mapping):
            raise CommandFailed(9, "The 'cursor' option is required, except for aggregate with the explain argument")
        try:
            docs = list(collection.aggregate(body.get("pipeline", [])))
        except NotImplementedError as exc:
            raise _not_implemented(f"this pipeline (mongomock: {exc})") from None
        except OperationFailure as exc:
            raise CommandFailed(exc.code or 2, str(exc)) from None
        return self._open_cursor(collection.full_name, docs, body["cursor"].get("batchSize"))

    def _count(self, database: str, body: Doc) -> Doc:
        _check_options("count", body, ("query", "skip", "limit"))
        collection = self._collection(database, body["count"])
        skip, limit = _non_negative(body, "skip"), _non_negative(body, "limit")
        kwargs: Doc = {"skip": skip, "limit": limit} if limit else {"skip": skip}
        return {"n": collection.count_documents(body.get("query") or {}, **kwargs), "ok": 1.0}

    def _distinct(self, database: str, body: Doc) -> Doc:
        _check_options("distinct", body, ("key", "query"))
        collection = self._collection(database, body["distinct"])
        return {"values": collection.distinct(body["key"], body.get("query") or None), "ok": 1.0}

    def _create_indexes(self, database: str, body: Doc) -> Doc:
        _check_options("createIndexes", body, ("indexes", "commitQuorum"))
        collection = self._collection(database, body["createIndexes"])
        existed = self._exists(database, collection.name)
        current = self._index_specs(collection)
        before = len(current)
        for raw in body.get("indexes", []):
            _check_options("index", {"index": 1, **raw}, ("key", "name", "v", "background", *_INDEX_OPTIONS))
            key = tuple((field, int(d) if isinstance(d, int | float) else d) for field, d in raw["key"].items())
            for field, direction in key:
                if direction not in (1, -1):
                    raise _not_implemented(f"index type {direction!r} on {field!r}")
            wanted = _IndexSpec(raw["name"], key, _index_options(raw))
            same_name = next((spec for spec in current if spec.name == wanted.name), None)
            same_key = next((spec for spec in current if spec.key == wanted.key), None)
            if same_name is not None and same_name.key != wanted.key:
                raise CommandFailed(86, f"An existing index has the same name as the requested index: {wanted.name}")
            if same_key is not None and same_key.name != wanted.name:
                raise CommandFailed(85, f"Index already exists with a different name: {same_key.name}")
            if same_name is not None and same_name.options != wanted.options:
                raise CommandFailed(
                    85,
                    f"An existing index has the same name as the requested index but different options: {wanted.name}",
                )
            if same_name is not None:
                continue  # already there, as asked: nothing to do, like a server
            options = {option: raw[option] for option in _INDEX_OPTIONS if option in raw}
            duplicate = CommandFailed(
                11000, f"E11000 duplicate key error collection: {collection.full_name} index: {wanted.name}"
            )
            partial = options.get("partialFilterExpression")
            if options.get("unique") and partial is not None:
                # mongomock checks existing documents against a new unique index without its
                # filter (so two rooms without a direct_key would "collide"): check here, the
                # way a server does, then mark the index unique for later writes.
                if self._partial_duplicates(collection, key, partial):
                    raise duplicate
                del options["unique"]
                collection.create_index(list(key), name=wanted.name, **options)
                collection._store.indexes[wanted.name]["unique"] = True
            else:
                try:
                    collection.create_index(list(key), name=wanted.name, **options)
                except DuplicateKeyError:
                    raise duplicate from None
            current.append(wanted)
        reply: Doc = {
            "numIndexesBefore": before,
            "numIndexesAfter": len(current),
            "createdCollectionAutomatically": not existed,
            "ok": 1.0,
        }
        if len(current) == before:
            reply["note"] = "all indexes already exist"
        return reply

    def _partial_duplicates(
        self, collection: mongomock.Collection[Doc], key: tuple[tuple[str, Any], ...], partial: Mapping[str, Any]
    ) -> bool:
        """Whether two documents inside a partial index's filter share its key."""
        seen: set[bytes] = set()
        for doc in collection.find(partial):
            value = bson.encode({"key": [_field(doc, field) for field, _ in key]})
            if value in seen:
                return True
            seen.add(value)
        return False

    def _index_specs(self, collection: mongomock.Collection[Doc]) -> list[_IndexSpec]:
        specs = [_IndexSpec("_id_", (("_id", 1),), ())]
        for info in collection.list_indexes():
            if info["name"] != "_id_":
                key = tuple((field, int(d) if isinstance(d, int | float) else d) for field, d in info["key"].items())
                specs.append(_IndexSpec(info["name"], key, _index_options(info)))
        return specs

    def _list_indexes(self, database: str, body: Doc) -> Doc:
        _check_options("listIndexes", body, ("cursor",))
        collection = self._collection(database, body["listIndexes"])
        if not self._exists(database, collection.name):
            raise CommandFailed(26, f"ns does not exist: {collection.full_name}")
        docs = [dict(info) for info in collection.list_indexes()]
        return self._open_cursor(collection.full_name, docs, (body.get("cursor") or {}).get("batchSize"))

    def _drop(self, database: str, body: Doc) -> Doc:
        _check_options("drop", body, ())
        collection = self._collection(database, body["drop"])
        self._forget_cursors(database, collection.name)
        indexes = len(self._index_specs(collection)) if self._exists(database, collection.name) else 0
        self._mongo[database].drop_collection(collection.name)
        return {"nIndexesWas": indexes, "ns": collection.full_name, "ok": 1.0}

    def _drop_database(self, database: str, body: Doc) -> Doc:
        _check_options("dropDatabase", body, ())
        self._forget_cursors(database)
        self._mongo.drop_database(database)
        return {"dropped": database, "ok": 1.0}

    # -- write results -------------------------------------------------------------

    def _write_reply(self, n: int, errors: list[Doc]) -> Doc:
        reply: Doc = {"n": n, "ok": 1.0}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _write_error(
        self, index: int, exc: Exception, collection: mongomock.Collection[Doc], doc: Mapping[str, Any] | None
    ) -> Doc:
        if isinstance(exc, DuplicateKeyError):
            error: Doc = {"index": index, "code": 11000}
            found = self._duplicate_of(collection, doc) if doc is not None else None
            if found is None:
                # mongomock does not say which unique index refused an update.
                error["errmsg"] = f"E11000 duplicate key error collection: {collection.full_name}"
            else:
                name, key_value = found
                shown = ", ".join(f"{k}: {v!r}" for k, v in key_value.items())
                error["errmsg"] = (
                    f"E11000 duplicate key error collection: {collection.full_name}"
                    f" index: {name} dup key: {{ {shown} }}"
                )
                error["keyPattern"] = dict.fromkeys(key_value, 1)
                error["keyValue"] = key_value
            return error
        if isinstance(exc, OperationFailure) and exc.code:
            return {"index": index, "code": exc.code, "errmsg": str(exc)}
        return {"index": index, "code": 2, "errmsg": f"{type(exc).__name__}: {exc}"}

    def _duplicate_of(self, collection: mongomock.Collection[Doc], doc: Mapping[str, Any]) -> tuple[str, Doc] | None:
        """Which unique index an inserted document collided on, and the key it repeated."""
        for info in collection.list_indexes():
            if info["name"] != "_id_" and not info.get("unique"):
                continue
            key_value = {field: _field(doc, field) for field in info["key"]}
            # A sparse or partial index leaves some documents out: they collide with nothing.
            if info.get("sparse") and all(_field(doc, field, _MISSING) is _MISSING for field in info["key"]):
                continue
            partial = info.get("partialFilterExpression")
            if partial is not None and not filter_applies(partial, doc):
                continue
            query = key_value if partial is None else {"$and": [partial, key_value]}
            if collection.find_one(query) is not None:
                return info["name"], key_value
        return None


_MISSING = object()


def _field(doc: Mapping[str, Any], path: str, missing: Any = None) -> Any:
    """The value at a dotted path, or `missing` (None: what an index stores) when there is none."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return missing
        value = value[part]
    return value
