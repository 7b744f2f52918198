"""The detector's input shapes: the model's own square, rectangles for photos that are not square,
and a small square for small photos. Each shape is a session over the same weights.

A 4:3 photo letterboxed into 640x640 is a quarter grey padding, and a 16:9 video frame 44 %: the
model convolves the padding like the rest. Run at 640x480 (or 640x384) instead, the same photo
costs 25 % (40 %) less at the same scale, and gets the same detections. A photo no larger than
``small_size`` (a catalog thumbnail) is scaled to that instead of being blown up to 640 px: on
COCO photos shrunk to 224-400 px, 416 px found as many large objects as 640 px (within a point,
docs/performance.md) at 40 % of the cost.
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx

from services.detector.preprocess import Shape
from services.detector.reshape import UnsupportedGraph, at_shape
from services.detector.sessions import LoadAwareSession, Model

log = logging.getLogger(__name__)

Canvases = dict[int, list[Shape]]  # size (the long side a photo is scaled to) -> its input shapes


def input_canvases(size: int, rect_sides: Sequence[int], small_size: int) -> Canvases:
    """The square ``size`` plus a landscape and a portrait rectangle per short side below it, and
    the ``small_size`` square when it is below ``size`` (0: none)."""
    sides = sorted({side for side in rect_sides if side < size})
    canvases: Canvases = {size: [(size, size), *((s, size) for s in sides), *((size, s) for s in sides)]}
    if 0 < small_size < size:
        canvases[small_size] = [(small_size, small_size)]
    return canvases


def build_sessions(
    base: LoadAwareSession,
    path: Path,
    wanted: Canvases,
    make: Callable[[Model], LoadAwareSession],
) -> tuple[Canvases, dict[Shape, LoadAwareSession]]:
    """(canvases, session per shape). ``base`` runs the model's own input shape; the other shapes
    get a reshaped copy of the model from ``make``. A model this cannot reshape keeps its own shape."""
    dims = base.session.get_inputs()[0].shape[2:]
    if not all(isinstance(d, int) for d in dims):  # a dynamic-size export takes any shape as it is
        return wanted, {shape: base for shapes in wanted.values() for shape in shapes}
    native: Shape = (dims[0], dims[1])
    by_shape = {native: base}
    extra = [shape for shapes in wanted.values() for shape in shapes if shape != native]
    if not extra:
        return wanted, by_shape
    try:
        model = onnx.load(str(path))
        for height, width in extra:
            by_shape[(height, width)] = make(at_shape(model, height, width).SerializeToString())
    except UnsupportedGraph as exc:
        log.warning("%s runs at its own %dx%d input only: %s", path.name, *native, exc)
        return {native[0]: [native]}, {native: base}
    return wanted, by_shape
