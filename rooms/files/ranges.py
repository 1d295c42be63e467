"""HTTP Range requests (RFC 9110 section 14): one byte range per request; several are answered in full."""

from __future__ import annotations

import re

from server.errors import AppError

RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


class RangeNotSatisfiable(AppError):
    status = 416
    code = "file.range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the file has {size} bytes", headers={"Content-Range": f"bytes */{size}"})


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) byte range a Range header asks for, or None for the whole file.

    A header that is not a single well-formed byte range is ignored (the whole file is sent,
    as RFC 9110 allows); a well-formed range that starts past the end raises RangeNotSatisfiable.
    """
    if not header:
        return None
    match = RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and int(last) < start:
        return None  # invalid range: ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size)
