"""A file's type comes from its bytes: real tiny files and crafted headers, one table."""

from __future__ import annotations

import gzip
import io
import tarfile
import wave
import zipfile
from collections.abc import Callable

import pytest
from PIL import Image

from rooms.files.sniff import HEAD_BYTES, OCTET_STREAM, TEXT_PLAIN, Sniffed, sniff


def picture(fmt: str, mode: str = "RGB", **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (7, 5), "red" if mode != "P" else 1).save(out, fmt, **save)
    return out.getvalue()


def apng() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGBA", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:])
    return out.getvalue()


def wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return out.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    """An ISO base media file's first box, as MP4, MOV and M4A files start."""
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00\x00\x00\x08free"


def ebml(doctype: bytes) -> bytes:
    """A Matroska/WebM EBML header naming its doctype."""
    body = b"\x42\x86\x81\x01" + b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18\x53\x80\x67"


def zipped(*entries: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()


def office(folder: str) -> bytes:
    """A minimal OOXML package laid out as Word, Excel and PowerPoint write it."""
    return zipped(("[Content_Types].xml", b"<Types/>"), ("_rels/.rels", b"<Relationships/>"),
                  (f"{folder}/document.xml", b"<document/>"))


def tarball() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hello"))
    return out.getvalue()


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

# (what, content, mime, kind, inline)
CASES: list[tuple[str, Callable[[], bytes], str, str, bool]] = [
    ("jpeg", lambda: picture("JPEG"), "image/jpeg", "image", True),
    ("png", lambda: picture("PNG"), "image/png", "image", True),
    ("png with alpha", lambda: picture("PNG", "RGBA"), "image/png", "image", True),
    ("animated png", apng, "image/png", "image", True),
    ("gif", lambda: picture("GIF", "P"), "image/gif", "image", True),
    ("webp", lambda: picture("WEBP"), "image/webp", "image", True),
    ("bmp", lambda: picture("BMP"), "image/bmp", "image", False),
    ("tiff", lambda: picture("TIFF"), "image/tiff", "image", False),
    ("mp4", lambda: ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4", "video", True),
    ("mp4 v2", lambda: ftyp(b"mp42", b"mp42", b"isom"), "video/mp4", "video", True),
    ("quicktime", lambda: ftyp(b"qt  ", b"qt  "), "video/quicktime", "video", False),
    ("m4a", lambda: ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4", "audio", True),
    ("webm", lambda: ebml(b"webm"), "video/webm", "video", True),
    ("matroska", lambda: ebml(b"matroska"), "video/x-matroska", "video", False),
    ("ogg", lambda: b"OggS\x00\x02" + bytes(20) + b"\x01\x1evorbis", "audio/ogg", "audio", True),
    ("mp3 with id3", lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(60),
     "audio/mpeg", "audio", True),
    ("mp3 frame", lambda: b"\xff\xfb\x90\x64" + bytes(60), "audio/mpeg", "audio", True),
    ("wav", wav, "audio/wav", "audio", True),
    ("flac", lambda: b"fLaC\x00\x00\x00\x22" + bytes(34), "audio/x-flac", "audio", False),
    ("pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "application/pdf",
     "document", True),
    ("docx", lambda: office("word"), DOCX, "document", False),
    ("xlsx", lambda: office("xl"), XLSX, "document", False),
    ("pptx", lambda: office("ppt"), PPTX, "document", False),
    ("odt", lambda: zipped(("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", b"<x/>")),
     "application/vnd.oasis.opendocument.text", "document", False),
    ("rtf", lambda: b"{\\rtf1\\ansi hello}", "application/rtf", "document", False),
    ("zip", lambda: zipped(("notes.txt", b"hello")), "application/zip", "archive", False),
    ("gzip", lambda: gzip.compress(b"hello"), "application/gzip", "archive", False),
    ("tar", tarball, "application/x-tar", "archive", False),
    ("7z", lambda: b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), "application/x-7z-compressed", "archive", False),
    ("elf", lambda: b"\x7fELF\x02\x01\x01" + bytes(57), "application/x-executable", "other", False),
    ("windows exe", lambda: b"MZ\x90\x00" + bytes(60), "application/x-msdownload", "other", False),
    ("flash", lambda: b"FWS\x0a" + bytes(20), OCTET_STREAM, "other", False),
    ("webassembly", lambda: b"\x00asm\x01\x00\x00\x00", OCTET_STREAM, "other", False),
    # Text: UTF-8 without NUL bytes or stray control characters.
    ("ascii text", lambda: b"Water level at gauge 3: 4.2 m\r\nrising\n", TEXT_PLAIN, "text", True),
    ("chinese text", lambda: "防汛指挥群：三号水位站 4.2 米，仍在上涨。\n".encode(), TEXT_PLAIN, "text", True),
    ("utf-8 with bom", lambda: "\ufeff督查记录\n".encode(), TEXT_PLAIN, "text", True),
    ("empty file", lambda: b"", TEXT_PLAIN, "text", True),
    ("json", lambda: b'{"level": 4.2, "unit": "m"}', TEXT_PLAIN, "text", True),
    ("csv", lambda: b"time,level\n08:00,4.2\n", TEXT_PLAIN, "text", True),
    ("log with ansi colours and tabs", lambda: b"\x1b[31mERROR\x1b[0m\tpump 2 stopped\f\n", TEXT_PLAIN, "text", True),
    ("comparisons are not markup", lambda: b"if a < b and x<3 then a > b\n", TEXT_PLAIN, "text", True),
    # JavaScript is left as text: text/plain with nosniff can be neither run as a script nor rendered as HTML.
    ("javascript source", lambda: b"function f() { return document.cookie }\n", TEXT_PLAIN, "text", True),
    ("utf-16 text", lambda: "hello".encode("utf-16"), OCTET_STREAM, "other", False),
    ("latin-1 text", lambda: "caf\u00e9 cr\u00e8me".encode("latin-1"), OCTET_STREAM, "other", False),
    ("control characters", lambda: b"abc\x01\x02\x03def", OCTET_STREAM, "other", False),
    ("binary", lambda: bytes(range(256)), OCTET_STREAM, "other", False),
    ("cut multi-byte character in a whole file", lambda: "水位".encode()[:-1], OCTET_STREAM, "other", False),
]

# Markup a browser would render and run script from: never inline, never under an HTML/SVG/XML type.
MARKUP = [
    b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
    b"<html><body>hi</body></html>",
    b"  \r\n\t<HTML><BODY>shouting</BODY></HTML>",
    "\ufeff<html>bom first</html>".encode(),
    b"<script>alert(document.domain)</script>",
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="5"/></svg>',
    b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    b'<?xml version="1.0"?><gpx version="1.1"><trk><name>patrol</name></trk></gpx>',
    b'<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
    b'<img src="x" onerror="alert(1)">',
    b"<!-- a comment first --><p>then markup</p>",
    b"</p>closing tag first",
    b"Dear colleague,\nplease see below.\n<script src='https://evil.example/x.js'></script>\n",
    b"notes\n<SVG onload=alert(1)>",
    b"report follows <iframe src=javascript:alert(1)>",
]


@pytest.mark.parametrize(("what", "content", "mime", "kind", "inline"), CASES, ids=[c[0] for c in CASES])
def test_type_from_content(what: str, content: Callable[[], bytes], mime: str, kind: str, inline: bool) -> None:
    data = content()
    assert sniff(data[:HEAD_BYTES]) == Sniffed(mime, kind, inline)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", MARKUP, ids=[f"markup {i}" for i in range(len(MARKUP))])
def test_markup_is_never_inline_nor_typed_as_markup(content: bytes) -> None:
    result = sniff(content)
    assert result == Sniffed(OCTET_STREAM, "other", inline=False)


def script_capable(mime: str) -> bool:
    """A type some browser renders as a document that can run script (or runs as script itself)."""
    essence = mime.split(";", 1)[0].strip().lower()
    return (any(word in essence for word in ("html", "svg", "javascript", "ecmascript"))
            or essence.endswith(("/xml", "+xml")) or essence in ("text/xsl", "application/xslt"))


SAFE_INLINE = {"image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/webm", "audio/ogg",
               "audio/mpeg", "audio/mp4", "audio/wav", "application/pdf", TEXT_PLAIN}


@pytest.mark.parametrize("content", [c[1]() for c in CASES] + MARKUP,
                         ids=[c[0] for c in CASES] + [f"markup {i}" for i in range(len(MARKUP))])
def test_no_script_capable_type_and_inline_only_for_safe_types(content: bytes) -> None:
    result = sniff(content)
    assert not script_capable(result.mime)
    assert result.inline == (result.mime in SAFE_INLINE)


def test_text_cut_inside_a_character_at_the_head_limit_is_still_text() -> None:
    data = ("水" * HEAD_BYTES).encode()  # three bytes a character: HEAD_BYTES cuts one in half
    assert HEAD_BYTES % 3 != 0
    assert sniff(data[:HEAD_BYTES]) == Sniffed(TEXT_PLAIN, "text", inline=True)


def test_only_the_first_head_bytes_count() -> None:
    assert sniff(b"a" * HEAD_BYTES + b"\x00binary later").mime == TEXT_PLAIN
    assert sniff(b"a" * (HEAD_BYTES - 1) + b"\x00").mime == OCTET_STREAM


def test_markup_late_in_a_long_text_is_past_the_head() -> None:
    assert sniff((b"a" * HEAD_BYTES + b"<script>")[:HEAD_BYTES]).inline
