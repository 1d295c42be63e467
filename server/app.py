"""The composition root: picks adapters from settings, wires services, mounts routes and sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from redis.asyncio import Redis

from server.audit import views as audit_views
from server.audit.service import AuditLog
from server.auth import views as auth_views
from server.auth.passwords import Passwords
from server.auth.service import AuthService, Principal
from server.auth.tokens import TokenService
from server.bus import Bus, LocalBus, RedisBus
from server.counters import Counters, MemoryCounters, RedisCounters
from server.gateway.server import Gateway
from server.http import ops
from server.http.api import Api, openapi_document
from server.http.middleware import make_middlewares
from server.kernel import KERNEL, Kernel, authenticate_request
from server.logging import get_logger
from server.metrics import Metrics
from server.org import views as org_views
from server.org.service import OrgService
from server.permissions import Permissions
from server.scheduler import Scheduler
from server.settings import Settings
from server.storage.ports import BlobStore, Storage
from server.web import mount_web

if TYPE_CHECKING:
    from rooms.files.service import FileService, UserNotifier
    from rooms.service import RoomService

VERSION = "0.1.0"
SCHEDULER = web.AppKey("muster.scheduler", Scheduler)
log = get_logger("muster.app")


def make_storage(settings: Settings) -> Storage:
    """The one place that picks a storage adapter."""
    if settings.storage.backend == "mongo":
        from server.storage.mongo import MongoStorage

        return MongoStorage(settings.storage.mongo_url, settings.storage.mongo_database)
    from server.storage.sqlite import SqliteStorage

    return SqliteStorage(settings.sqlite_file)


def http_apis() -> list[Api]:
    from media import views as media_views
    from rooms import views as room_views
    from rooms.files import views as file_views
    from workflows import views as workflow_views

    return [ops.api, auth_views.api, org_views.api, audit_views.api, room_views.api, file_views.api,
            workflow_views.api, media_views.api]


def build_openapi(apis: Iterable[Api]) -> dict[str, object]:
    return openapi_document(apis, title="Muster", version=VERSION)


def create_app(
    settings: Settings, *, storage: Storage | None = None, passwords: Passwords | None = None
) -> web.Application:
    """Build the application. Services start in cleanup_ctx and stop in reverse order."""
    metrics = Metrics()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=make_middlewares(metrics=metrics, cors_origins=settings.server.cors_origins),
    )
    store = storage or make_storage(settings)
    redis: Redis | None = None
    bus_redis: Redis | None = None
    if settings.redis.url:
        # Commands (counters, presence, readiness) must not hang on a Redis that stopped answering;
        # the bus's subscriber waits for messages for as long as it takes, so it has its own
        # connection without a read timeout (health checks still find a dead one).
        redis = Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5,
                               health_check_interval=30)
        bus_redis = Redis.from_url(settings.redis.url, socket_connect_timeout=5, health_check_interval=30)
    bus: Bus = RedisBus(bus_redis, settings.redis.prefix) if bus_redis is not None else LocalBus()
    counters: Counters = RedisCounters(redis, settings.redis.prefix) if redis is not None else MemoryCounters()
    audit = AuditLog(store)
    auth = AuthService(
        storage=store, audit=audit, tokens=TokenService(settings.auth, settings.sso),
        passwords=passwords or Passwords(), counters=counters, settings=settings.auth,
    )
    permissions = Permissions(audit)
    org = OrgService(storage=store, audit=audit, auth=auth)
    gateway = Gateway(settings=settings, auth=auth, metrics=metrics, bus=bus)
    scheduler = Scheduler(store)
    kernel = Kernel(settings=settings, storage=store, audit=audit, auth=auth, permissions=permissions, org=org,
                    metrics=metrics, bus=bus, counters=counters, redis=redis, gateway=gateway)
    app[KERNEL] = kernel
    app[SCHEDULER] = scheduler
    domains = _wire_domains(app, kernel, scheduler)

    apis = http_apis()
    for api in apis:
        api.mount(app, authenticate_request)
    app[ops.OPENAPI] = build_openapi(apis)
    mount_web(app, settings)
    gateway.attach(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        await bus.start()
        await gateway.start()
        await scheduler.start()
        for start, _ in domains:
            await start()
        log.info("muster started", storage=store.name, redis=bool(redis), mode=settings.server.mode)
        yield
        for _, stop in reversed(domains):
            await stop()
        await scheduler.stop()
        await bus.stop()
        await store.close()
        for client in (redis, bus_redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def on_shutdown(app: web.Application) -> None:
        # Before aiohttp closes connections: tell each socket and close it cleanly.
        await gateway.close_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return app


Lifecycle = list[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]


def _wire_domains(app: web.Application, kernel: Kernel, scheduler: Scheduler) -> Lifecycle:
    """Build the domains on the kernel and mount their socket events; returns their start/stop pairs."""
    from rooms.events import GatewayNotifier, register_room_events
    from rooms.files.views import FILES
    from rooms.presence import MemoryPresence, PresenceService, PresenceStore
    from rooms.service import RoomService, register_room_rules
    from rooms.views import PRESENCE, ROOMS

    settings = kernel.settings
    register_room_rules(kernel.permissions)
    notifier = GatewayNotifier(kernel.gateway)
    files = _file_service(kernel, scheduler, notifier)
    rooms = RoomService(storage=kernel.storage, audit=kernel.audit, permissions=kernel.permissions,
                        notifier=notifier, scheduler=scheduler, settings=settings.rooms, files=files)
    files.rooms = rooms
    files.register_scope("room", rooms.may_read_room)
    kernel.org.on_user_changed(rooms.user_changed)
    store: PresenceStore
    if kernel.redis is not None:
        from rooms.presence_redis import RedisPresence

        store = RedisPresence(kernel.redis, settings.redis.prefix, ttl=settings.presence.ttl)
    else:
        store = MemoryPresence()
    presence = PresenceService(store=store, storage=kernel.storage, permissions=kernel.permissions,
                               notifier=notifier, ttl=settings.presence.ttl)
    register_room_events(kernel.gateway, rooms, presence)
    app[ROOMS] = rooms
    app[PRESENCE] = presence
    app[FILES] = files
    workflows = _wire_workflows(app, kernel, scheduler, notifier, rooms, files)
    media = _wire_media(app, kernel, rooms, files)
    return [(files.start, files.stop), (presence.start, presence.stop), *workflows, *media]


def _wire_media(app: web.Application, kernel: Kernel, rooms: RoomService, files: FileService) -> Lifecycle:
    """Consultations: the in-process SFU, its signalling over the gateway, and recordings into case files."""
    from media.events import GatewayCallNotifier, register_call_events
    from media.recording import CallRecordings
    from media.service import CallService
    from media.sfu import Sfu
    from media.views import CALLS

    settings = kernel.settings
    renegotiations: set[asyncio.Task[None]] = set()

    def negotiation_needed(call_id: str, participant_id: str) -> None:
        # The SFU calls this from its own callbacks: the offer goes out from a task of its own.
        task = asyncio.create_task(calls.renegotiate(call_id, participant_id))
        renegotiations.add(task)
        task.add_done_callback(renegotiations.discard)

    sfu = Sfu(on_negotiation_needed=negotiation_needed)
    calls = CallService(rooms=rooms, storage=kernel.storage, audit=kernel.audit, sfu=sfu,
                        notifier=GatewayCallNotifier(kernel.gateway), settings=settings.media,
                        secret=settings.auth.jwt_secret)
    recordings = CallRecordings(sfu=sfu, files=files, rooms=rooms, audit=kernel.audit,
                                folder=settings.files_dir / "recordings",
                                max_seconds=settings.media.recordings_max_seconds)
    calls.on_record = recordings.toggle
    register_call_events(kernel.gateway, calls)
    app[CALLS] = calls

    async def start() -> None:
        return None

    async def stop() -> None:
        await calls.close()
        await sfu.close()

    return [(start, stop)]


def _wire_workflows(app: web.Application, kernel: Kernel, scheduler: Scheduler, notifier: UserNotifier,
                    rooms: RoomService, files: FileService) -> Lifecycle:
    """Incidents, tasks and projects on top of rooms and files, with the outbound notifier."""
    from workflows.context import WorkflowContext
    from workflows.events import GatewayConsoleFeed
    from workflows.incidents import IncidentService
    from workflows.notify import NullNotifier, WebhookNotifier
    from workflows.projects import ProjectService
    from workflows.tasks import TaskService
    from workflows.views import INCIDENTS, PROJECT_SERVICE, TASK_SERVICE

    settings = kernel.settings.workflows
    storage = kernel.storage

    async def recipients(user_ids: Sequence[str]) -> list[dict[str, Any]]:
        people = []
        for user_id in user_ids:
            user = await storage.get_user(user_id)
            if user is not None:
                people.append({"user_id": user.id, "username": user.username, "display_name": user.display_name})
        return people

    outbound: WebhookNotifier | NullNotifier
    if settings.webhook_url:
        outbound = WebhookNotifier(url=settings.webhook_url, secret=settings.webhook_secret, scheduler=scheduler,
                                   dead_letters=storage, recipients=recipients,
                                   max_attempts=settings.webhook_attempts)
    else:
        outbound = NullNotifier()
    console = GatewayConsoleFeed(kernel.gateway, storage)
    ctx = WorkflowContext(storage=storage, audit=kernel.audit, rooms=rooms, files=files, scheduler=scheduler,
                          notify_user=notifier, notifier=outbound, settings=settings, console=console)

    async def may_watch(principal: Principal) -> bool:
        who = await ctx.who(principal)
        return who.commander or who.has("inspector") or who.supervision or who.projects_office

    console.register(may_watch)
    incidents = IncidentService(ctx)
    tasks = TaskService(ctx)
    projects = ProjectService(ctx, tasks)
    app[INCIDENTS] = incidents
    app[TASK_SERVICE] = tasks
    app[PROJECT_SERVICE] = projects
    files.register_scope("case:incident", incidents.may_read_principal)
    files.register_scope("case:project", projects.may_read_principal)

    async def start() -> None:
        if isinstance(outbound, WebhookNotifier):
            await outbound.start()

    async def stop() -> None:
        await console.stop()
        if isinstance(outbound, WebhookNotifier):
            await outbound.stop()

    return [(start, stop)]


def _file_service(kernel: Kernel, scheduler: Scheduler, notifier: UserNotifier) -> FileService:
    """Files on local disk, or in GridFS beside MongoDB; scanned by ClamAV when configured."""
    from rooms.files.scan import ClamdScanner
    from rooms.files.service import FileService

    settings = kernel.settings
    blobs: BlobStore
    use_gridfs = settings.files.blob_store == "gridfs" or (
        settings.files.blob_store == "auto" and settings.storage.backend == "mongo")
    if use_gridfs:
        blobs = _GridFsOnOpen(kernel.storage)
    else:
        from server.storage.blobs.local import LocalBlobStore

        blobs = LocalBlobStore(settings.files_dir / "blobs")
    scanner = (ClamdScanner(settings.files.clamd, timeout=settings.files.clamd_timeout)
               if settings.files.clamd else None)
    return FileService(storage=kernel.storage, blobs=blobs, audit=kernel.audit, permissions=kernel.permissions,
                       notifier=notifier, scheduler=scheduler, settings=settings.files,
                       spool_dir=settings.files_dir / "spool", link_secret=settings.auth.jwt_secret.encode(),
                       principal_lookup=kernel.auth.authenticate_ids, scanner=scanner)


class _GridFsOnOpen:
    """GridFS needs the MongoDB connection, which exists once storage has opened."""

    name = "gridfs"

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._inner: BlobStore | None = None

    @property
    def inner(self) -> BlobStore:
        if self._inner is None:
            raise RuntimeError("the blob store is not open")
        return self._inner

    async def open(self) -> None:
        from server.storage.blobs.gridfs import GridFsBlobStore
        from server.storage.mongo import MongoStorage

        assert isinstance(self._storage, MongoStorage), "GridFS needs the MongoDB storage backend"
        self._inner = GridFsBlobStore(self._storage.db)
        await self._inner.open()

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()

    async def put_blob(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        return await self.inner.put_blob(chunks)

    async def blob_size(self, sha256: str) -> int | None:
        return await self.inner.blob_size(sha256)

    def read_blob(self, sha256: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.inner.read_blob(sha256, start=start, end=end)

    async def delete_blob(self, sha256: str) -> bool:
        return await self.inner.delete_blob(sha256)
