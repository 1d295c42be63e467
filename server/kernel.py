"""The kernel's services, built once by the composition root and kept on the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis

from server.audit.service import AuditLog
from server.auth.service import AuthService, Principal
from server.bus import Bus
from server.counters import Counters
from server.http.api import bearer_token
from server.metrics import Metrics
from server.org.service import OrgService
from server.permissions import Permissions
from server.settings import Settings
from server.storage.ports import Storage

if TYPE_CHECKING:
    from server.gateway.server import Gateway


@dataclass
class Kernel:
    settings: Settings
    storage: Storage
    audit: AuditLog
    auth: AuthService
    permissions: Permissions
    org: OrgService
    metrics: Metrics
    bus: Bus
    counters: Counters
    redis: Redis | None
    gateway: Gateway


KERNEL = web.AppKey("muster.kernel", Kernel)


def kernel_of(app: web.Application) -> Kernel:
    return app[KERNEL]


async def authenticate_request(request: web.Request) -> Principal:
    """The bearer-token check used by every route declared with auth=True."""
    return await request.app[KERNEL].auth.authenticate(bearer_token(request))
