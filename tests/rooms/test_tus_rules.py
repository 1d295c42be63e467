"""The pure rules of uploads and downloads: tus headers, byte ranges, display names."""

from __future__ import annotations

import base64
import hashlib

import pytest

from rooms.files.ranges import RangeNotSatisfiable, parse_range
from rooms.files.service import display_name, inline, kind_of
from rooms.files.tus import (
    TusError,
    check_resumable,
    format_metadata,
    http_date,
    parse_checksum,
    parse_length,
    parse_metadata,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(("header", "expected"), [
    (None, {}),
    ("", {}),
    (f"filename {b64('现场.jpg')}", {"filename": "现场.jpg"}),
    (f"filename {b64('a.txt')},filetype {b64('text/plain')}", {"filename": "a.txt", "filetype": "text/plain"}),
    (f"filename {b64('a')}, is_confidential", {"filename": "a", "is_confidential": ""}),
    (f"room_id {b64('r1')},client_id {b64('c-1')}", {"room_id": "r1", "client_id": "c-1"}),
])
def test_metadata_parses(header: str | None, expected: dict[str, str]) -> None:
    assert parse_metadata(header) == expected
    if expected:
        assert parse_metadata(format_metadata(expected)) == expected


@pytest.mark.parametrize("header", [
    "filename !!!",                       # not base64
    f"filename {b64('a')} extra",         # three parts
    f"file name {b64('a')}",              # a space in the key
    f"a {b64('1')},a {b64('2')}",         # a key twice
    "k " + base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
    "k " + "A" * 5000,                    # too long
    f"ключ {b64('a')}",                   # non-ASCII key
])
def test_metadata_refuses(header: str) -> None:
    with pytest.raises(TusError) as err:
        parse_metadata(header)
    assert err.value.status == 400 and err.value.code == "upload.bad_metadata"
    assert err.value.headers == {"Tus-Resumable": "1.0.0"}


@pytest.mark.parametrize(("value", "ok"), [
    ("0", 0), ("52428800", 52428800), (" 7 ", 7), ("-1", None), ("1.5", None), ("", None), (None, None),
    ("0x10", None), ("99999999999999999999", None), ("١٢", None),
])
def test_lengths(value: str | None, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(TusError):
            parse_length(value, name="Upload-Length")
    else:
        assert parse_length(value, name="Upload-Length") == ok


def test_version_check() -> None:
    check_resumable("1.0.0")
    for bad in (None, "", "0.2.2", "1.0"):
        with pytest.raises(TusError) as err:
            check_resumable(bad)
        assert err.value.status == 412 and err.value.headers is not None
        assert err.value.headers["Tus-Version"] == "1.0.0"


def test_checksums() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert parse_checksum(None) is None
    assert parse_checksum("sha256 " + base64.b64encode(digest).decode()) == ("sha256", digest)
    sha1 = hashlib.sha1(b"abc").digest()
    assert parse_checksum("sha1 " + base64.b64encode(sha1).decode()) == ("sha1", sha1)
    for bad, code in [("crc32 AAAA", "upload.bad_checksum_algorithm"), ("sha256 !!", "upload.bad_checksum"),
                      ("sha256 " + base64.b64encode(b"short").decode(), "upload.bad_checksum"),
                      ("sha256", "upload.bad_checksum")]:
        with pytest.raises(TusError) as err:
            parse_checksum(bad)
        assert err.value.code == code, bad


def test_http_date() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1_700_000_000_000) == "Tue, 14 Nov 2023 22:13:20 GMT"


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 10)),
    ("bytes=90-", 100, (90, 100)),
    ("bytes=-10", 100, (90, 100)),
    ("bytes=-1000", 100, (0, 100)),
    ("bytes=50-5000", 100, (50, 100)),
    ("bytes=99-99", 100, (99, 100)),
    ("bytes = 1 - 2", 100, (1, 3)),
    ("bytes=5-2", 100, None),          # invalid: ignored, whole file
    ("bytes=0-1,3-4", 100, None),      # several ranges: whole file
    ("items=0-1", 100, None),
    ("bytes=-", 100, None),
    ("bytes=abc", 100, None),
])
def test_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100),
                                              ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as err:
        parse_range(header, size)
    assert err.value.status == 416 and err.value.headers == {"Content-Range": f"bytes */{size}"}


@pytest.mark.parametrize(("raw", "shown"), [
    ("../../etc/passwd", "../../etc/passwd"),
    ("a\x00b\x1f\x7fc", "abc"),
    ("  报告.pdf  ", "报告.pdf"),
    ("", "file"),
    ("\r\n", "file"),
    ("x" * 300, "x" * 255),
])
def test_display_names(raw: str, shown: str) -> None:
    assert display_name(raw) == shown


@pytest.mark.parametrize(("mime", "kind", "shown_inline"), [
    ("image/png", "image", True), ("image/svg+xml", "image", False), ("video/mp4", "video", True),
    ("audio/mpeg", "audio", True), ("application/pdf", "document", True),
    ("text/plain; charset=utf-8", "text", True), ("application/zip", "archive", False),
    ("application/octet-stream", "other", False), ("text/html", "document", False),
])
def test_kinds_and_inline(mime: str, kind: str, shown_inline: bool) -> None:
    assert kind_of(mime) == kind
    assert inline(mime) is shown_inline
