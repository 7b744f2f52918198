"""Post-processing of raw YOLO outputs: decode, class filter, per-class NMS, undo the letterbox.

Everything is vectorised numpy; the only Python loop is greedy NMS, one pass per kept box.
Shapes: N anchors, C classes, K candidate boxes.
"""

from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# NMS is quadratic in the worst case; a very low per-request confidence must not make it unbounded.
PRE_NMS_LIMIT = 3000


@dataclass(frozen=True)
class Candidates:
    boxes: FloatArray  # (K, 4) x1, y1, x2, y2
    scores: FloatArray  # (K,)
    class_ids: IndexArray  # (K,)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: IndexArray | BoolArray) -> Self:
        return replace(
            self, boxes=self.boxes[index], scores=self.scores[index], class_ids=self.class_ids[index]
        )


def cxcywh_to_xyxy(boxes: FloatArray) -> FloatArray:
    """(K, 4) centre x, centre y, width, height -> (K, 4) x1, y1, x2, y2."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1).astype(np.float32)


def _best_class(class_scores: FloatArray, boxes: FloatArray, conf_threshold: float) -> Candidates:
    """(N, C) scores + (N, 4) xyxy boxes -> the anchors whose best class scores above the threshold."""
    class_ids = class_scores.argmax(axis=1)  # (N,)
    scores = np.take_along_axis(class_scores, class_ids[:, np.newaxis], axis=1)[:, 0]  # (N,)
    keep = scores > conf_threshold
    return Candidates(boxes[keep], scores[keep].astype(np.float32), class_ids[keep].astype(np.intp))


def decode_yolov8(output: FloatArray, conf_threshold: float) -> Candidates:
    """(1, 4 + C, N) -> candidates in letterbox pixels. Rows: cx, cy, w, h, then C sigmoid class scores."""
    preds = output[0].T  # (N, 4 + C)
    keep = preds[:, 4:].max(axis=1) > conf_threshold  # cheap pre-filter: most anchors are background
    preds = preds[keep]
    return _best_class(preds[:, 4:], cxcywh_to_xyxy(preds[:, :4]), conf_threshold)


def yolox_grid(size: int, strides: tuple[int, ...] = (8, 16, 32)) -> tuple[FloatArray, FloatArray]:
    """Anchor cell origins (N, 2) as (x, y) and strides (N, 1), in YOLOX's output order."""
    grids, steps = [], []
    for stride in strides:
        cells = size // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")  # (cells, cells) each
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))  # row-major: x varies fastest
        steps.append(np.full((cells * cells, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode_yolox(
    output: FloatArray, conf_threshold: float, grid: FloatArray, strides: FloatArray
) -> Candidates:
    """(1, N, 5 + C) -> candidates in letterbox pixels. Rows: dx, dy, log w, log h, obj, C class scores."""
    preds = output[0]  # (N, 5 + C)
    if preds.shape[0] != grid.shape[0]:
        raise ValueError(f"YOLOX output has {preds.shape[0]} anchors; the grid has {grid.shape[0]}")
    class_scores = preds[:, 4:5] * preds[:, 5:]  # (N, C): objectness x class probability
    keep = class_scores.max(axis=1) > conf_threshold
    preds, class_scores, grid, strides = preds[keep], class_scores[keep], grid[keep], strides[keep]
    centres = (preds[:, 0:2] + grid) * strides  # (K, 2)
    sizes = np.exp(preds[:, 2:4]) * strides  # (K, 2)
    return _best_class(class_scores, cxcywh_to_xyxy(np.concatenate([centres, sizes], axis=1)), conf_threshold)


def box_iou(a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """(N, 4) x (M, 4) xyxy -> (N, M) intersection over union; 0 where both boxes are empty."""
    a64, b64 = a.astype(np.float64)[:, np.newaxis], b.astype(np.float64)[np.newaxis]  # (N,1,4), (1,M,4)
    wh = np.clip(np.minimum(a64[..., 2:], b64[..., 2:]) - np.maximum(a64[..., :2], b64[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    area_a = np.prod(np.clip(a64[..., 2:] - a64[..., :2], 0, None), axis=-1)  # (N, 1)
    area_b = np.prod(np.clip(b64[..., 2:] - b64[..., :2], 0, None), axis=-1)  # (1, M)
    union = area_a + area_b - inter
    iou: npt.NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def nms(boxes: FloatArray, scores: FloatArray, class_ids: IndexArray, iou_threshold: float) -> IndexArray:
    """Per-class greedy NMS; returns kept indices, most confident first.

    A box is suppressed when its IoU with a more confident box of the same class exceeds the threshold.
    Classes are kept apart by shifting each class's boxes into its own disjoint coordinate range,
    so one pass handles every class at once.
    """
    if len(scores) == 0:
        return np.zeros(0, dtype=np.intp)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes.astype(np.float64) + (class_ids.astype(np.float64) * span)[:, np.newaxis]  # (K, 4)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, order = int(order[0]), order[1:]
        keep.append(best)
        order = order[box_iou(shifted[best : best + 1], shifted[order])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def undo_letterbox(
    boxes: FloatArray, ratio: float, pad: tuple[int, int], width: int, height: int
) -> FloatArray:
    """(K, 4) letterbox pixels -> (K, 4) source-image pixels, clipped to the image."""
    padx, pady = pad
    offset = np.array([padx, pady, padx, pady], dtype=np.float32)
    limits = np.array([width, height, width, height], dtype=np.float32)
    unboxed: FloatArray = np.clip((boxes - offset) / np.float32(ratio), 0, limits).astype(np.float32)
    return unboxed


def drop_empty(candidates: Candidates) -> Candidates:
    """Removes boxes with no area (e.g. predicted wholly inside the padding, then clipped flat)."""
    boxes = candidates.boxes
    return candidates.take((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))


def postprocess(
    candidates: Candidates,
    *,
    iou_threshold: float,
    max_detections: int,
    ratio: float,
    pad: tuple[int, int],
    image_size: tuple[int, int],
    allowed: BoolArray | None = None,
) -> Candidates:
    """Letterbox candidates -> at most max_detections boxes in (width, height) image pixels, best first.

    ``allowed`` is a (C,) class mask. It applies before the cut, so unwanted classes never take a
    wanted box's place.
    """
    if allowed is not None:
        candidates = candidates.take(allowed[candidates.class_ids])
    if len(candidates) > PRE_NMS_LIMIT:
        candidates = candidates.take(np.argsort(-candidates.scores, kind="stable")[:PRE_NMS_LIMIT])
    candidates = candidates.take(
        nms(candidates.boxes, candidates.scores, candidates.class_ids, iou_threshold)
    )
    width, height = image_size
    candidates = drop_empty(
        replace(candidates, boxes=undo_letterbox(candidates.boxes, ratio, pad, width, height))
    )
    return candidates.take(np.arange(min(len(candidates), max_detections)))
