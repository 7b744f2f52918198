"""Safe image decoding at the edge, and the raw-RGB wire format used between services.

Every image that enters the stack passes :func:`decode_image` exactly once: size and pixel caps
against decompression bombs, truncation detection, EXIF orientation, and one colour model
(8-bit RGB, alpha flattened on white) whatever the file format. The format is sniffed from the
bytes alone: no file name or Content-Type reaches this module. See docs/inputs.md.
"""

import io
import logging
import struct
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError, features

from services.common.errors import InvalidInput, TooLarge
from services.common.gen.visualsearch.v1 import image_pb2

log = logging.getLogger(__name__)

RGB = npt.NDArray[np.uint8]  # (H, W, 3)

# Pillow's format names. HEIF (iPhone HEIC photos) comes from pillow-heif, AVIF from Pillow itself.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF"})
FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF"
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees
# ISO-BMFF major brands of still images: such a file that no plugin opens is a broken image.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# What Pillow's decoders (and libheif/libavif under them) raise on malformed bytes; anything
# else is a bug of ours and must stay visible as a 500.
_DECODE_FAILURES = (OSError, SyntaxError, ValueError, RuntimeError, EOFError, IndexError, struct.error)
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_plugins_lock = threading.Lock()
_heif_registered: bool | None = None  # None until the first decode tries to register pillow-heif


class ImageError(InvalidInput):
    """An upload that is not a usable image. ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedImage(ImageError):
    """A real file of a kind we do not accept (HTTP 415 at the gateway)."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 16
    # Decoded pixels are downscaled so their longer side is at most this (0 keeps full size).
    max_side: int = 1024


@dataclass(frozen=True)
class DecodedImage:
    pixels: RGB  # (h, w, 3), possibly downscaled from the original
    width: int  # original width after EXIF orientation
    height: int  # original height after EXIF orientation

    @property
    def scale(self) -> float:
        """pixels-space / original-space ratio (<= 1)."""
        return float(self.pixels.shape[1]) / float(self.width)


def heif_supported() -> bool:
    """Registers pillow-heif's HEIF opener with Pillow, once per process, on first use: importing
    it costs tens of milliseconds that processes which never decode an image should not pay."""
    global _heif_registered
    with _plugins_lock:
        if _heif_registered is None:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                log.warning("pillow-heif is not installed: HEIC/HEIF images are refused")
                _heif_registered = False
            else:
                # Embedded thumbnails, depth maps and auxiliary images are never used: skip them.
                register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
                _heif_registered = True
        return _heif_registered


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Decodes an encoded image file into oriented 8-bit RGB. Raises ImageError/TooLarge."""
    if not data:
        raise ImageError("empty", "the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    heif_supported()
    # Pillow warns (rather than fails) between MAX_IMAGE_PIXELS and twice that: refuse those too.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise _unidentified(data) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(f"the image has too many pixels; the limit is {limits.max_pixels}") from None
        except _DECODE_FAILURES as exc:
            raise _read_failure(exc) from exc
        with img:
            return _decode_opened(img, limits)


def _unidentified(data: bytes) -> ImageError:
    """No plugin claimed the bytes. HEIF and AVIF plugins decline broken files instead of failing,
    so their container's brand tells a broken photo from a file that is no image at all."""
    brand = data[8:12] if data[4:8] == b"ftyp" else b""
    if brand in _AVIF_BRANDS and not features.check("avif"):
        return UnsupportedImage("unsupported_format", "AVIF images are not supported by this server")
    if brand in _HEIF_BRANDS and not heif_supported():
        return UnsupportedImage("unsupported_format", "HEIC/HEIF images are not supported by this server")
    if brand in _AVIF_BRANDS | _HEIF_BRANDS:
        kind = "AVIF" if brand in _AVIF_BRANDS else "HEIC/HEIF"
        return ImageError("corrupt", f"the {kind} image data is truncated or corrupt")
    return ImageError("not_image", f"the file is not a recognised image ({FORMAT_NAMES})")


def _decode_opened(img: Image.Image, limits: ImageLimits) -> DecodedImage:
    if img.format not in ACCEPTED_FORMATS:
        raise UnsupportedImage(
            "unsupported_format", f"{img.format} images are not supported; use {FORMAT_NAMES}"
        )
    width, height = img.size
    if width * height > limits.max_pixels:
        raise TooLarge(f"the image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    if min(width, height) < limits.min_side:
        raise ImageError(
            "too_small", f"the image is {width}x{height}; each side must be at least {limits.min_side} px"
        )
    if limits.max_side and img.format in ("JPEG", "MPO"):
        # Lets libjpeg decode at 1/2, 1/4 or 1/8 scale: big photos decode several times faster.
        img.draft("RGB", (limits.max_side, limits.max_side))
    try:
        img.load()  # first: PNG reads its EXIF chunk, which may follow the pixels, only here
        if img.getexif().get(0x0112) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        rgb = _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError:
        raise TooLarge(f"the image has too many pixels; the limit is {limits.max_pixels}") from None
    except _DECODE_FAILURES as exc:
        raise _read_failure(exc) from exc
    if limits.max_side and max(rgb.size) > limits.max_side:
        rgb.thumbnail((limits.max_side, limits.max_side), Image.Resampling.BILINEAR)
    return DecodedImage(np.asarray(rgb, dtype=np.uint8), width, height)


def _read_failure(exc: Exception) -> ImageError | TooLarge:
    """Pillow reports a cut-off file in several wordings; all of them mean "truncated". Metadata
    that inflates past Pillow's caps (PNG text or ICC chunks) is a decompression bomb."""
    said = " ".join(str(exc).split())  # libheif ends its messages with a newline
    text = said.lower()
    if "too large" in text or "too much memory" in text:
        return TooLarge(f"the image holds data that decompresses past the limits: {said}")
    reason = "truncated" if "truncated" in text or "end of file" in text else "corrupt"
    return ImageError(reason, f"the image data is {reason}: {said}")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is flattened on white, the usual catalog background."""
    if img.mode in _HIGH_DEPTH_MODES:
        img = _to_8bit(img)
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer grey spans 0..65535 (what 16-bit PNG and TIFF carry); float grey spans
    0..1 when all of it fits, else 0..255. Pillow's own convert() would clip instead of scale."""
    values = np.asarray(img, dtype=np.float32)
    if img.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.min() >= 0.0 and values.max() <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0
    grey = Image.fromarray(np.rint(values * scale).clip(0, 255).astype(np.uint8))
    key = img.info.get("transparency")  # a PNG tRNS grey value: those pixels are transparent
    if isinstance(key, int) and img.mode != "F":
        alpha = Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8))
        return Image.merge("LA", (grey, alpha))
    return grey


def to_proto(pixels: RGB) -> image_pb2.RgbImage:
    """(H, W, 3) uint8 array -> wire message."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    return image_pb2.RgbImage(width=width, height=height, pixels=np.ascontiguousarray(pixels).tobytes())


def from_proto(message: image_pb2.RgbImage, max_pixels: int = 40_000_000) -> RGB:
    """Wire message -> (H, W, 3) uint8 array (a read-only view, no copy). Raises InvalidInput."""
    width, height = message.width, message.height
    if width == 0 or height == 0:
        raise InvalidInput(f"image has an empty side ({width}x{height})")
    if width * height > max_pixels:
        raise TooLarge(f"image is {width}x{height} pixels; the limit is {max_pixels}")
    expected = width * height * 3
    if len(message.pixels) != expected:
        raise InvalidInput(
            f"image is {width}x{height} but carries {len(message.pixels)} bytes; expected {expected}"
        )
    return np.frombuffer(message.pixels, dtype=np.uint8).reshape(height, width, 3)
