from collections.abc import Sequence

import numpy as np
import pytest

from services.detector.postprocess import (
    PRE_NMS_LIMIT,
    Candidates,
    box_iou,
    decode_yolov8,
    decode_yolox,
    nms,
    postprocess,
    undo_letterbox,
    yolox_grid,
)


def boxes(*rows: Sequence[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def candidates(rows: Sequence[Sequence[float]], scores: list[float], class_ids: list[int]) -> Candidates:
    return Candidates(boxes(*rows), np.array(scores, dtype=np.float32), np.array(class_ids, dtype=np.intp))


def test_box_iou_cases() -> None:
    a = boxes([0, 0, 10, 10])
    b = boxes([0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [20, 20, 30, 30], [2, 2, 4, 4], [3, 3, 3, 3])
    # identical, half overlap (50 / 150), touching edge, disjoint, contained (4 / 100), zero-area box
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0, 0.04, 0.0])
    assert box_iou(boxes([1, 1, 1, 1]), boxes([1, 1, 1, 1]))[0, 0] == 0.0  # 0 / 0 is no overlap


def test_nms_suppresses_overlaps_within_a_class_only() -> None:
    rows = [[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]]
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    class_ids = np.array([0, 0, 1, 0], dtype=np.intp)
    keep = nms(boxes(*rows), scores, class_ids, 0.45)
    # box 0 loses to the more confident box 1; box 2 is another class; box 3 overlaps nothing.
    assert keep.tolist() == [1, 2, 3]


@pytest.mark.parametrize(("threshold", "kept"), [(0.5, [0, 1]), (0.49, [0])])
def test_nms_suppresses_only_above_the_threshold(threshold: float, kept: list[int]) -> None:
    pair = boxes([0, 0, 10, 10], [0, 0, 10, 5])  # IoU exactly 0.5
    keep = nms(pair, np.array([0.9, 0.8], dtype=np.float32), np.zeros(2, dtype=np.intp), threshold)
    assert keep.tolist() == kept


def test_nms_is_greedy() -> None:
    """A suppresses B; C overlaps only B, so it survives."""
    chain = boxes([0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10])
    keep = nms(chain, np.array([0.9, 0.8, 0.7], dtype=np.float32), np.zeros(3, dtype=np.intp), 0.3)
    assert keep.tolist() == [0, 2]


def test_nms_empty() -> None:
    keep = nms(boxes(), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.intp), 0.45)
    assert keep.shape == (0,)
    assert keep.dtype == np.intp


def test_decode_yolov8_threshold_and_box_format() -> None:
    output = np.zeros((1, 84, 3), dtype=np.float32)  # (1, 4 + C, N)
    output[0, :4, 0] = [100, 50, 20, 10]  # cx, cy, w, h
    output[0, 4 + 5, 0] = 0.9  # bus
    output[0, 4 + 2, 0] = 0.3  # a weaker second class on the same anchor
    output[0, 4 + 0, 1] = 0.25  # exactly the threshold: dropped (the rule is score > conf)
    output[0, :4, 2] = [10, 10, 4, 4]
    output[0, 4 + 0, 2] = 0.26
    got = decode_yolov8(output, 0.25)
    assert got.boxes.tolist() == [[90, 45, 110, 55], [8, 8, 12, 12]]
    assert got.class_ids.tolist() == [5, 0]
    assert got.scores.tolist() == pytest.approx([0.9, 0.26])


def test_yolox_grid_order() -> None:
    grid, strides = yolox_grid(64)
    assert grid.shape == (8 * 8 + 4 * 4 + 2 * 2, 2)
    assert grid[:3].tolist() == [[0, 0], [1, 0], [2, 0]]  # x varies fastest
    assert grid[8].tolist() == [0, 1]
    assert strides[[0, 64, 80], 0].tolist() == [8, 16, 32]


def test_decode_yolox_grid_strides_and_objectness() -> None:
    grid, strides = yolox_grid(64)
    output = np.zeros((1, len(grid), 85), dtype=np.float32)  # (1, N, 5 + C)
    anchor = 64 + 2 * 4 + 1  # stride-16 level, cell x=1, y=2
    output[0, anchor, :5] = [0.5, 0.5, np.log(2.0), np.log(2.0), 0.9]
    output[0, anchor, 5 + 3] = 0.8  # score = 0.9 * 0.8
    output[0, 0, 4:6] = [0.5, 0.4]  # 0.2 after objectness: below the threshold
    got = decode_yolox(output, 0.25, grid, strides)
    assert got.class_ids.tolist() == [3]
    assert got.scores.tolist() == pytest.approx([0.72])
    assert got.boxes[0].tolist() == pytest.approx([8, 24, 40, 56])  # centre (24, 40), side 32


def test_undo_letterbox_and_clip() -> None:
    letterboxed = boxes([80, 10, 280, 110], [70, -20, 700, 650])
    got = undo_letterbox(letterboxed, ratio=2.0, pad=(80, 0), width=240, height=320)
    assert got.tolist() == [[0, 5, 100, 55], [0, 0, 240, 320]]


def test_postprocess_applies_the_allow_list_before_the_cut() -> None:
    found = candidates(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]],
        [0.9, 0.8, 0.7, 0.3],
        [0, 0, 0, 26],
    )
    allowed = np.zeros(80, dtype=np.bool_)
    allowed[26] = True  # handbag only

    def run(max_detections: int, allowed: np.ndarray | None) -> Candidates:
        return postprocess(
            found,
            iou_threshold=0.45,
            max_detections=max_detections,
            ratio=1.0,
            pad=(0, 0),
            image_size=(100, 100),
            allowed=allowed,
        )

    assert run(1, allowed).class_ids.tolist() == [26]
    assert run(2, None).scores.tolist() == pytest.approx([0.9, 0.8])


def test_postprocess_drops_boxes_in_the_padding_before_the_cut() -> None:
    found = candidates([[0, 0, 10, 5], [10, 20, 30, 40]], [0.9, 0.5], [0, 0])  # first lies in the pad
    got = postprocess(
        found, iou_threshold=0.45, max_detections=1, ratio=1.0, pad=(0, 10), image_size=(50, 30)
    )
    assert got.boxes.tolist() == [[10, 10, 30, 30]]


def test_postprocess_bounds_candidates_before_nms() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, size=(PRE_NMS_LIMIT * 2, 2)).astype(np.float32)
    many = Candidates(
        np.concatenate([xy, xy + 5], axis=1),
        rng.uniform(0.3, 1.0, size=PRE_NMS_LIMIT * 2).astype(np.float32),
        np.zeros(PRE_NMS_LIMIT * 2, dtype=np.intp),
    )
    got = postprocess(
        many, iou_threshold=0.45, max_detections=5, ratio=1.0, pad=(0, 0), image_size=(640, 640)
    )
    assert got.scores.tolist() == sorted(many.scores.tolist(), reverse=True)[:5]
