"""The command line: first admin, users and departments without the web, and the demo county."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from server.storage.sqlite import SqliteStorage
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MUSTER_SERVER_DATA_DIR": str(data_dir), "MUSTER_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "server", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)


async def test_create_admin_and_manage_users(tmp_path: Path) -> None:
    made = cli(tmp_path, "create-admin", "root", "--password-stdin", stdin="a-strong-password\n")
    assert made.returncode == 0, made.stderr
    again = cli(tmp_path, "create-admin", "root", "--password-stdin", stdin="a-strong-password\n")
    assert again.returncode == 1 and "user.username_taken" in again.stderr
    weak = cli(tmp_path, "users", "add", "x1", "--name", "X", "--role", "responder", "--password-stdin",
               stdin="short\n")
    assert weak.returncode == 1 and "auth.weak_password" in weak.stderr

    dept = cli(tmp_path, "departments", "add", "示范县", "--kind", "county")
    assert dept.returncode == 0, dept.stderr
    county_id = dept.stdout.strip().rsplit("(", 1)[1].rstrip(")")
    added = cli(tmp_path, "users", "add", "wang", "--name", "王磊", "--role", "responder", "--role", "dept_lead",
                "--department", county_id, "--password-stdin", stdin="another-password\n")
    assert added.returncode == 0, added.stderr
    assert cli(tmp_path, "users", "set-roles", "wang", "--role", "commander").returncode == 0
    assert cli(tmp_path, "users", "disable", "wang").returncode == 0
    listing = cli(tmp_path, "users", "list")
    assert "root" in listing.stdout and "wang" in listing.stdout and "disabled" in listing.stdout
    assert "commander" in listing.stdout
    tree = cli(tmp_path, "departments", "list")
    assert "示范县  [county]" in tree.stdout
    missing = cli(tmp_path, "users", "disable", "ghost")
    assert missing.returncode == 1 and "no user" in missing.stderr

    store = SqliteStorage(tmp_path / "muster.sqlite3")
    await store.open()
    try:
        wang = await store.get_user_by_username("wang")
        assert wang is not None and wang.disabled and wang.roles == ("commander",)
        actions = [r.action for r in await store.list_audit_records(chain="admin")]
        assert {"user.create", "user.update", "department.create"} <= set(actions)
        assert all(r.details.get("via") == "cli" for r in await store.list_audit_records(chain="admin"))
    finally:
        await store.close()
    assert cli(tmp_path, "audit", "verify").returncode == 0


def test_bad_settings_exit_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n", encoding="utf-8")
    result = cli(tmp_path, "--config", str(bad), "users", "list")
    assert result.returncode == 2 and "server.port should be int" in result.stderr


async def test_run_with_demo_serves_and_shuts_down_cleanly(tmp_path: Path) -> None:
    """What `make run` does on a fresh machine: start, fill the demo county, print logins that work."""
    port = free_port()
    env = {**os.environ, "MUSTER_SERVER_DATA_DIR": str(tmp_path), "MUSTER_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "server", "run", "--demo"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "server did not become ready"
                await asyncio.sleep(0.2)
            tokens = {}
            for role in ("admin", "commander", "lead", "responder", "inspector"):
                async with http.post(f"{base}/api/auth/login", json={
                    "username": role, "password": "muster-demo", "device_name": "demo", "device_kind": "console",
                }) as resp:
                    assert resp.status == 200, await resp.text()
                    tokens[role] = (await resp.json())["access_token"]
            # The demo cases: an incident being handled and a project under construction.
            headers = {"Authorization": f"Bearer {tokens['commander']}"}
            async with http.get(f"{base}/api/incidents", headers=headers) as resp:
                incidents = (await resp.json())["incidents"]
            assert [(i["title"], i["state"]) for i in incidents] == [("东沟水库水位超警戒", "responding")]
            async with http.get(f"{base}/api/projects", headers=headers) as resp:
                assert [p["phase"] for p in (await resp.json())["projects"]] == ["construction"]
            async with http.get(f"{base}/api/tasks?mine=true",
                                headers={"Authorization": f"Bearer {tokens['responder']}"}) as resp:
                assert [t["title"] for t in (await resp.json())["tasks"]] == ["转移下游群众"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Demo county created" in out and "muster-demo" in out
    assert "commander  张伟" in out
