"""Previews of uploaded pictures: formats, orientation, modes, metadata stripped, bombs and junk refused."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageFile

from rooms.files.preview import Preview, make_preview

BIG = 10_000_000


def encode(image: Image.Image, fmt: str, **save: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


Colour = str | int | tuple[int, ...]


def halves(size: tuple[int, int], left: Colour = "red", right: Colour = "blue", mode: str = "RGB") -> Image.Image:
    """A picture whose left half and right half differ, to tell which way it was turned."""
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def with_orientation(orientation: int, **tags: Any) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    for key, value in tags.items():
        exif[getattr(ExifTags.Base, key)] = value
    return exif.tobytes()


def opened(preview: Preview) -> Image.Image:
    image = Image.open(io.BytesIO(preview.data))
    assert image.format == {"image/jpeg": "JPEG", "image/png": "PNG"}[preview.mime]
    return image


def near(pixel: Any, colour: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def rgba_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.convert("RGBA").getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header declaring a size, with a token of image data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every time Pillow starts decoding pixels."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> Any:
        calls.append(str(self.format))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    yield calls


# (what, source, expected preview mime, expected preview size) at size=100
SOURCES: list[tuple[str, Callable[[], bytes], str, tuple[int, int]]] = [
    ("jpeg", lambda: encode(halves((400, 300)), "JPEG"), "image/jpeg", (100, 75)),
    ("png", lambda: encode(halves((300, 400)), "PNG"), "image/jpeg", (75, 100)),
    ("png with unused alpha", lambda: encode(halves((200, 200), mode="RGBA"), "PNG"), "image/jpeg", (100, 100)),
    ("png with transparency", lambda: encode(halves((200, 100), (255, 0, 0, 0), (0, 0, 255, 255), "RGBA"), "PNG"),
     "image/png", (100, 50)),
    ("gif", lambda: encode(halves((250, 50)).convert("P"), "GIF"), "image/jpeg", (100, 20)),
    ("webp", lambda: encode(halves((400, 400)), "WEBP"), "image/jpeg", (100, 100)),
    ("webp with transparency", lambda: encode(halves((400, 200), (255, 0, 0, 0), (0, 0, 255, 255), "RGBA"), "WEBP",
                                              lossless=True), "image/png", (100, 50)),
    ("bmp", lambda: encode(halves((120, 60)), "BMP"), "image/jpeg", (100, 50)),
]


@pytest.mark.parametrize(("what", "source", "mime", "dims"), SOURCES, ids=[s[0] for s in SOURCES])
def test_preview_of_each_format(what: str, source: Callable[[], bytes], mime: str, dims: tuple[int, int]) -> None:
    data = source()
    original = Image.open(io.BytesIO(data)).size
    preview = make_preview(data, size=100, max_pixels=BIG)
    assert preview is not None
    assert (preview.mime, (preview.width, preview.height)) == (mime, original)
    image = opened(preview)
    assert image.size == dims
    assert max(image.size) <= 100
    # The left half is red and the right half blue (or transparent) after scaling too.
    left, right = rgba_at(image, (2, dims[1] // 2)), rgba_at(image, (dims[0] - 3, dims[1] // 2))
    assert near(right, (0, 0, 255, 255))
    assert left[3] == 0 if mime == "image/png" else near(left, (255, 0, 0, 255))


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_quarter_turn_exif_swaps_the_original_size(orientation: int) -> None:
    data = encode(halves((400, 200)), "JPEG", exif=with_orientation(orientation))
    preview = make_preview(data, size=100, max_pixels=BIG)
    assert preview is not None
    assert (preview.width, preview.height) == (200, 400)
    assert opened(preview).size == (50, 100)


def test_orientation_turns_the_pixels() -> None:
    # Orientation 6: the stored picture must be turned 90° clockwise, so its left half ends up on top.
    data = encode(halves((400, 200)), "JPEG", exif=with_orientation(6))
    preview = make_preview(data, size=100, max_pixels=BIG)
    assert preview is not None
    image = opened(preview).convert("RGB")
    assert near(image.getpixel((25, 5)), (255, 0, 0))
    assert near(image.getpixel((25, 94)), (0, 0, 255))


def test_half_turn_keeps_the_size_and_png_orientation_counts_too() -> None:
    upside_down = make_preview(encode(halves((400, 200)), "JPEG", exif=with_orientation(3)), size=100,
                               max_pixels=BIG)
    assert upside_down is not None and (upside_down.width, upside_down.height) == (400, 200)
    assert near(opened(upside_down).convert("RGB").getpixel((5, 25)), (0, 0, 255))
    png = make_preview(encode(halves((400, 200)), "PNG", exif=with_orientation(8)), size=100, max_pixels=BIG)
    assert png is not None and (png.width, png.height) == (200, 400)


def test_no_metadata_survives() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "MusterCam"
    exif[ExifTags.Base.Orientation] = 1
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (30.0, 15.0, 7.0)
    data = encode(halves((300, 300)), "JPEG", exif=exif.tobytes(), comment=b"secret comment",
                  icc_profile=b"fake icc profile bytes")
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the source really carries GPS
    preview = make_preview(data, size=100, max_pixels=BIG)
    assert preview is not None
    image = opened(preview)
    assert not image.getexif()
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(image.info)
    for leak in (b"Exif\x00\x00", b"MusterCam", b"secret comment", b"fake icc"):
        assert leak not in preview.data


def test_no_metadata_in_png_previews() -> None:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "duty officer")
    data = encode(halves((200, 200), (255, 0, 0, 0), (0, 0, 255, 255), "RGBA"), "PNG", pnginfo=text,
                  exif=with_orientation(1, Make="MusterCam"))
    preview = make_preview(data, size=100, max_pixels=BIG)
    assert preview is not None and preview.mime == "image/png"
    image = opened(preview)
    assert not image.getexif()
    assert not {"exif", "Author", "icc_profile"} & set(image.info)
    assert b"MusterCam" not in preview.data and b"duty officer" not in preview.data


def test_small_picture_is_not_enlarged() -> None:
    preview = make_preview(encode(halves((40, 30)), "PNG"), size=320, max_pixels=BIG)
    assert preview is not None
    assert (preview.width, preview.height) == (40, 30)
    assert opened(preview).size == (40, 30)


def test_animated_pictures_give_their_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), colour) for colour in ("red", "lime", "blue")]
    for fmt in ("GIF", "WEBP", "PNG"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3, fmt
        preview = make_preview(data, size=30, max_pixels=BIG)
        assert preview is not None, fmt
        assert (preview.width, preview.height) == (60, 40)
        image = opened(preview)
        assert image.size == (30, 20)
        assert near(image.convert("RGB").getpixel((15, 10)), (255, 0, 0)), fmt


def sixteen_bit_grey() -> bytes:
    # A quarter and three quarters of the 16-bit range: dark and light grey, not both white.
    image = Image.new("I;16", (64, 64), 16384)
    image.paste(Image.new("I;16", (32, 64), 49152), (32, 0))
    return encode(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG")  # cyan 0, magenta and yellow full: red


def transparent_gif() -> bytes:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (32, 0, 64, 64))
    return encode(image, "GIF", transparency=0)


# (what, source, preview mime, colour at the left, colour at the right; None: transparent)
MODES: list[tuple[str, Callable[[], bytes], str, tuple[int, ...] | None, tuple[int, ...] | None]] = [
    ("palette", lambda: encode(halves((64, 64)).convert("P"), "PNG"), "image/jpeg", (255, 0, 0), (0, 0, 255)),
    ("palette with transparency", transparent_gif, "image/png", None, (0, 0, 255)),
    ("grey with alpha", lambda: encode(halves((64, 64), (255, 0), (128, 255), "LA"), "PNG"), "image/png", None,
     (128, 128, 128)),
    ("grey", lambda: encode(halves((64, 64), 0, 255, "L"), "PNG"), "image/jpeg", (0, 0, 0), (255, 255, 255)),
    ("bilevel", lambda: encode(halves((64, 64), 0, 1, "1"), "PNG"), "image/jpeg", (0, 0, 0), (255, 255, 255)),
    ("16-bit grey", sixteen_bit_grey, "image/jpeg", (64, 64, 64), (192, 192, 192)),
    ("cmyk jpeg", cmyk_jpeg, "image/jpeg", (255, 0, 0), (255, 0, 0)),
]


@pytest.mark.parametrize(("what", "source", "mime", "left", "right"), MODES, ids=[m[0] for m in MODES])
def test_modes_are_converted_sensibly(what: str, source: Callable[[], bytes], mime: str,
                                      left: tuple[int, ...] | None, right: tuple[int, ...] | None) -> None:
    preview = make_preview(source(), size=32, max_pixels=BIG)
    assert preview is not None
    assert preview.mime == mime
    image = opened(preview)
    for x, expected in ((4, left), (28, right)):
        pixel = rgba_at(image, (x, 16))
        if expected is None:
            assert pixel[3] == 0, (what, x, pixel)
        else:
            assert near(pixel, (*expected, 255)), (what, x, pixel)


def test_huge_declared_size_is_refused_before_decoding(decodes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = png_claiming(100_000, 100_000)
    limit = Image.MAX_IMAGE_PIXELS
    assert make_preview(bomb, size=100, max_pixels=50_000_000) is None
    # Even with Pillow's own global limit switched off, the caller's limit holds and nothing is decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert make_preview(bomb, size=100, max_pixels=50_000_000) is None
    assert decodes == []
    monkeypatch.undo()
    assert Image.MAX_IMAGE_PIXELS == limit


def test_pixel_limit_is_the_callers(decodes: list[str]) -> None:
    data = encode(halves((300, 200)), "PNG")
    assert make_preview(data, size=100, max_pixels=300 * 200 - 1) is None
    assert decodes == []
    assert make_preview(data, size=100, max_pixels=300 * 200) is not None
    assert decodes and set(decodes) == {"PNG"}  # the spy does see decoding when it happens


def truncated(fmt: str) -> bytes:
    data = encode(Image.effect_noise((200, 200), 64).convert("RGB"), fmt)
    return data[: len(data) // 2]


JUNK: list[tuple[str, Callable[[], bytes]]] = [
    ("empty", lambda: b""),
    ("text", lambda: b"not a picture at all"),
    ("html", lambda: b"<html><body><img src=x onerror=alert(1)></body></html>"),
    ("truncated jpeg", lambda: truncated("JPEG")),
    ("truncated png", lambda: truncated("PNG")),
    ("png header only", lambda: encode(halves((50, 50)), "PNG")[:40]),
    ("corrupt png data", lambda: png_claiming(50, 50)),
    ("jpeg magic then junk", lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4),
    ("zero-size png", lambda: png_claiming(0, 10)),
    ("tiff is not previewed", lambda: encode(halves((50, 50)), "TIFF")),
    ("eps is never handed to ghostscript", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
]


@pytest.mark.parametrize(("what", "source"), JUNK, ids=[j[0] for j in JUNK])
def test_not_a_readable_picture_gives_none(what: str, source: Callable[[], bytes]) -> None:
    assert make_preview(source(), size=100, max_pixels=BIG) is None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make_preview(encode(halves((10, 10)), "PNG"), size=0, max_pixels=BIG)
