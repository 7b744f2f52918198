"""Safe decoding at the edge: every odd or hostile file becomes RGB or a precise error."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from services.common.errors import InvalidInput, TooLarge
from services.common.images import (
    ImageError,
    ImageLimits,
    UnsupportedImage,
    decode_image,
    from_proto,
    to_proto,
)


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    return Image.fromarray(np.stack([x, x[::-1, ::-1], np.full_like(x, 90)], axis=2), "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size without carrying the pixels (decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, not an image" * 10, "not_image"),
        (encode(gradient(), "JPEG")[:200], "truncated"),
        (encode(Image.new("RGB", (1, 1)), "PNG"), "too_small"),
    ],
)
def test_unusable_files_get_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as exc:
        decode_image(data)
    assert exc.value.reason == reason
    assert exc.value.message


def test_size_and_pixel_caps() -> None:
    with pytest.raises(TooLarge, match="limit is 100 bytes"):
        decode_image(encode(gradient(), "PNG"), ImageLimits(max_bytes=100))
    with pytest.raises(TooLarge, match="pixels"):
        decode_image(png_header_only(100_000, 100_000))


def test_unsupported_format_is_its_own_error() -> None:
    with pytest.raises(UnsupportedImage):
        decode_image(encode(gradient(32, 32), "ICO"))


@pytest.mark.parametrize(
    "image",
    [
        gradient().convert("RGBA"),
        gradient().convert("P", palette=Image.Palette.ADAPTIVE),
        gradient().convert("CMYK"),
        gradient().convert("L"),
        gradient().convert("I;16"),
    ],
    ids=["rgba", "palette", "cmyk", "grey", "16-bit"],
)
def test_every_mode_becomes_rgb(image: Image.Image) -> None:
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.pixels.dtype == np.uint8


def test_transparency_is_flattened_on_white() -> None:
    clear = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert (decode_image(encode(clear, "PNG")).pixels == 255).all()


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    decoded = decode_image(encode(gradient(64, 48), "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (48, 64)
    assert decoded.pixels.shape == (64, 48, 3)


def test_large_images_are_downscaled_but_report_original_size() -> None:
    decoded = decode_image(encode(gradient(3000, 1000), "JPEG"), ImageLimits(max_side=600))
    assert (decoded.width, decoded.height) == (3000, 1000)
    assert max(decoded.pixels.shape[:2]) == 600
    assert decoded.scale == pytest.approx(0.2)


def test_wire_format_round_trip_and_validation() -> None:
    pixels = np.asarray(gradient(), dtype=np.uint8)
    assert (from_proto(to_proto(pixels)) == pixels).all()
    message = to_proto(pixels)
    message.pixels = message.pixels[:-1]
    with pytest.raises(InvalidInput, match="expected"):
        from_proto(message)
    message.width = 0
    with pytest.raises(InvalidInput, match="empty side"):
        from_proto(message)
