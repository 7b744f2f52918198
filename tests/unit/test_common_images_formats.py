"""Every accepted format and pixel mode decodes to the right 8-bit RGB values, and every broken or
inflated file becomes ImageError/TooLarge: never another exception. All files are made here."""

import io
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from services.common.errors import TooLarge
from services.common.images import ImageError, ImageLimits, UnsupportedImage, decode_image, heif_supported

RED, BLUE = (220, 30, 40), (20, 40, 200)


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    heif_supported()  # saving HEIF needs the plugin too
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def solid(color: int | tuple[int, ...], mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new(mode, size, color)


def at(pixels: np.ndarray, y: int, x: int) -> tuple[int, int, int]:
    r, g, b = pixels[y, x]
    return int(r), int(g), int(b)


def pixel(data: bytes) -> tuple[int, int, int]:
    """The decoded colour at the centre of the image."""
    pixels = decode_image(data).pixels
    return at(pixels, pixels.shape[0] // 2, pixels.shape[1] // 2)


def close(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_16bit(samples: np.ndarray, color_type: int) -> bytes:
    """A 16-bit-per-sample PNG (Pillow writes none but grey): color type 2 = RGB, 6 = RGBA."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def with_png_chunk(png: bytes, chunk: bytes) -> bytes:
    return png[:33] + chunk + png[33:]  # right after IHDR


# --- every accepted format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kwargs", "tolerance"),
    [
        ("JPEG", {"quality": 95}, 4),
        ("PNG", {}, 0),
        ("WEBP", {"quality": 95}, 6),
        ("WEBP", {"lossless": True}, 0),
        ("GIF", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("TIFF", {"compression": "tiff_deflate"}, 0),
        ("AVIF", {"quality": 95}, 8),
        ("HEIF", {"quality": 95}, 8),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_format_decodes_to_its_colour(fmt: str, kwargs: dict[str, object], tolerance: int) -> None:
    image = solid(RED, size=(64, 48))
    decoded = decode_image(encode(image, fmt, **kwargs))
    assert decoded.pixels.shape == (48, 64, 3)
    assert (decoded.width, decoded.height) == (64, 48)
    assert close(pixel(encode(image, fmt, **kwargs)), RED, tolerance)


def test_mpo_decodes_its_first_picture() -> None:
    data = encode(solid(RED), "MPO", save_all=True, append_images=[solid(BLUE)])
    assert close(pixel(data), RED, 4)


@pytest.mark.parametrize(
    ("fmt", "tolerance"), [("GIF", 0), ("WEBP", 0), ("PNG", 0)], ids=["gif", "webp", "apng"]
)
def test_animations_give_their_first_frame(fmt: str, tolerance: int) -> None:
    frames = [solid(BLUE), solid(RED), solid((0, 200, 0))]
    extra: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **extra)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert close(pixel(data), BLUE, tolerance)


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_heif_and_avif_orientation_is_applied(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    image = solid(RED, size=(64, 48))
    image.paste(BLUE, (0, 0, 32, 48))  # left half blue: after rotation, the top half
    decoded = decode_image(encode(image, fmt, exif=exif.tobytes(), quality=95))
    assert (decoded.width, decoded.height) == (48, 64)
    assert decoded.pixels.shape == (64, 48, 3)
    assert close(at(decoded.pixels, 8, 24), BLUE, 12)
    assert close(at(decoded.pixels, 56, 24), RED, 12)


def test_format_is_sniffed_from_the_bytes_alone() -> None:
    # decode_image gets no name or media type: a PNG is a PNG whatever the upload called it.
    png = encode(solid(RED), "PNG")
    assert pixel(png) == RED
    with pytest.raises(ImageError) as exc:
        decode_image(b"GIF89a" + png)  # a GIF signature in front of PNG data is a broken GIF
    assert exc.value.reason in ("corrupt", "truncated", "not_image")


def test_heif_opener_is_registered_lazily_and_once() -> None:
    script = (
        "import sys; import services.common.images as m; "
        "assert 'pillow_heif' not in sys.modules, 'imported eagerly'; "
        "from PIL import Image; assert m.heif_supported() and m.heif_supported(); "
        "assert list(Image.ID).count('HEIF') == 1"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


# --- pixel modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # 16-bit grey spans 0..65535: 30000 is 117 in 8 bits, not stretched to white.
        (encode(Image.fromarray(np.full((30, 40), 30000, np.uint16)), "PNG"), (117, 117, 117)),
        (encode(Image.fromarray(np.full((30, 40), 65535, np.uint16)), "PNG"), (255, 255, 255)),
        (encode(Image.fromarray(np.full((30, 40), 30000, np.uint16)), "TIFF"), (117, 117, 117)),
        (encode(Image.fromarray(np.full((30, 40), 30000, ">u2")), "TIFF"), (117, 117, 117)),
        (encode(Image.fromarray(np.full((30, 40), 30000, np.int32)), "TIFF"), (117, 117, 117)),
        # Float grey: 0..1 when it fits there, else 0..255.
        (encode(Image.fromarray(np.full((30, 40), 0.5, np.float32)), "TIFF"), (128, 128, 128)),
        (encode(Image.fromarray(np.full((30, 40), 200.0, np.float32)), "TIFF"), (200, 200, 200)),
        (png_16bit(np.full((30, 40, 3), (65535, 32768, 255), np.uint16), 2), (255, 128, 0)),
        (png_16bit(np.full((30, 40, 4), (65535, 0, 0, 0), np.uint16), 6), (255, 255, 255)),
        (encode(solid((0, 255, 255, 0), "CMYK"), "JPEG", quality=95), (255, 0, 0)),
        (encode(solid((255, 0, 0, 0), "CMYK"), "TIFF"), (0, 255, 255)),
        (encode(solid((0, 0, 0, 128), "CMYK"), "TIFF"), (127, 127, 127)),
        (encode(solid((100, 255), "LA"), "PNG"), (100, 100, 100)),
        (encode(solid((100, 0), "LA"), "PNG"), (255, 255, 255)),
        (encode(solid((0, 128), "LA"), "PNG"), (127, 127, 127)),
        (encode(solid(1, "1"), "PNG"), (255, 255, 255)),
        (encode(solid(1, "1"), "TIFF", compression="group4"), (255, 255, 255)),
        (encode(solid((128, 128, 128), "LAB"), "TIFF"), (119, 119, 119)),  # L*=50 grey in sRGB
        (encode(solid(RED, "RGBA"), "PNG"), RED),
        (encode(solid((*RED, 0), "RGBA"), "WEBP", lossless=True), (255, 255, 255)),
    ],
    ids=[
        "png-16bit-grey",
        "png-16bit-white",
        "tiff-16bit-grey",
        "tiff-16bit-big-endian",
        "tiff-32bit-int",
        "tiff-float-0..1",
        "tiff-float-0..255",
        "png-16bit-rgb",
        "png-16bit-rgba-clear",
        "jpeg-cmyk-red",
        "tiff-cmyk-cyan",
        "tiff-cmyk-half-black",
        "png-la-opaque",
        "png-la-clear",
        "png-la-half",
        "png-bilevel",
        "tiff-bilevel-g4",
        "tiff-lab",
        "png-rgba-opaque",
        "webp-rgba-clear",
    ],
)
def test_every_mode_decodes_to_correct_8bit_rgb(data: bytes, expected: tuple[int, int, int]) -> None:
    assert close(pixel(data), expected, 2), pixel(data)


def palette_image() -> Image.Image:
    """Left half palette index 0 (red), right half index 1 (blue)."""
    image = Image.new("P", (40, 30), 0)
    image.putpalette([*RED, *BLUE])
    image.paste(1, (20, 0, 40, 30))
    return image


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_white(fmt: str) -> None:
    pixels = decode_image(encode(palette_image(), fmt, transparency=1)).pixels
    assert at(pixels, 15, 5) == RED
    assert at(pixels, 15, 35) == (255, 255, 255)


@pytest.mark.parametrize(
    ("image", "key"),
    [
        (solid(RED), RED),
        (solid(90, "L"), 90),
        (Image.fromarray(np.full((30, 40), 30000, np.uint16)), 30000),
    ],
    ids=["rgb", "grey", "16-bit-grey"],
)
def test_png_colour_key_transparency_is_white(image: Image.Image, key: object) -> None:
    assert pixel(encode(image, "PNG", transparency=key)) == (255, 255, 255)
    assert pixel(encode(image, "PNG")) != (255, 255, 255)


def test_heif_alpha_is_flattened_on_white() -> None:
    clear = solid((*RED, 0), "RGBA")
    assert close(pixel(encode(clear, "HEIF", quality=95)), (255, 255, 255), 4)
    assert close(pixel(encode(clear, "AVIF", quality=95)), (255, 255, 255), 4)


# --- broken, inflated and unsupported files ---------------------------------------------------------


def test_pillow_bomb_warning_is_too_large_even_under_a_higher_own_cap() -> None:
    # 100M pixels: past Pillow's warning threshold, below its hard error; our cap allows it here.
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    with pytest.raises(TooLarge, match="too many pixels"):
        decode_image(png, ImageLimits(max_pixels=10**9))


def test_gif_claiming_65535_squared_is_too_large() -> None:
    gif = bytearray(encode(solid(0, "P"), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen size
    with pytest.raises(TooLarge, match="too many pixels"):
        decode_image(bytes(gif))


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP"])
def test_png_metadata_bomb_is_too_large(kind: bytes) -> None:
    bomb = png_chunk(kind, b"k\0\0" + zlib.compress(b"\0" * 64 * 1024 * 1024))  # 64 KB -> 64 MB
    with pytest.raises(TooLarge, match="decompresses past the limits"):
        decode_image(with_png_chunk(encode(solid(RED), "PNG"), bomb))


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_truncated_heif_and_avif_are_named(fmt: str) -> None:
    data = encode(solid(RED, size=(64, 48)), fmt)
    with pytest.raises(ImageError, match="truncated or corrupt") as exc:
        decode_image(data[: len(data) // 2])
    assert exc.value.reason == "corrupt"
    assert not isinstance(exc.value, UnsupportedImage)


def test_a_cut_heic_whose_header_survives_is_truncated() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 96, 3), dtype=np.uint8))
    data = encode(noise, "HEIF")
    with pytest.raises(ImageError, match="Unexpected end of file") as exc:
        decode_image(data[: len(data) * 9 // 10])
    assert exc.value.reason == "truncated"
    assert "\n" not in exc.value.message


def test_avif_without_a_decoder_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(solid(RED, size=(64, 48)), "AVIF")
    monkeypatch.setattr("services.common.images.features.check", lambda feature: False)
    with pytest.raises(UnsupportedImage, match="AVIF images are not supported"):
        decode_image(data[:100])


def test_an_mp4_is_not_an_image() -> None:
    mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2" + bytes(200)
    with pytest.raises(ImageError, match="not a recognised image") as exc:
        decode_image(mp4)
    assert exc.value.reason == "not_image"


def _damaged_copies(data: bytes, rng: random.Random, flips: int) -> list[bytes]:
    cuts = {1, 8, 16, 40, len(data) // 4, len(data) // 2, len(data) * 3 // 4, len(data) - 1}
    copies = [data[:n] for n in sorted(cuts)]
    for _ in range(flips):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        copies.append(bytes(damaged))
    return copies


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken TIFF tags
def test_damaged_files_of_every_format_only_raise_image_errors() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    samples = [encode(noise, fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "AVIF", "HEIF")]
    samples.append(encode(noise, "TIFF", compression="tiff_lzw"))
    samples.append(encode(noise, "PNG", save_all=True, append_images=[noise.rotate(90)]))  # APNG
    samples.append(encode(Image.fromarray(np.full((40, 50), 3000, np.uint16)), "PNG"))
    rng, outcomes = random.Random(0), set()
    for data in samples:
        for damaged in _damaged_copies(data, rng, flips=25):
            try:
                decode_image(damaged)
                outcomes.add("decoded")
            except ImageError as exc:
                outcomes.add(exc.reason)
            except TooLarge:
                outcomes.add("too_large")
    assert {"truncated", "corrupt", "not_image"} <= outcomes
