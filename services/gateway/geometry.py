"""Box geometry between the original image and the downscaled working image.

Original coordinates are the user's: pixels of the image after EXIF orientation. Working
coordinates are those of the decoded (possibly downscaled) pixels the detector sees:
``working = original * scale`` with ``scale = DecodedImage.scale`` (<= 1).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import InvalidInput

Box = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Region:
    """An area of the original image to search with."""

    box: Box  # original coordinates, clipped to the image
    label: str
    confidence: float
    padded: bool  # detections get context padding; user-drawn boxes are taken as drawn


def parse_box(text: str) -> Box:
    """ "x1,y1,x2,y2" -> floats with x1 < x2 and y1 < y2. Raises InvalidInput."""
    parts = text.split(",")
    if len(parts) != 4:
        raise InvalidInput(f"box must be 4 comma-separated numbers x1,y1,x2,y2; got {len(parts)} values")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput(f"box must be 4 comma-separated numbers x1,y1,x2,y2; got {text[:100]!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidInput("box coordinates must be finite numbers")
    if x1 >= x2 or y1 >= y2:
        raise InvalidInput(f"box must have x1 < x2 and y1 < y2; got {x1:g},{y1:g},{x2:g},{y2:g}")
    return x1, y1, x2, y2


def clip_box(box: Box, width: float, height: float) -> Box | None:
    """The part of ``box`` inside a width x height image, or None when nothing is left."""
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(float(width), box[2]), min(float(height), box[3])
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    return x1, y1, x2, y2


def scale_box(box: Box, factor: float) -> Box:
    return box[0] * factor, box[1] * factor, box[2] * factor, box[3] * factor


def pad_box(box: Box, padding: float, width: float, height: float) -> Box:
    """Grows the box by ``padding`` x its own width/height on each side, clipped to the image.
    A little context around a tight detection box helps the embedder recognise the product."""
    dx, dy = (box[2] - box[0]) * padding, (box[3] - box[1]) * padding
    grown = (box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy)
    return clip_box(grown, width, height) or box


def crop_slice(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds (x1, y1, x2, y2) covering the box, inside the image, at least 1 px."""
    x1 = min(max(0, math.floor(box[0])), width - 1)
    y1 = min(max(0, math.floor(box[1])), height - 1)
    x2 = max(x1 + 1, min(width, math.ceil(box[2])))
    y2 = max(y1 + 1, min(height, math.ceil(box[3])))
    return x1, y1, x2, y2


def prominence(region: Region, width: float, height: float) -> float:
    """confidence x share of the image area: big, sure detections come first."""
    x1, y1, x2, y2 = region.box
    return region.confidence * (x2 - x1) * (y2 - y1) / (float(width) * float(height))


def most_prominent(regions: Sequence[Region], width: float, height: float, limit: int) -> list[Region]:
    """At most ``limit`` regions, most prominent first (ties keep detector order)."""
    ranked = sorted(regions, key=lambda r: prominence(r, width, height), reverse=True)
    return ranked[:limit]


def whole_image(width: float, height: float) -> Region:
    return Region((0.0, 0.0, float(width), float(height)), "image", 1.0, padded=False)


# A detection covering this share of the image is the whole image again, as an object.
WHOLE_IMAGE_SHARE = 0.9


def objects_to_search(
    detections: Sequence[Region], width: float, height: float, limit: int, whole_first: bool
) -> list[Region]:
    """The regions a photo is searched with, in answer order.

    ``whole_first`` lists the whole image before the detections: most photos show one product,
    framed by the shopper, and the whole image finds it more often than any detector crop does
    (docs/quality.md); the detected objects follow, each with its own matches, for photos of
    several products. Without it, the detections alone (the whole image when there are none).
    """
    whole = whole_image(width, height)
    if not whole_first:
        return most_prominent(detections, width, height, limit) or [whole]
    area = float(width) * float(height)
    distinct = [r for r in detections if _area(r.box) < WHOLE_IMAGE_SHARE * area]
    return [whole, *most_prominent(distinct, width, height, limit - 1)]


def _area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])
