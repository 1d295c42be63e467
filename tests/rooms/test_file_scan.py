"""Virus scanning against a real clamd (tests/clamd.py), and against servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import structlog

from rooms.files.scan import CHUNK_BYTES, ClamdScanner, ScanRefused, ScanResult, ScanUnavailable
from tests.clamd import EICAR_SIGNATURE, HARMLESS_PROBE, HARMLESS_SIGNATURE, Clamd, eicar, free_port, running_clamd

CLEAN = ScanResult(clean=True, signature=None)
MIB = 1024 * 1024


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def within(awaitable: Awaitable[object], seconds: float = 15) -> object:
    """A bounded wait, so a broken timeout fails the test instead of hanging it."""
    async with asyncio.timeout(seconds):
        return await awaitable


@pytest.fixture
def scanner(clamd_address: str) -> ClamdScanner:
    return ClamdScanner(clamd_address, timeout=30)


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short private folder for unix sockets, whose paths must stay under ~100 bytes (tmp_path may not)."""
    folder = Path(tempfile.mkdtemp(prefix="muster-sock-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def small_clamd() -> Iterator[Clamd]:
    """A second clamd that accepts streams of at most 1 MiB, on a unix socket and a loopback TCP port."""
    with running_clamd(stream_max_length="1M", tcp=True) as clamd:
        yield clamd


# -- a real clamd --------------------------------------------------------------------------------------


async def test_clean_content_in_several_chunks(scanner: ClamdScanner) -> None:
    big = bytes(range(256)) * (3 * CHUNK_BYTES // 256 + 7)  # split into four protocol chunks
    assert len(big) > CHUNK_BYTES
    assert await scanner.scan(stream(b"water level 4.2 m\n", big, b"", b"end of report\n")) == CLEAN


async def test_empty_content_is_clean(scanner: ClamdScanner) -> None:
    assert await scanner.scan(stream()) == CLEAN


async def test_eicar_is_found_with_its_signature(scanner: ClamdScanner) -> None:
    data = eicar()
    result = await scanner.scan(stream(data[:10], data[10:41], data[41:]))
    assert result == ScanResult(clean=False, signature=EICAR_SIGNATURE)


async def test_custom_signature_across_a_protocol_chunk_boundary(scanner: ClamdScanner) -> None:
    data = b"a" * (CHUNK_BYTES - 10) + HARMLESS_PROBE + b"b" * 1000
    result = await scanner.scan(stream(data))
    assert result == ScanResult(clean=False, signature=HARMLESS_SIGNATURE)


async def test_concurrent_scans_get_their_own_verdicts(scanner: ClamdScanner) -> None:
    results = await asyncio.gather(*(scanner.scan(stream(b"x" * 1000, HARMLESS_PROBE if i % 2 else b"y"))
                                     for i in range(8)))
    assert results == [ScanResult(False, HARMLESS_SIGNATURE) if i % 2 else CLEAN for i in range(8)]


async def test_errors_of_the_content_source_pass_through(scanner: ClamdScanner) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"first part"
        raise FileNotFoundError("blob gone")  # not the scanner's fault: must not read as "try again later"

    with pytest.raises(FileNotFoundError, match="blob gone"):
        await scanner.scan(failing())
    assert await scanner.ping() is True


async def test_ping(scanner: ClamdScanner) -> None:
    assert await scanner.ping() is True


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_over_stream_max_length_is_refused(small_clamd: Clamd, transport: str) -> None:
    address = small_clamd.address if transport == "unix" else small_clamd.tcp_address
    scanner = ClamdScanner(address, timeout=30)
    with pytest.raises(ScanRefused):
        await scanner.scan(stream(b"\x00" * (2 * MIB)))
    # Under the limit the same daemon scans, and it still answers afterwards.
    assert await scanner.scan(stream(b"\x00" * (MIB // 2))) == CLEAN
    assert await scanner.scan(stream(eicar())) == ScanResult(clean=False, signature=EICAR_SIGNATURE)
    assert await scanner.ping() is True


# -- no daemon, or one that misbehaves ------------------------------------------------------------------


async def test_missing_socket_is_unavailable(sockets: Path) -> None:
    scanner = ClamdScanner(f"unix:{sockets}/no-such.sock", timeout=10)
    with pytest.raises(ScanUnavailable, match="cannot connect to clamd"):
        await within(scanner.scan(stream(b"hello")))
    assert await within(scanner.ping()) is False


async def test_stale_socket_file_is_unavailable(sockets: Path) -> None:
    path = sockets / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file exists but nothing listens: connection refused
        scanner = ClamdScanner(f"unix:{path}", timeout=10)
        with pytest.raises(ScanUnavailable):
            await within(scanner.scan(stream(b"hello")))


async def test_closed_tcp_port_is_unavailable() -> None:
    scanner = ClamdScanner(f"tcp:127.0.0.1:{free_port()}", timeout=10)
    with pytest.raises(ScanUnavailable):
        await within(scanner.scan(stream(b"hello")))
    assert await within(scanner.ping()) is False


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_clamd(path: Path, handler: Handler) -> AsyncIterator[str]:
    """A unix socket server running `handler` per connection; on exit every connection is closed and finished."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(tracked, path=str(path))
    try:
        yield f"unix:{path}"
    finally:
        server.close()
        async with asyncio.timeout(10):
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()


async def read_instream(reader: asyncio.StreamReader) -> bytes:
    """Everything a client sends for one INSTREAM command, read as clamd does: up to the zero-length chunk."""
    received = await reader.readuntil(b"\0")
    while True:
        length = await reader.readexactly(4)
        received += length
        if length == b"\0\0\0\0":
            return received
        received += await reader.readexactly(int.from_bytes(length, "big"))


@pytest.mark.parametrize("reads", [True, False], ids=["reads-everything", "reads-nothing"])
async def test_silent_server_times_out(sockets: Path, reads: bool) -> None:
    stop = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if reads:
            await reader.read()  # until the scanner gives up and closes
        await stop.wait()

    async with fake_clamd(sockets / "silent.sock", silent) as address:
        try:
            scanner = ClamdScanner(address, timeout=0.3)
            with pytest.raises(ScanUnavailable, match="did not finish"):
                # Several MiB: a server that reads nothing blocks the sending too.
                await within(scanner.scan(stream(*[b"z" * MIB] * 8)))
            assert await within(scanner.ping()) is False
        finally:
            stop.set()


# clamd's answers to INSTREAM, and what the scanner makes of them.
REPLIES: list[tuple[bytes, ScanResult | type[Exception]]] = [
    (b"stream: OK\0", CLEAN),
    (b"stream: Win.Test.EICAR_HDB-1 FOUND\0", ScanResult(clean=False, signature="Win.Test.EICAR_HDB-1")),
    (b"stream: Heuristics.Encrypted.Zip FOUND\0", ScanResult(clean=False, signature="Heuristics.Encrypted.Zip")),
    (b"INSTREAM size limit exceeded. ERROR\0", ScanRefused),
    (b"Can't allocate memory ERROR\0", ScanUnavailable),
    (b"COMMAND READ TIMED OUT\0", ScanUnavailable),
    (b"stream: OK", CLEAN),  # closed without the NUL: what came is the answer
    (b"", ScanUnavailable),  # closed without a word
    (b"x" * 10_000, ScanUnavailable),  # not clamd
]


@pytest.mark.parametrize(("reply", "expected"), REPLIES, ids=[r[0][:40].decode() or "nothing" for r in REPLIES])
async def test_replies(sockets: Path, reply: bytes, expected: ScanResult | type[Exception]) -> None:
    received = bytearray()

    async def scripted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await read_instream(reader))
        writer.write(reply)
        await writer.drain()

    async with fake_clamd(sockets / "fake.sock", scripted) as address:
        scanner = ClamdScanner(address, timeout=10)
        with structlog.testing.capture_logs() as logs:
            if isinstance(expected, ScanResult):
                assert await within(scanner.scan(stream(b"secret", b" content"))) == expected
            else:
                with pytest.raises(expected):
                    await within(scanner.scan(stream(b"secret", b" content")))
    assert b"secret" in received  # it was sent...
    assert "secret" not in repr(logs)  # ...and never logged


async def test_wire_format(sockets: Path) -> None:
    received = bytearray()

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await read_instream(reader))
        writer.write(b"stream: OK\0")
        await writer.drain()

    big = b"\x01" * (CHUNK_BYTES + 5)
    async with fake_clamd(sockets / "fake.sock", recording) as address:
        assert await within(ClamdScanner(address, timeout=10).scan(stream(b"ab", big))) == CLEAN
    size = CHUNK_BYTES.to_bytes(4, "big")
    assert bytes(received) == (b"zINSTREAM\0" + b"\0\0\0\x02ab" + size + big[:CHUNK_BYTES]
                               + b"\0\0\0\x05" + big[CHUNK_BYTES:] + b"\0\0\0\0")


@pytest.mark.parametrize("address", ["", "unix:", "clamd.sock", "tcp:localhost", "tcp:host:port", "tcp::3310",
                                     "tcp:localhost:0", "tcp:localhost:70000", "http://localhost:3310"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="clamd address"):
        ClamdScanner(address, timeout=1)


@pytest.mark.parametrize(("address", "target"), [
    ("unix:/run/clamav/clamd.ctl", ("/run/clamav/clamd.ctl", None)),
    ("tcp:127.0.0.1:3310", (None, ("127.0.0.1", 3310))),
    ("tcp:[::1]:3310", (None, ("::1", 3310))),
    ("tcp:clamav.internal:3310", (None, ("clamav.internal", 3310))),
])
def test_good_addresses(address: str, target: tuple[object, object]) -> None:
    scanner = ClamdScanner(address, timeout=1)
    assert (scanner._unix_path, scanner._tcp) == target
