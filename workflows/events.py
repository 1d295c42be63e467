"""Socket side of workflows: the console's live dashboard.

Server-to-client events (the others reach a user's every device through the rooms notifier):
- `dashboard` {figures}: the dashboard changed (commanders, admins, inspectors and the offices' members,
  at most about twice a second on each node);
- `task.assigned`, `task.urged`, `task.supervised`, `task.changed` {task}: to the people a task concerns;
- `incident.reported` {incident} (to commanders), `incident.changed` {incident} (to its reporter).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from server.gateway.server import Gateway, SocketContext
from server.logging import get_logger
from server.storage.ports import Storage
from workflows.dashboard import dashboard_figures

CONSOLE_ROOM = "console"
log = get_logger("muster.workflows")


class GatewayConsoleFeed:
    """Pushes fresh dashboard figures to the consoles, coalescing bursts of changes into one push."""

    def __init__(self, gateway: Gateway, storage: Storage, *, delay: float = 0.5) -> None:
        self._gateway = gateway
        self._storage = storage
        self._delay = delay
        self._pending: asyncio.Task[None] | None = None
        self._may_watch: Any = None

    def register(self, may_watch: Any) -> None:
        """`may_watch(principal) -> bool`: whose sockets join the console room when they connect."""
        self._may_watch = may_watch

        async def joined(ctx: SocketContext) -> None:
            if self._may_watch is not None and await self._may_watch(ctx.principal):
                await self._gateway.sio.enter_room(ctx.sid, CONSOLE_ROOM)

        self._gateway.on_connected(joined)

    async def changed(self, kind: str, data: dict[str, Any]) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._push(), name="muster-dashboard-push")

    async def _push(self) -> None:
        await asyncio.sleep(self._delay)
        try:
            figures = await dashboard_figures(self._storage, now=_now())
            await self._gateway.emit("dashboard", {"figures": figures}, room=CONSOLE_ROOM)
        except Exception:
            log.exception("dashboard push failed")

    async def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending


def _now() -> int:
    from server.ids import now_ms

    return now_ms()
