"""Letterbox pre-processing: the image is scaled to fit the square model input, centred, padded grey.

Boxes predicted in letterbox space map back with ``(box - [padx, pady, padx, pady]) / ratio``
(see :func:`services.detector.postprocess.undo_letterbox`).
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

PAD_VALUE = 114  # the grey YOLO models were trained with, so padding looks like "nothing here"


@dataclass(frozen=True)
class Letterboxed:
    tensor: npt.NDArray[np.float32]  # (1, 3, size, size), NCHW
    ratio: float  # letterbox pixels per source pixel
    pad: tuple[int, int]  # (padx, pady): offset of the resized image inside the square


def letterbox_geometry(height: int, width: int, size: int) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """(ratio, (new_w, new_h), (padx, pady)) for fitting a height x width image into size x size."""
    ratio = min(size / height, size / width)
    new_w = min(size, max(1, round(width * ratio)))
    new_h = min(size, max(1, round(height * ratio)))
    # Integer offsets: the resized image lands on whole pixels, and the inverse map is exact.
    return ratio, (new_w, new_h), ((size - new_w) // 2, (size - new_h) // 2)


def letterbox(
    pixels: npt.NDArray[np.uint8], size: int, *, bgr: bool = False, scale: float = 1.0 / 255.0
) -> Letterboxed:
    """(H, W, 3) RGB uint8 -> (1, 3, size, size) float32 = pixel * scale, channels RGB or BGR."""
    height, width = pixels.shape[:2]
    ratio, (new_w, new_h), (padx, pady) = letterbox_geometry(height, width, size)
    if (new_w, new_h) != (width, height):
        resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.uint8)  # (new_h, new_w, 3)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)  # (size, size, 3)
    canvas[pady : pady + new_h, padx : padx + new_w] = pixels
    if bgr:
        canvas = canvas[:, :, ::-1]
    chw = canvas.transpose(2, 0, 1)  # (3, size, size)
    tensor = np.ascontiguousarray(chw[np.newaxis], dtype=np.float32)  # (1, 3, size, size)
    if scale != 1.0:
        tensor *= np.float32(scale)
    return Letterboxed(tensor, ratio, (padx, pady))
