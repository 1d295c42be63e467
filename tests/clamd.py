"""A real ClamAV daemon for tests, started with its own tiny signature database (nothing downloaded).

The database holds two signatures written here: an MD5 (`.hdb`) signature of the standard EICAR
anti-virus test file and a body (`.ndb`) signature of a harmless marker string that may sit anywhere
in a stream. clamd appends `.UNOFFICIAL` to the names of signatures outside its signed databases,
and the names below are the ones it reports.

clamd runs as the current user (no `User` line), in the foreground, with everything it writes in a
private temporary folder, so it starts the same as root (CI) and as a normal user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLAMD_PATH = "/usr/sbin/clamd"
INSTALL_HINT = "install ClamAV's daemon: `sudo apt-get install clamav-daemon` (`make test` does it)"

# A harmless marker that the test database flags wherever it appears in a stream.
HARMLESS_PROBE = b"MUSTER-HARMLESS-SCAN-PROBE-5c1e0b7a"
HARMLESS_SIGNATURE = "Muster.Test.Harmless.UNOFFICIAL"
EICAR_SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"

# The EICAR test file, kept in pieces so this repository never holds it whole (and is not flagged itself).
_EICAR_PIECES = ("X5O!P%@AP[4\\PZX5", "4(P^)7CC)7}$", "EICAR-STANDARD-", "ANTIVIRUS-", "TEST-FILE!$H+H*")


def eicar() -> bytes:
    """The 68-byte EICAR anti-virus test file, harmless by design and detected by every scanner."""
    data = "".join(_EICAR_PIECES).encode("ascii")
    assert len(data) == 68
    return data


def find_clamd() -> str | None:
    """The clamd program: Debian's /usr/sbin/clamd, else one on PATH."""
    if os.access(CLAMD_PATH, os.X_OK):
        return CLAMD_PATH
    return shutil.which("clamd")


@dataclass(frozen=True, slots=True)
class Clamd:
    """A running clamd: where it listens and how long it took to answer its first PING."""

    socket_path: Path
    tcp_port: int | None
    folder: Path
    startup_seconds: float

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def tcp_address(self) -> str:
        assert self.tcp_port is not None, "started without tcp=True"
        return f"tcp:127.0.0.1:{self.tcp_port}"


def write_database(folder: Path) -> None:
    """The test signatures: EICAR by MD5 and size, the harmless probe as a body pattern at any offset."""
    folder.mkdir(parents=True, exist_ok=True)
    test_file = eicar()
    md5 = hashlib.md5(test_file, usedforsecurity=False).hexdigest()
    eicar_name = EICAR_SIGNATURE.removesuffix(".UNOFFICIAL")
    probe_name = HARMLESS_SIGNATURE.removesuffix(".UNOFFICIAL")
    (folder / "muster-test.hdb").write_text(f"{md5}:{len(test_file)}:{eicar_name}\n")  # MD5:size:name
    (folder / "muster-test.ndb").write_text(f"{probe_name}:0:*:{HARMLESS_PROBE.hex()}\n")  # name:any type:anywhere:hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_ping(socket_path: Path, tcp_port: int | None) -> bool:
    """Whether clamd answers PING on its unix socket (and on its TCP port when it has one)."""
    targets: list[tuple[socket.AddressFamily, str | tuple[str, int]]] = [(socket.AF_UNIX, str(socket_path))]
    if tcp_port is not None:
        targets.append((socket.AF_INET, ("127.0.0.1", tcp_port)))
    for family, target in targets:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as conn:
                conn.settimeout(1)
                conn.connect(target)
                conn.sendall(b"zPING\0")
                if conn.recv(16) != b"PONG\0":
                    return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running_clamd(*, stream_max_length: str = "100M", tcp: bool = False, start_timeout: float = 30.0,
                  binary: str | None = None) -> Iterator[Clamd]:
    """Start clamd with the test database, wait until it answers PING, stop it on exit.

    `stream_max_length` is clamd's StreamMaxLength ("100M", "1M", "512K"); `tcp` also listens on a free
    loopback port. Raises RuntimeError, with the end of clamd's log, when it does not come up in time.
    """
    program = binary or find_clamd()
    if program is None:
        raise RuntimeError(f"clamd is not installed: {INSTALL_HINT}")
    # A short private folder: a unix socket path must stay under ~100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="muster-clamd-"))
    try:
        socket_path = folder / "clamd.sock"
        tcp_port = free_port() if tcp else None
        write_database(folder / "db")
        (folder / "tmp").mkdir()
        lines = [
            "Foreground yes",
            f"LocalSocket {socket_path}",
            "LocalSocketMode 600",
            "FixStaleSocket yes",
            f"DatabaseDirectory {folder / 'db'}",
            f"TemporaryDirectory {folder / 'tmp'}",
            f"LogFile {folder / 'clamd.log'}",
            f"StreamMaxLength {stream_max_length}",
            "MaxThreads 4",
            # One database load is enough: no reload checks, no second copy in memory while reloading.
            "SelfCheck 0",
            "ConcurrentDatabaseReload no",
        ]
        if tcp_port is not None:
            lines += [f"TCPSocket {tcp_port}", "TCPAddr 127.0.0.1"]
        config = folder / "clamd.conf"
        config.write_text("\n".join(lines) + "\n")
        output = (folder / "clamd.out").open("wb")
        started = time.monotonic()
        command = [program, "--foreground", f"--config-file={config}"]
        # If the test process dies without cleaning up (pytest-timeout ends it with os._exit), clamd goes too.
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = started + start_timeout
            while not answers_ping(socket_path, tcp_port):
                if process.poll() is not None or time.monotonic() > deadline:
                    state = f"exited with {process.returncode}" if process.poll() is not None else "did not answer"
                    raise RuntimeError(f"clamd {state} within {start_timeout:g} s:\n{_log_tail(folder)}")
                time.sleep(0.05)
            yield Clamd(socket_path=socket_path, tcp_port=tcp_port, folder=folder,
                        startup_seconds=time.monotonic() - started)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            output.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _log_tail(folder: Path, lines: int = 30) -> str:
    text = ""
    for name in ("clamd.out", "clamd.log"):
        path = folder / name
        if path.exists():
            text += f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    return text or "(clamd wrote nothing)"
