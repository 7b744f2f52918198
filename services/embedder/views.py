"""Multi-crop descriptors: one vector per image from the whole image and zoomed crops of it.

A shop photo shows the product larger or smaller, more or less centred, than the studio catalog
shot of the same product. Embedding the whole image together with overlapping crops (centre and
four corners, each ``fraction`` of the sides) and summing their unit vectors gives a descriptor
that is less sensitive to that framing; measured in ``docs/quality.md`` (grocery R@1 +7.6 points
over one centre crop). The same views are taken of catalog and query images, so it stays a
plain cosine space and an index holds one vector per image, as before.

All functions are pure (numpy, and PIL for the resize).
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.embedder.preprocess import RGB, PreprocessSpec, Tensor, build_batch

ViewMode = Literal["whole", "multi-crop"]
Rows = npt.NDArray[np.float32]  # (n, dim)

# Crop anchors as (y, x) fractions of the free margin: centre, then the four corners.
_ANCHORS = ((0.5, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))


def view_count(mode: ViewMode) -> int:
    return 1 if mode == "whole" else 1 + len(_ANCHORS)


def view_boxes(height: int, width: int, fraction: float) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of the whole image, then of the five crops; never empty boxes."""
    crop_h = max(1, round(height * fraction))
    crop_w = max(1, round(width * fraction))
    boxes = [(0, 0, height, width)]
    for fy, fx in _ANCHORS:
        top = round((height - crop_h) * fy)
        left = round((width - crop_w) * fx)
        boxes.append((top, left, top + crop_h, left + crop_w))
    return boxes


def expand_views(images: Sequence[RGB], mode: ViewMode, fraction: float) -> list[RGB]:
    """N images (H, W, 3) -> N * view_count(mode) views, image by image (views of one image adjacent)."""
    if mode == "whole":
        return list(images)
    return [
        image[top:bottom, left:right]  # (bottom-top, right-left, 3) view, no copy
        for image in images
        for top, left, bottom, right in view_boxes(image.shape[0], image.shape[1], fraction)
    ]


def view_batch(images: Sequence[RGB], mode: ViewMode, fraction: float, spec: PreprocessSpec) -> Tensor:
    """N images (H, W, 3) -> (N * view_count(mode), 3, crop, crop) model input, views of one image adjacent."""
    return build_batch(expand_views(images, mode, fraction), spec)


def combine_views(rows: Rows, views: int) -> Rows:
    """(N * views, dim) unit rows -> (N, dim): the normalised sum of each image's view vectors."""
    if views == 1:
        return rows
    summed: Rows = rows.reshape(-1, views, rows.shape[1]).sum(axis=1)  # (N, dim)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)  # (N, 1)
    return np.asarray(summed / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def views_model_id(model_id: str, mode: ViewMode, fraction: float) -> str:
    """The id served with the vectors: multi-crop vectors must never share an index with single-view ones."""
    return model_id if mode == "whole" else f"{model_id}+mc{round(fraction * 100)}"
