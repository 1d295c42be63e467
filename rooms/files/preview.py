"""Small previews of pictures for the chat, made from untrusted uploads.

A preview is JPEG, or PNG when the picture really uses transparency (a JPEG would turn it black or
white). It carries no metadata at all (no EXIF, GPS, XMP, ICC or comments): the pixels are copied
into a fresh image before encoding. Only the common picture formats are decoded (JPEG, PNG, GIF,
WebP, BMP); Pillow's other plugins (EPS runs Ghostscript, TIFF and the rest are rarely needed)
are never reached with uploaded bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps

from server.logging import get_logger

log = get_logger("muster.files.preview")

PREVIEW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
JPEG_QUALITY = 82

# EXIF orientations that turn the picture a quarter turn, swapping its width and height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True, slots=True)
class Preview:
    """An encoded preview and the size of the original picture as it is meant to be seen."""

    data: bytes
    mime: str  # "image/jpeg" or "image/png"
    width: int  # the original picture's, after EXIF orientation
    height: int


def make_preview(data: bytes, *, size: int, max_pixels: int) -> Preview | None:
    """A preview whose longest side is at most `size` (never enlarged), or None.

    None for anything that is not a picture in `PREVIEW_FORMATS`, is corrupt or truncated, or declares
    more than `max_pixels` pixels in its header (checked before any pixel is decoded). Animated pictures
    give their first frame. Synchronous and CPU-bound: run it in a worker thread.
    """
    if size < 1:
        raise ValueError("preview size must be at least 1 pixel")
    try:
        return _make_preview(data, size=size, max_pixels=max_pixels)
    except Exception as exc:
        # Decoders fed untrusted bytes raise many kinds of errors (OSError, SyntaxError, struct.error,
        # DecompressionBombError, ...): a picture that cannot be read simply has no preview.
        log.debug("no preview", reason=type(exc).__name__)
        return None


def _make_preview(data: bytes, *, size: int, max_pixels: int) -> Preview | None:
    # Opening reads only the header; Pillow's own bomb limit is global and may be changed or off, so the
    # caller's limit is checked here before anything is decoded.
    with Image.open(io.BytesIO(data), formats=PREVIEW_FORMATS) as source:
        width, height = source.size
        if width < 1 or height < 1 or width * height > max_pixels:
            return None
        # A JPEG can be decoded at 1/2, 1/4 or 1/8 scale: no less than twice the preview keeps it sharp.
        source.draft(None, (size * 2, size * 2))
        source.load()  # the first frame of an animation
        orientation = source.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in _QUARTER_TURNS:
            width, height = height, width
        ImageOps.exif_transpose(source, in_place=True)
        picture = _displayable(source)
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)  # only ever shrinks
        transparent = picture.mode == "RGBA" and _alpha_min(picture) < 255
        if picture.mode == "RGBA" and not transparent:
            picture = picture.convert("RGB")
        # A fresh image has no info: nothing of the original's metadata can reach the encoder.
        clean = Image.frombytes(picture.mode, picture.size, picture.tobytes())
    out = io.BytesIO()
    if transparent:
        clean.save(out, "PNG", optimize=True)
        mime = "image/png"
    else:
        clean.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        mime = "image/jpeg"
    return Preview(data=out.getvalue(), mime=mime, width=width, height=height)


def _displayable(image: Image.Image) -> Image.Image:
    """The picture in L, RGB or RGBA, the modes a JPEG or PNG preview is made from."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16- and 32-bit greys: scale to 8 bits, since a plain conversion clips everything above 255 to white.
        return image.convert("I").point(lambda v: v / 256).convert("L")
    if mode in ("RGBA", "PA", "LA", "La", "RGBa") or "transparency" in image.info:
        return image if mode == "RGBA" else image.convert("RGBA")
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX


def _alpha_min(image: Image.Image) -> int:
    low, _high = image.getchannel("A").getextrema()
    return int(low)  # type: ignore[arg-type]
