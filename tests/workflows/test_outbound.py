"""Workflow notifications leaving Muster: the signed webhook to a real local receiver, and the console's live
dashboard over a real socket."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from server.app import SCHEDULER
from tests.conftest import free_port
from tests.factories import make_settings, running_muster
from tests.rooms.conftest import new_client, until
from tests.workflows.conftest import County
from workflows.notify import verify_signature

SECRET = "county-gateway-secret-0123456789"


async def test_assignments_and_urges_reach_the_sms_gateway_signed(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def gateway(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_signature(SECRET, request.headers["Muster-Timestamp"], body, request.headers["Muster-Signature"],
                              now=int(time.time()))
        received.append({"ok": ok, "event": request.headers["Muster-Event"], "body": json.loads(body)})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/sms", gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = make_settings(tmp_path, workflows={"webhook_url": f"http://127.0.0.1:{port}/sms",
                                                      "webhook_secret": SECRET})
        async with running_muster(settings) as muster:
            await muster.app[SCHEDULER].stop()  # driven by hand below
            commander = await new_client(muster, "commander")
            responder = await muster.session("responder")
            status, incident = await muster.request("POST", "/api/incidents", commander.session,
                                                    json={"title": "火情", "type": "fire"})
            await muster.request("POST", f"/api/incidents/{incident['id']}/verify", commander.session, json={})
            week = int(time.time() * 1000) + 7 * 86400_000
            status, task = await muster.request("POST", f"/api/incidents/{incident['id']}/tasks", commander.session,
                                                json={"title": "扑救", "deadline": week,
                                                      "assignee_id": responder.user_id})
            assert status == 201
            await muster.request("POST", f"/api/tasks/{task['id']}/urge", commander.session,
                                 json={"message": "请立即出发"})
            for _ in range(3):
                await muster.app[SCHEDULER].run_due()
            await until(lambda: len(received) >= 2, what="two deliveries")
    finally:
        await runner.cleanup()
    assert [r["event"] for r in received] == ["task.assigned", "task.urged"]
    assert all(r["ok"] for r in received)
    urge = received[1]["body"]
    assert urge["data"]["task_id"] == task["id"] and "扑救" in urge["title"] and urge["body"] == "请立即出发"
    assert [p["user_id"] for p in urge["recipients"]] == [responder.user_id]


async def test_the_console_gets_fresh_figures_when_a_case_changes(county: County) -> None:
    c = county
    commander, reporter = c["commander"], c["reporter"]
    await c.ok("reporter", "POST", "/api/incidents", {"title": "交通事故", "type": "traffic", "level": 3})
    await until(lambda: bool(commander.got("dashboard")), what="a dashboard push")
    figures = commander.got("dashboard")[-1]["figures"]
    assert figures["incidents"]["open"] == 1 and figures["incidents"]["by_level"]["3"] == 1
    assert reporter.got("dashboard") == []  # a responder's phone is not a console
