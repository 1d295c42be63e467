"""Identifiers and time: sortable ids (ULID layout) and millisecond UTC timestamps."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def now_ms() -> int:
    """Milliseconds since the Unix epoch, UTC: the one time format Muster stores and sends."""
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A 26-character id that sorts by creation time (48-bit ms time, 80 random bits)."""
    value = (now_ms() << 80) | secrets.randbits(80)
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))
