"""A file's type decided from its first bytes, never from the name or type the client claimed.

The result drives how a download is served: `inline` types are shown in a browser tab, everything
else is sent as an attachment. Nothing that can run script in a browser (HTML, SVG, XML, XHTML) is
ever inline or given its own type: it is served as `application/octet-stream`. Plain text is served
as `text/plain; charset=utf-8`, which is safe inline because downloads also carry
`X-Content-Type-Options: nosniff` (no browser turns it into HTML or runs it as a script) and
`Content-Security-Policy: sandbox`; that is also why JavaScript source is left as plain text.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any, Literal

import filetype  # type: ignore[import-untyped]
from filetype.types import AUDIO, DOCUMENT, IMAGE, VIDEO  # type: ignore[import-untyped]

Kind = Literal["image", "video", "audio", "document", "archive", "text", "other"]

HEAD_BYTES = 8192

OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the content is: the type to serve it with, a coarse kind for the UI, and whether a tab may show it."""

    mime: str
    kind: Kind
    inline: bool


# Types a browser tab shows without running anything of the file's own; each one maps to itself.
_INLINE: dict[str, Kind] = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/gif": "image",
    "image/webp": "image",
    "video/mp4": "video",
    "video/webm": "video",
    "audio/ogg": "audio",  # an Ogg container may hold video too; its magic number cannot tell
    "audio/mpeg": "audio",
    "audio/mp4": "audio",
    "audio/wav": "audio",
    "application/pdf": "document",
}

# filetype's name for a type -> the name browsers know it by.
_RENAMED = {
    "image/apng": "image/png",  # an animated PNG is a PNG to every browser
    "audio/x-wav": "audio/wav",
}

# Attachments whose kind is not the one filetype's own grouping would give.
_ATTACHMENT_KINDS: dict[str, Kind] = {
    "application/rtf": "document",
    "application/epub+zip": "document",
    "application/postscript": "document",
    "application/dicom": "image",
    "application/zip": "archive",
    "application/x-tar": "archive",
    "application/x-rar-compressed": "archive",
    "application/gzip": "archive",
    "application/x-bzip2": "archive",
    "application/x-7z-compressed": "archive",
    "application/x-xz": "archive",
    "application/zstd": "archive",
    "application/x-brotli": "archive",
    "application/x-lzip": "archive",
    "application/x-lz4": "archive",
    "application/x-lzop": "archive",
    "application/x-compress": "archive",
    "application/vnd.ms-cab-compressed": "archive",
    "application/x-unix-archive": "archive",
    "application/x-rpm": "archive",
    "application/x-deb": "archive",
}

# Detected types never served under their own name, even as attachments: plugin and program content.
_DOWNGRADED = frozenset({"application/x-shockwave-flash", "application/wasm"})


def _group_kinds() -> dict[str, Kind]:
    """filetype's own grouping of its matchers: the kind of the remaining types (TIFF, HEIC, FLAC, MKV, DOCX...)."""
    kinds: dict[str, Kind] = {}
    groups: dict[Kind, Any] = {"image": IMAGE, "video": VIDEO, "audio": AUDIO, "document": DOCUMENT}
    for kind, matchers in groups.items():
        for matcher in matchers:
            kinds.setdefault(str(matcher.mime), kind)
    return kinds


_GROUP_KINDS = _group_kinds()

# C0 controls other than tab, newlines, form feed and escape (ANSI colours in logs) mean binary data.
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
# A document that starts like markup: `<tag`, `</tag`, `<!DOCTYPE`, `<!--`, `<?xml`.
_MARKUP_START = re.compile(r"<[A-Za-z!?/]")
# Tags that make a browser run script or load active content, wherever they appear in the first bytes.
_ACTIVE_TAG = re.compile(
    r"<(?:script|svg|html|body|iframe|frameset|object|embed|math|!doctype|\?xml)(?=[\s/>]|$)", re.IGNORECASE,
)


def sniff(head: bytes) -> Sniffed:
    """The type of a file from its first `HEAD_BYTES` bytes (shorter when the file is; empty is an empty file)."""
    head = head[:HEAD_BYTES]
    match = filetype.guess(head) if head else None
    if match is not None:
        return _detected(str(match.mime))
    text = _utf8_text(head, complete=len(head) < HEAD_BYTES)
    if text is None:
        return Sniffed(OCTET_STREAM, "other", inline=False)
    if _looks_like_markup(text):
        return Sniffed(OCTET_STREAM, "other", inline=False)
    return Sniffed(TEXT_PLAIN, "text", inline=True)


def _detected(mime: str) -> Sniffed:
    mime = _RENAMED.get(mime, mime)
    if mime in _INLINE:
        return Sniffed(mime, _INLINE[mime], inline=True)
    if mime in _DOWNGRADED:
        return Sniffed(OCTET_STREAM, "other", inline=False)
    kind = _ATTACHMENT_KINDS.get(mime) or _GROUP_KINDS.get(mime) or "other"
    return Sniffed(mime, kind, inline=False)


def _utf8_text(head: bytes, *, complete: bool) -> str | None:
    """The decoded text, or None when the bytes are not UTF-8 text."""
    if b"\x00" in head:
        return None
    # A head cut at HEAD_BYTES may end inside a multi-byte character; the incremental decoder keeps those
    # last bytes back instead of failing. A shorter head is the whole file and must decode completely.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(head, final=complete)
    except UnicodeDecodeError:
        return None
    if _BINARY_CONTROLS.search(text):
        return None
    return text


def _looks_like_markup(text: str) -> bool:
    start = text.lstrip("\ufeff \t\r\n\f\v")
    return bool(_MARKUP_START.match(start)) or bool(_ACTIVE_TAG.search(text))
