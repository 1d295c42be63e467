"""Virus scanning through a ClamAV daemon (clamd), spoken to directly over its socket.

The content is streamed with clamd's INSTREAM command: each piece is sent with a 4-byte big-endian
length in front, a zero length ends the stream, and clamd answers one NUL-terminated line:
`stream: OK`, `stream: <signature> FOUND` or `<reason> ERROR`. Plain non-blocking sockets are used
rather than asyncio streams because clamd answers "size limit exceeded" and closes while the
client is still sending: the answer must still be read after a failed write.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from server.logging import get_logger

log = get_logger("muster.files.scan")

# The largest piece sent in one INSTREAM chunk; clamd buffers each whole chunk.
CHUNK_BYTES = 64 * 1024
# clamd's answers are one short line; anything longer is not clamd.
MAX_REPLY_BYTES = 4096

_FOUND = " FOUND"
_ERROR = "ERROR"
_SIZE_LIMIT = "INSTREAM size limit exceeded"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The verdict on one stream: clean, or the name of the signature that matched."""

    clean: bool
    signature: str | None  # e.g. "Eicar-Signature" when found


class ScanUnavailable(Exception):
    """The daemon could not be reached or timed out: try again later."""


class ScanRefused(Exception):
    """The daemon refused this content for good (e.g. INSTREAM size limit exceeded)."""


class ClamdScanner:
    """A client for one clamd, at `unix:/path/to/clamd.sock` or `tcp:host:port`."""

    def __init__(self, address: str, *, timeout: float) -> None:
        """Parse the address (ValueError when malformed); nothing is connected until a scan or a ping."""
        if timeout <= 0:
            raise ValueError("the scan timeout must be positive")
        self.address = address
        self.timeout = timeout
        self._unix_path, self._tcp = _parse_address(address)

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        """Stream the content to clamd and return its verdict, all within the timeout.

        Raises ScanUnavailable when clamd cannot be reached, fails, or the whole scan (reading `chunks`
        included) takes longer than the timeout; ScanRefused when clamd will never accept this content
        (larger than its StreamMaxLength). Errors raised by `chunks` itself pass through unchanged.
        The content is never logged.
        """
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._instream(chunks)
        except TimeoutError:
            log.debug("virus scan timed out", address=self.address, timeout=self.timeout)
            raise ScanUnavailable(f"clamd did not finish the scan within {self.timeout:g} s") from None
        return _verdict(reply)

    async def ping(self) -> bool:
        """Whether clamd answers PING with PONG within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                with await self._connect() as sock:
                    await _send(sock, b"zPING\0")
                    return await _read_reply(sock) == "PONG"
        except (TimeoutError, ScanUnavailable, _StoppedReading):
            return False

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        targets: list[tuple[socket.AddressFamily, str | tuple[Any, ...]]]
        try:
            if self._tcp is not None:
                infos = await loop.getaddrinfo(*self._tcp, type=socket.SOCK_STREAM)
                targets = [(family, address) for family, _type, _proto, _name, address in infos]
            else:
                targets = [(socket.AF_UNIX, str(self._unix_path))]
        except OSError as exc:
            raise _unavailable("cannot resolve", exc) from exc
        error = OSError(f"no address for {self.address}")
        for family, target in targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, target)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()  # cancelled (the timeout) while connecting
                raise
            return sock
        raise _unavailable("cannot connect to", error) from error

    async def _instream(self, chunks: AsyncIterator[bytes]) -> str:
        with await self._connect() as sock:
            try:
                await _send(sock, b"zINSTREAM\0")
                async for chunk in chunks:
                    view = memoryview(chunk)
                    for start in range(0, len(view), CHUNK_BYTES):
                        piece = view[start:start + CHUNK_BYTES]
                        await _send(sock, struct.pack(">I", len(piece)))
                        await _send(sock, piece)
                await _send(sock, struct.pack(">I", 0))
            except _StoppedReading:
                # clamd stopped reading, most often to say the stream is over its size limit: its answer
                # is already on the way, so read it instead of reporting the broken write.
                pass
            return await _read_reply(sock)


class _StoppedReading(Exception):
    """clamd closed its side while we were still sending."""


async def _send(sock: socket.socket, data: bytes | memoryview) -> None:
    try:
        await asyncio.get_running_loop().sock_sendall(sock, data)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise _StoppedReading from exc
    except OSError as exc:
        raise _unavailable("lost the connection to", exc) from exc


async def _read_reply(sock: socket.socket) -> str:
    """One NUL-terminated answer (or what came before clamd closed the connection)."""
    loop = asyncio.get_running_loop()
    reply = bytearray()
    while b"\0" not in reply:
        try:
            data = await loop.sock_recv(sock, MAX_REPLY_BYTES)
        except ConnectionResetError:
            data = b""
        except OSError as exc:
            raise _unavailable("lost the connection to", exc) from exc
        if not data:
            if not reply:
                raise ScanUnavailable("clamd closed the connection without an answer")
            break
        reply += data
        if len(reply) > MAX_REPLY_BYTES:
            raise ScanUnavailable("clamd's answer is too long")
    return reply.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _unavailable(what: str, exc: OSError) -> ScanUnavailable:
    log.debug("virus scanner unreachable", what=what, error=type(exc).__name__)
    return ScanUnavailable(f"{what} clamd: {exc.strerror or exc}")


def _verdict(reply: str) -> ScanResult:
    if reply == "stream: OK":
        return ScanResult(clean=True, signature=None)
    if reply.startswith("stream: ") and reply.endswith(_FOUND):
        return ScanResult(clean=False, signature=reply[len("stream: "):-len(_FOUND)].strip() or "unknown")
    if _SIZE_LIMIT in reply:
        raise ScanRefused("larger than the virus scanner accepts")
    if reply.endswith(_ERROR):
        raise ScanUnavailable(f"clamd error: {reply[:200]}")
    # Not clamd's protocol: perhaps something else listens at the configured address.
    log.warning("virus scanner answered unexpectedly", reply=reply[:200])
    raise ScanUnavailable("clamd gave an unexpected answer")


def _parse_address(address: str) -> tuple[str | None, tuple[str, int] | None]:
    """`unix:/path` -> (path, None); `tcp:host:port` or `tcp:[v6]:port` -> (None, (host, port))."""
    scheme, _, rest = address.partition(":")
    if scheme == "unix" and rest:
        return rest, None
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return None, (host, int(port))
    raise ValueError(f"clamd address must be unix:/path or tcp:host:port, not {address!r}")
