"""The tus 1.0 resumable-upload protocol: header parsing and formatting, no I/O (tus.io/protocols/resumable-upload).

Muster implements core, creation, creation-with-upload, termination, checksum and expiration.
Every function here is pure so that each rule of the protocol has a table-driven test.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime
from email.utils import format_datetime

from server.errors import AppError

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "termination", "checksum", "expiration")
# sha1 is the algorithm the checksum extension requires every server to support.
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
METADATA_MAX = 4096
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DIGITS = re.compile(r"^[0-9]{1,19}$")
# The status the checksum extension gives a body whose checksum does not match.
CHECKSUM_MISMATCH = 460


class TusError(AppError):
    """A protocol error; its response carries Tus-Resumable like every tus response."""

    def __init__(self, message: str, *, code: str, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, status=status, headers={"Tus-Resumable": VERSION, **(headers or {})})


def check_resumable(value: str | None) -> None:
    """Every request but OPTIONS names the protocol version; 412 (with the versions we speak) otherwise."""
    if value != VERSION:
        raise TusError(f"this server speaks tus {VERSION}: send Tus-Resumable: {VERSION}",
                       code="upload.unsupported_version", status=412, headers={"Tus-Version": VERSION})


def parse_length(value: str | None, *, name: str) -> int:
    """A non-negative integer header (Upload-Length, Upload-Offset)."""
    if value is None:
        raise TusError(f"{name} is required", code="upload.bad_header", status=400)
    value = value.strip()
    if not DIGITS.fullmatch(value) or int(value) > 2**53:
        raise TusError(f"{name} must be a non-negative integer", code="upload.bad_header", status=400)
    return int(value)


def parse_metadata(header: str | None) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs; values are decoded as UTF-8 text."""
    if not header or not header.strip():
        return {}
    if len(header) > METADATA_MAX:
        raise TusError(f"Upload-Metadata is longer than {METADATA_MAX} characters", code="upload.bad_metadata",
                       status=400)
    result: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not METADATA_KEY.fullmatch(parts[0]):
            raise TusError("Upload-Metadata must be comma-separated `key base64value` pairs",
                           code="upload.bad_metadata", status=400)
        key = parts[0]
        if key in result:
            raise TusError(f"Upload-Metadata names {key!r} twice", code="upload.bad_metadata", status=400)
        try:
            value = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text",
                           code="upload.bad_metadata", status=400) from None
        result[key] = value
    return result


def format_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
                    for key, value in metadata.items())


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`; None when absent."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(f"checksum algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}",
                       code="upload.bad_checksum_algorithm", status=400)
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise TusError("Upload-Checksum digest is not base64", code="upload.bad_checksum", status=400) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise TusError(f"Upload-Checksum digest has the wrong length for {algorithm}", code="upload.bad_checksum",
                       status=400)
    return algorithm, digest


def http_date(ms: int) -> str:
    """RFC 9110 date, as Upload-Expires and Last-Modified use."""
    return format_datetime(datetime.fromtimestamp(ms / 1000, UTC), usegmt=True)


def options_headers(max_size: int) -> dict[str, str]:
    return {
        "Tus-Resumable": VERSION,
        "Tus-Version": VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Max-Size": str(max_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }


def unsupported_defer_length() -> TusError:
    return TusError("Upload-Defer-Length is not supported: send Upload-Length", code="upload.defer_unsupported",
                    status=400)
