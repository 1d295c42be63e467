"""How fast files go into and out of the embedded server, against the disk they land on.

Starts Muster (SQLite, local disk, one process) on a free loopback port with its data folder next to
a random file of `--size-mib` MiB, then, in each of `--repeat` rounds (medians are printed):

- copy (baseline):  `shutil.copyfile` of the file on the same filesystem (and, for reference, the same
                    copy followed by fsync, since Muster fsyncs what it receives),
- upload:           the tus 1.0 protocol over HTTP with aiohttp: POST /api/uploads, then PATCHes of
                    `--chunk-mib` MiB read from the file, until the last one answers `Muster-File-Id`,
- read (baseline):  reading the file in 1 MiB blocks and hashing them with sha256,
- download:         GET /api/files/{id}/content, hashing the body the same way, and checking that the
                    sha256 is the source's,

and the ratios upload / copy and download / read, measured in the same run because these machines
are noisy. Every round changes the file's first bytes so that no round finds its content already
stored (files are content-addressed). The OS page cache is warm for all four: they compare the
server's work with the kernel's, not disk hardware.

    .venv/bin/python bench/upload.py [--size-mib 200] [--chunk-mib 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
BLOCK = MIB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_random_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(8 * MIB, left))
            out.write(block)
            left -= len(block)


def stamp_round(path: Path, round_number: int) -> str:
    """Make this round's content unique (first 16 bytes) and return the file's sha256."""
    with path.open("r+b") as f:
        f.write(f"muster-bench-{round_number:03d}".encode()[:16].ljust(16, b"\0"))
    return hash_file(path)


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_chunk(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


def copy_and_fsync(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Round:
    copy: float
    copy_fsync: float
    upload: float
    read: float
    download: float


async def wait_ready(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(150):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("server did not start")


async def tus_upload(http: aiohttp.ClientSession, base: str, auth: dict[str, str], path: Path, size: int,
                     chunk: int) -> str:
    """Upload `path` with the tus protocol in PATCHes of `chunk` bytes; return the new file's id."""
    headers = {**auth, "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
               "Upload-Metadata": f"filename {b64(path.name)},filetype {b64('application/octet-stream')}"}
    async with http.post(f"{base}/api/uploads", headers=headers) as resp:
        if resp.status != 201:
            raise RuntimeError(f"POST /api/uploads answered {resp.status}: {await resp.text()}")
        location = resp.headers["Location"]
    url = location if location.startswith("http") else base + location
    offset = 0
    file_id: str | None = None
    while offset < size:
        body = await asyncio.to_thread(read_chunk, path, offset, chunk)
        patch_headers = {**auth, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                         "Content-Type": "application/offset+octet-stream"}
        async with http.patch(url, data=body, headers=patch_headers) as resp:
            if resp.status != 204:
                raise RuntimeError(f"PATCH at {offset} answered {resp.status}: {await resp.text()}")
            offset = int(resp.headers["Upload-Offset"])
            file_id = resp.headers.get("Muster-File-Id", file_id)
    if file_id is None:
        raise RuntimeError("the last PATCH did not answer Muster-File-Id")
    return file_id


async def wait_servable(http: aiohttp.ClientSession, base: str, auth: dict[str, str], file_id: str) -> None:
    """Wait (outside the timings) until the file is ready to download; with no virus scanner it is at once."""
    for _ in range(600):
        async with http.get(f"{base}/api/files/{file_id}", headers=auth) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET /api/files/{file_id} answered {resp.status}: {await resp.text()}")
            status = (await resp.json())["status"]
        if status == "ready":
            return
        if status != "scanning":
            raise RuntimeError(f"file {file_id} is {status}")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"file {file_id} was still scanning after 60 s")


async def download(http: aiohttp.ClientSession, base: str, auth: dict[str, str], file_id: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    received = 0
    async with http.get(f"{base}/api/files/{file_id}/content", headers=auth) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET /api/files/{file_id}/content answered {resp.status}: {await resp.text()}")
        async for block in resp.content.iter_chunked(BLOCK):
            digest.update(block)
            received += len(block)
    return received, digest.hexdigest()


def rate(size: int, seconds: float) -> float:
    return size / MIB / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=200, help="size of the file, MiB (default 200)")
    parser.add_argument("--chunk-mib", type=int, default=8, help="bytes per tus PATCH, MiB (default 8)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians are printed (default 5)")
    args = parser.parse_args()
    size, chunk = args.size_mib * MIB, args.chunk_mib * MIB
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="muster-bench-upload-") as folder:
        work = Path(folder)
        data = work / "muster"
        source, copy = work / "source.bin", work / "copy.bin"
        started = time.perf_counter()
        write_random_file(source, size)
        print(f"file: {args.size_mib} MiB of random bytes in {work} (written in {time.perf_counter() - started:.1f} s);"
              f" tus PATCHes of {args.chunk_mib} MiB; {args.repeat} round(s)")
        env = {**os.environ, "MUSTER_SERVER_DATA_DIR": str(data), "MUSTER_SERVER_PORT": str(port),
               "MUSTER_LOG_LEVEL": "error", "MUSTER_FILES_MAX_UPLOAD_SIZE": str(max(size, 2**31)),
               "MUSTER_FILES_USER_QUOTA": "0"}
        proc = subprocess.Popen([sys.executable, "-m", "server", "run", "--demo"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(read_bufsize=BLOCK) as http:
                await wait_ready(http, base, proc)
                async with http.post(f"{base}/api/auth/login", json={
                        "username": "commander", "password": "muster-demo", "device_name": "bench",
                        "device_kind": "console"}) as resp:
                    token = (await resp.json())["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                rounds: list[Round] = []
                for number in range(1, args.repeat + 1):
                    sha256 = await asyncio.to_thread(stamp_round, source, number)
                    copy_s = await asyncio.to_thread(timed, lambda: shutil.copyfile(source, copy))
                    copy.unlink()
                    copy_fsync_s = await asyncio.to_thread(timed, lambda: copy_and_fsync(source, copy))
                    copy.unlink()
                    t0 = time.perf_counter()
                    file_id = await tus_upload(http, base, auth, source, size, chunk)
                    upload_s = time.perf_counter() - t0
                    read_s = await asyncio.to_thread(timed, lambda: hash_file(source))
                    await wait_servable(http, base, auth, file_id)
                    t0 = time.perf_counter()
                    received, got = await download(http, base, auth, file_id)
                    download_s = time.perf_counter() - t0
                    if received != size or got != sha256:
                        raise SystemExit(f"round {number}: downloaded {received} bytes with sha256 {got}, "
                                         f"expected {size} bytes with sha256 {sha256}")
                    rounds.append(Round(copy_s, copy_fsync_s, upload_s, read_s, download_s))
                    print(f"round {number}: copy {rate(size, copy_s):6.0f}  copy+fsync {rate(size, copy_fsync_s):6.0f}"
                          f"  upload {rate(size, upload_s):5.0f}  read {rate(size, read_s):6.0f}"
                          f"  download {rate(size, download_s):6.0f} MiB/s  sha256 ok")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    labels = {"copy": "disk copy, shutil.copyfile (baseline)", "copy_fsync": "disk copy + fsync",
              "upload": "tus upload to Muster", "read": "file read + sha256 (baseline)",
              "download": "download from Muster + sha256"}
    rates = {name: [rate(size, getattr(r, name)) for r in rounds] for name in labels}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"median of {len(rounds)} round(s), MiB/s (min-max):")
    for name, label in labels.items():
        print(f"  {label:38} {medians[name]:7.0f}   ({min(rates[name]):.0f}-{max(rates[name]):.0f})")
    print(f"ratio upload / copy:   {medians['upload'] / medians['copy']:.2f}"
          f"   (upload / copy+fsync: {medians['upload'] / medians['copy_fsync']:.2f})")
    print(f"ratio download / read: {medians['download'] / medians['read']:.2f}")

if __name__ == "__main__":
    asyncio.run(main())
