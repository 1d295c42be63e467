"""The official JavaScript client (`socket.io-client` 4.8, pinned in tests/js/package-lock.json) against Muster.

Runs tests/js/official_client.mjs with Node against a Muster on a real port: sign-in over HTTP,
refused connections (`connect_error` with Muster's error in `err.data`), a room with another user,
a message delivered as `room.event`, an error ack for an invalid payload, and `sync`.
Needs Node 18+ and npm on PATH (so does CI): without them the test fails, it does not skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.factories import PASSWORD, Muster

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "official_client.mjs"


async def ensure_node() -> str:
    """The node binary, with tests/js/node_modules installed from the lock file (npm ci) when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("this test runs the official socket.io JavaScript client and needs Node.js 18+ and npm on "
                    "PATH (e.g. `apt-get install nodejs npm`); they are missing", pytrace=False)
    if not (JS_DIR / "node_modules" / "socket.io-client" / "package.json").exists():
        proc = await asyncio.create_subprocess_exec(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error",
                                                    cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(proc.communicate(), 300)
        if proc.returncode != 0:
            pytest.fail(f"`npm ci` in {JS_DIR} failed ({proc.returncode}):\n{output.decode()}", pytrace=False)
    return node


async def run_script(node: str, config: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    # Asynchronously: the Muster it talks to runs in this test's event loop.
    proc = await asyncio.create_subprocess_exec(node, str(SCRIPT), json.dumps(config), cwd=JS_DIR,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the JavaScript client did not finish within 60 s") from None
    lines = stdout.decode().strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    return proc.returncode or 0, report, stderr.decode()


async def test_the_official_javascript_client_signs_in_sends_receives_and_syncs(muster: Muster) -> None:
    node = await ensure_node()
    sender = await muster.create_user(roles=["commander"], username="js_sender")
    receiver = await muster.create_user(username="js_receiver")
    config = {"url": muster.url,
              "sender": {"username": sender["username"], "password": PASSWORD},
              "receiver": {"username": receiver["username"], "password": PASSWORD}}

    code, report, stderr = await run_script(node, config)

    assert code == 0, (report, stderr)
    assert report["ok"] is True
    assert report["refused_code"] == "auth.invalid_token"
    assert report["no_token_code"] == "auth.unauthenticated"
    assert report["invalid_code"] == "request.invalid"
    assert report["unknown_code"] == "event.unknown"
    assert report["sync"]["events"] >= 2  # the room's creation and the message
    # What the JavaScript client saw is what Muster stored.
    room_id, message = str(report["room_id"]), report["message"]
    events = await muster.kernel.storage.list_events(room_id, limit=100)
    stored = [e for e in events if e.kind == "message"]
    assert [(e.id, e.seq, e.client_id, e.sender_id, e.body["text"]) for e in stored] == [
        (message["id"], message["seq"], message["client_id"], sender["id"], message["text"])]
