"""Classification-style pre-processing: resize the shorter side, centre-crop, normalise, NCHW.

All functions are pure. PIL is used for the bilinear resize only; the rest is vectorised numpy.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

RGB = npt.NDArray[np.uint8]  # (H, W, 3)
Tensor = npt.NDArray[np.float32]  # (N, 3, crop, crop)


@dataclass(frozen=True)
class PreprocessSpec:
    resize_shorter: int
    crop: int
    mean: tuple[float, float, float]  # in the model's channel order, 0..255 pixel units
    std: tuple[float, float, float]
    bgr: bool = False

    def __post_init__(self) -> None:
        if self.crop < 1 or self.resize_shorter < self.crop:
            raise ValueError(f"need resize_shorter ({self.resize_shorter}) >= crop ({self.crop}) >= 1")


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(new_h, new_w) with the shorter side == ``shorter``; the longer side truncates like torchvision."""
    if height <= width:
        return shorter, max(shorter, int(shorter * width / height))
    return max(shorter, int(shorter * height / width)), shorter


def centre_offset(size: int, crop: int) -> int:
    """Top/left offset of a centred crop (rounded like torchvision's CenterCrop)."""
    return round((size - crop) / 2.0)


def resize_shorter(pixels: RGB, shorter: int) -> RGB:
    """(H, W, 3) -> (new_h, new_w, 3), bilinear. Materialises the whole image: see resize_and_crop."""
    new_h, new_w = resized_size(pixels.shape[0], pixels.shape[1], shorter)
    resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def centre_crop(pixels: RGB, crop: int) -> RGB:
    """(H, W, 3) with H, W >= crop -> (crop, crop, 3) view."""
    top = centre_offset(pixels.shape[0], crop)
    left = centre_offset(pixels.shape[1], crop)
    return pixels[top : top + crop, left : left + crop]


def resize_and_crop(pixels: RGB, shorter: int, crop: int) -> RGB:
    """resize_shorter then centre_crop, in one resample of only the source region the crop covers.

    Same sample positions and filter scale as the two-step version, but a 3x900 crop never becomes
    a 256x76800 intermediate: cost and memory stay O(crop^2) whatever the aspect ratio.
    """
    height, width = pixels.shape[:2]
    new_h, new_w = resized_size(height, width, shorter)
    scale_y, scale_x = height / new_h, width / new_w  # source pixels per resized pixel
    top, left = centre_offset(new_h, crop), centre_offset(new_w, crop)
    box = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
    out = Image.fromarray(pixels).resize((crop, crop), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)  # (crop, crop, 3)


def normalise(crops: npt.NDArray[np.uint8], spec: PreprocessSpec) -> Tensor:
    """(N, crop, crop, 3) RGB uint8 -> (N, 3, crop, crop) float32 (x - mean) / std in model order."""
    if spec.bgr:
        crops = crops[..., ::-1]
    # One strided uint8 -> float32 pass into NCHW order, then two in-place passes: 3x less
    # memory traffic than subtract, divide and transpose as separate temporaries.
    tensor = crops.transpose(0, 3, 1, 2).astype(np.float32, order="C")  # (N, 3, crop, crop)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)  # broadcasts per channel
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    tensor -= mean
    tensor /= std
    return tensor


def build_batch(images: Sequence[RGB], spec: PreprocessSpec) -> Tensor:
    """N images of any sizes, (H, W, 3) uint8 -> (N, 3, crop, crop) float32 model input."""
    if not images:
        return np.empty((0, 3, spec.crop, spec.crop), dtype=np.float32)
    crops = np.stack([resize_and_crop(img, spec.resize_shorter, spec.crop) for img in images])
    return normalise(crops, spec)  # crops: (N, crop, crop, 3)
