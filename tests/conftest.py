"""Fixtures that start real things: a Muster on a real port with a fresh SQLite file, a redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.settings import Settings
from tests.factories import Muster, make_settings, running_muster


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def muster(settings: Settings) -> AsyncIterator[Muster]:
    async with running_muster(settings) as m:
        yield m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole session (make test installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def clamd_address() -> Iterator[str]:
    """A real clamd for the whole session on a unix socket ("unix:/…/clamd.sock"), with only the test
    signatures of tests/clamd.py (EICAR and a harmless probe): no virus database is downloaded."""
    from tests.clamd import INSTALL_HINT, find_clamd, running_clamd

    if find_clamd() is None:
        pytest.fail(f"clamd (/usr/sbin/clamd) is missing: {INSTALL_HINT}", pytrace=False)
    with running_clamd() as clamd:
        yield clamd.address
