"""The production topology of docker/compose.yaml on loopback, without Docker.

Two `python -m server run` node processes (one data folder, so one SQLite file and one files folder: the
shared database and the shared volume of a cluster), one redis-server (the session's, with a prefix of
its own) and Debian's nginx running docker/nginx.conf itself, rewritten only where loopback differs:
the upstream servers, the listen ports, the certificate (a self-signed one made here) and Docker's DNS
resolver. nginx runs as an unprivileged process (as `nobody` when the tests run as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.cluster.test_chat_cluster import Node
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "docker" / "nginx.conf"
NGINX_HINT = "nginx is not installed: `make test` installs it (apt-get install nginx)"
NOBODY = 65534


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def loopback_nginx_conf(template: str, *, nodes: list[int], https_port: int, http_port: int, folder: Path) -> str:
    """docker/nginx.conf with loopback addresses: each `server musterN:8080` becomes the Nth node's port."""
    conf = template
    for number, port in enumerate(nodes, start=1):
        conf, count = re.subn(rf"\bserver muster{number}:8080\b", f"server 127.0.0.1:{port}", conf)
        assert count >= 1, f"docker/nginx.conf has no `server muster{number}:8080`"
    replacements = [
        (r"^\s*resolver [^;]*;\n", ""),          # Docker's DNS; nginx < 1.27.3 has no `resolve` either
        (r" resolve;", ";"),
        (r"\blisten 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        (r"\blisten 80;", f"listen 127.0.0.1:{http_port};"),
        (r"/etc/nginx/certs/", f"{folder}/"),
        # Temporary files inside the folder, not in the packaged paths an unprivileged process cannot write.
        (r"^http \{\n", "http {\n" + "".join(f"    {kind}_temp_path {folder}/{kind}_temp;\n"
                                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))),
    ]
    for pattern, replacement in replacements:
        conf, count = re.subn(pattern, replacement, conf, flags=re.MULTILINE)
        assert count >= 1, f"docker/nginx.conf no longer matches {pattern!r}"
    return conf


def self_signed_certificate(folder: Path) -> None:
    """fullchain.pem and privkey.pem for 127.0.0.1 (the clients in the tests do not verify it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@dataclass
class Nginx:
    """Debian's nginx on loopback running docker/nginx.conf (rewritten for loopback)."""

    nodes: list[int]
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="muster-nginx-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "nginx.log"

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def start(self) -> None:
        binary = find_nginx()
        if binary is None:
            pytest.fail(NGINX_HINT, pytrace=False)
        while self.http_port == self.port:
            self.http_port = free_port()
        self_signed_certificate(self.folder)
        conf = self.folder / "nginx.conf"
        conf.write_text(loopback_nginx_conf(TEMPLATE.read_text(encoding="utf-8"), nodes=self.nodes,
                                            https_port=self.port, http_port=self.http_port, folder=self.folder),
                        encoding="utf-8")
        self.log_path.touch()
        drop: dict[str, object] = {}
        if os.geteuid() == 0:
            # Not as root: the folder belongs to nobody, who runs master and workers (and reopens
            # /dev/stdout and /dev/stderr, which lead to the log file).
            for path in (self.folder, *self.folder.iterdir()):
                os.chown(path, NOBODY, NOBODY)
            drop = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        args = [binary, "-p", str(self.folder), "-c", str(conf), "-e", "stderr",
                "-g", f"daemon off; pid {self.folder}/nginx.pid;"]
        with self.log_path.open("ab") as log:
            test = subprocess.run([*args, "-t"], stdout=log, stderr=subprocess.STDOUT, check=False, **drop)
            assert test.returncode == 0, f"nginx -t refused the loopback config:\n{self.log_tail()}"
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **drop)

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 15) -> None:
        """Until /readyz answers 200 through nginx (so at least one node is behind it)."""
        deadline = time.monotonic() + within
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/readyz", ssl=False) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx not answering within {within} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, close websockets
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Topology:
    """nginx in front of nodes A and B; clients use `url` only."""

    a: Node
    b: Node
    nginx: Nginx

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def nodes(self) -> tuple[Node, Node]:
        return (self.a, self.b)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{tail}" for name, tail in (
            ("node a", self.a.log_tail()), ("node b", self.b.log_tail()), ("nginx", self.nginx.log_tail())))


@contextlib.asynccontextmanager
async def running_topology(http: aiohttp.ClientSession, data_dir: Path, env: dict[str, str]) -> AsyncIterator[Topology]:
    """Start nodes A and B on one data folder with `env`, then nginx in front of them; stop all on the way out."""
    a, b = Node("a", data_dir, dict(env)), Node("b", data_dir, dict(env))
    while b.port == a.port:
        b.port = free_port()
    nginx = Nginx(nodes=[a.port, b.port])
    try:
        a.start()
        b.start()
        await a.wait_ready(http)
        await b.wait_ready(http)
        nginx.start()
        await nginx.wait_ready(http)
        yield Topology(a=a, b=b, nginx=nginx)
    finally:
        nginx.stop()
        for node in (a, b):
            await node.stop()


def gauge(metrics_text: str, name: str) -> float:
    """A Prometheus gauge's value (without labels) from a /metrics page."""
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", metrics_text, flags=re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))
