"""Safe image decoding at the edge, and the raw-RGB wire format used between services.

Every image that enters the stack passes :func:`decode_image` exactly once: size and pixel caps
against decompression bombs, truncation detection, EXIF orientation, and one colour model
(8-bit RGB, alpha flattened on white) whatever the file format.
"""

import io
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.errors import InvalidInput, TooLarge
from services.common.gen.visualsearch.v1 import image_pb2

RGB = npt.NDArray[np.uint8]  # (H, W, 3)

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"})
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees


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


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Decodes an encoded image file into oriented 8-bit RGB. Raises ImageError/TooLarge."""
    if not data:
        raise ImageError("empty", "the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(
                "not_image", "the file is not a recognised image (JPEG, PNG, GIF, WebP...)"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(f"the image has too many pixels; the limit is {limits.max_pixels}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise _read_failure(exc) from exc
        return _decode_opened(img, limits)


def _decode_opened(img: Image.Image, limits: ImageLimits) -> DecodedImage:
    if img.format not in ACCEPTED_FORMATS:
        raise UnsupportedImage(
            "unsupported_format",
            f"{img.format} images are not supported; use one of {', '.join(sorted(ACCEPTED_FORMATS))}",
        )
    width, height = img.size
    if width * height > limits.max_pixels:
        raise TooLarge(f"the image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    if min(width, height) < limits.min_side:
        raise ImageError(
            "too_small", f"the image is {width}x{height}; each side must be at least {limits.min_side} px"
        )
    if img.getexif().get(0x0112) in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    if limits.max_side and img.format == "JPEG":
        # Lets libjpeg decode at 1/2, 1/4 or 1/8 scale: big photos decode several times faster.
        img.draft("RGB", (limits.max_side, limits.max_side))
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise _read_failure(exc) from exc
    if limits.max_side and max(rgb.size) > limits.max_side:
        rgb.thumbnail((limits.max_side, limits.max_side), Image.Resampling.BILINEAR)
    return DecodedImage(np.asarray(rgb, dtype=np.uint8), width, height)


def _read_failure(exc: Exception) -> ImageError:
    """Pillow reports a cut-off file in several wordings; all of them mean "truncated"."""
    reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
    return ImageError(reason, f"the image data is {reason}: {exc}")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is flattened on white, the usual catalog background."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


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
