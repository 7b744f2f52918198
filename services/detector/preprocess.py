"""Letterbox pre-processing: the image is scaled so its long side is ``size``, centred on a
canvas (the model input, ``size`` square or a smaller rectangle that still holds it), padded grey.

Boxes predicted in letterbox space map back with ``(box - [padx, pady, padx, pady]) / ratio``
(see :func:`services.detector.postprocess.undo_letterbox`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

PAD_VALUE = 114  # the grey YOLO models were trained with, so padding looks like "nothing here"


Shape = tuple[int, int]  # (H, W) of a model input


@dataclass(frozen=True)
class Letterboxed:
    tensor: npt.NDArray[np.float32]  # (1, 3, H, W), NCHW
    ratio: float  # letterbox pixels per source pixel
    pad: tuple[int, int]  # (padx, pady): offset of the resized image inside the canvas


def letterbox_geometry(
    height: int, width: int, size: int, canvas: Shape | None = None
) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """(ratio, (new_w, new_h), (padx, pady)) for fitting a height x width image into size x size,
    centred on ``canvas`` (default: the size x size square)."""
    ratio = min(size / height, size / width)
    new_w = min(size, max(1, round(width * ratio)))
    new_h = min(size, max(1, round(height * ratio)))
    canvas_h, canvas_w = canvas or (size, size)
    # Integer offsets: the resized image lands on whole pixels, and the inverse map is exact.
    return ratio, (new_w, new_h), ((canvas_w - new_w) // 2, (canvas_h - new_h) // 2)


def choose_input(height: int, width: int, canvases: Mapping[int, Sequence[Shape]]) -> tuple[int, Shape]:
    """(size, canvas) for a height x width image. ``canvases`` maps each size (the long side an
    image is scaled to) to its input shapes. The size is the smallest one at least the image's
    long side (the largest size for bigger images); the canvas is that size's smallest input
    that holds the scaled image."""
    sizes = sorted(canvases)
    size = next((s for s in sizes if s >= max(height, width)), sizes[-1])
    _, (new_w, new_h), _ = letterbox_geometry(height, width, size)
    fitting = [(h, w) for h, w in canvases[size] if h >= new_h and w >= new_w]
    if not fitting:
        raise ValueError(f"no input of size {size} holds a {new_h}x{new_w} image: {canvases[size]}")
    return size, min(fitting, key=lambda shape: shape[0] * shape[1])


def letterbox(
    pixels: npt.NDArray[np.uint8],
    size: int,
    *,
    canvas: Shape | None = None,
    bgr: bool = False,
    scale: float = 1.0 / 255.0,
) -> Letterboxed:
    """(H, W, 3) RGB uint8 -> (1, 3, canvas H, canvas W) float32 = pixel * scale, RGB or BGR."""
    height, width = pixels.shape[:2]
    canvas_h, canvas_w = canvas or (size, size)
    ratio, (new_w, new_h), (padx, pady) = letterbox_geometry(height, width, size, (canvas_h, canvas_w))
    if padx < 0 or pady < 0:
        raise ValueError(
            f"a {height}x{width} image at size {size} does not fit a {canvas_h}x{canvas_w} canvas"
        )
    if (new_w, new_h) != (width, height):
        resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.uint8)  # (new_h, new_w, 3)
    canvas_pixels = np.full((canvas_h, canvas_w, 3), PAD_VALUE, dtype=np.uint8)  # (H, W, 3)
    canvas_pixels[pady : pady + new_h, padx : padx + new_w] = pixels
    if bgr:
        canvas_pixels = canvas_pixels[:, :, ::-1]
    chw = canvas_pixels.transpose(2, 0, 1)  # (3, H, W)
    tensor = np.ascontiguousarray(chw[np.newaxis], dtype=np.float32)  # (1, 3, H, W)
    if scale != 1.0:
        tensor *= np.float32(scale)
    return Letterboxed(tensor, ratio, (padx, pady))
