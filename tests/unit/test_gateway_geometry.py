"""Box parsing, clipping, padding, crop bounds, scaling between original and working images,
and the ordering of detected objects."""

import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.common.gen.visualsearch.v1 import detector_pb2
from services.common.images import DecodedImage, from_proto
from services.gateway.geometry import (
    Region,
    clip_box,
    crop_slice,
    most_prominent,
    pad_box,
    parse_box,
    prominence,
)
from services.gateway.pipeline import crop_pixels, crop_regions, detections_to_regions


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("1,2,3,4", (1.0, 2.0, 3.0, 4.0)),
        (" 10.5, 20 ,30.25,40 ", (10.5, 20.0, 30.25, 40.0)),
        ("-5,-5,1e3,2e3", (-5.0, -5.0, 1000.0, 2000.0)),
    ],
)
def test_parse_box_accepts_four_ordered_numbers(text: str, box: tuple[float, ...]) -> None:
    assert parse_box(text) == box


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3", "got 3 values"),
        ("1,2,3,4,5", "got 5 values"),
        ("a,b,c,d", "numbers"),
        ("", "got 1 values"),
        ("1,2,nan,4", "finite"),
        ("1,2,inf,4", "finite"),
        ("1,2,1e999,4", "finite"),
        ("5,2,5,4", "x1 < x2"),
        ("1,9,3,4", "y1 < y2"),
    ],
)
def test_parse_box_rejects_with_the_rule_broken(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_box(text)


def test_clip_box_keeps_the_inside_part_or_nothing() -> None:
    assert clip_box((-10, -10, 50, 60), 100, 80) == (0.0, 0.0, 50, 60)
    assert clip_box((90, 70, 200, 200), 100, 80) == (90, 70, 100.0, 80.0)
    assert clip_box((100, 0, 150, 50), 100, 80) is None  # touches the right edge only
    assert clip_box((-50, -50, -1, -1), 100, 80) is None


def test_pad_box_grows_by_a_share_of_its_size_and_stays_inside() -> None:
    assert pad_box((10, 20, 110, 70), 0.1, 1000, 1000) == pytest.approx((0, 15, 120, 75))
    assert pad_box((0, 0, 100, 100), 0.5, 120, 120) == (0.0, 0.0, 120.0, 120.0)
    assert pad_box((10, 10, 20, 20), 0.0, 100, 100) == (10, 10, 20, 20)


def test_crop_slice_covers_fractional_boxes_and_is_never_empty() -> None:
    assert crop_slice((10.2, 20.7, 30.1, 40.0), 100, 100) == (10, 20, 31, 40)
    assert crop_slice((99.6, 99.6, 99.9, 99.9), 100, 100) == (99, 99, 100, 100)
    assert crop_slice((-3, -3, 500, 500), 64, 48) == (0, 0, 64, 48)


def test_objects_are_ordered_by_confidence_times_area_share() -> None:
    small_sure = Region((0, 0, 10, 10), "ring", 0.99, padded=True)  # 0.99 * 1%
    big_unsure = Region((0, 0, 50, 50), "coat", 0.4, padded=True)  # 0.4 * 25%
    medium = Region((0, 0, 30, 30), "bag", 0.8, padded=True)  # 0.8 * 9%
    assert prominence(big_unsure, 100, 100) == pytest.approx(0.1)
    ranked = most_prominent([small_sure, big_unsure, medium], 100, 100, limit=2)
    assert [r.label for r in ranked] == ["coat", "bag"]


def _decoded(width: int, height: int, scale: float) -> DecodedImage:
    """A working image of (width*scale, height*scale) with x in the red and y in the green channel."""
    w, h = round(width * scale), round(height * scale)
    pixels = np.zeros((h, w, 3), dtype=np.uint8)  # (h, w, 3)
    pixels[:, :, 0] = (np.arange(w) % 256)[np.newaxis, :]
    pixels[:, :, 1] = (np.arange(h) % 256)[:, np.newaxis]
    return DecodedImage(pixels, width, height)


def detection(
    box: tuple[float, float, float, float], label: str, confidence: float
) -> detector_pb2.Detection:
    x1, y1, x2, y2 = box
    return detector_pb2.Detection(x1=x1, y1=y1, x2=x2, y2=y2, label=label, confidence=confidence)


def test_detections_map_from_working_to_original_coordinates() -> None:
    decoded = _decoded(2000, 1000, 0.25)  # working image 500 x 250
    detections = [
        detection((10, 20, 110, 70), "bag", 0.8),
        detection((450, 200, 600, 300), "shoe", 1.7),  # spills over the edge, confidence out of range
        detection((600, 10, 700, 20), "ghost", 0.9),  # entirely outside
        detection((float("nan"), 0, 1, 1), "broken", 0.9),
    ]
    regions = detections_to_regions(detections, decoded)
    assert [(r.label, r.box, r.confidence) for r in regions] == [
        ("bag", (40.0, 80.0, 440.0, 280.0), pytest.approx(0.8)),
        ("shoe", (1800.0, 800.0, 2000.0, 1000.0), 1.0),
    ]


def test_crops_are_cut_from_the_working_image_at_the_scaled_box() -> None:
    decoded = _decoded(2000, 1000, 0.25)
    tight = Region((400.0, 200.0, 800.0, 600.0), "region", 1.0, padded=False)  # working 100,50-200,150
    padded = Region((400.0, 200.0, 800.0, 600.0), "bag", 0.9, padded=True)
    crop, padded_crop = (from_proto(m) for m in crop_regions(decoded, [tight, padded], padding=0.1))
    assert crop.shape == (100, 100, 3)
    assert (crop[0, 0, 0], crop[0, 0, 1]) == (100, 50)  # its top-left pixel is working (100, 50)
    assert padded_crop.shape == (120, 120, 3)  # 10% of 100 px on each side
    assert (padded_crop[0, 0, 0], padded_crop[0, 0, 1]) == (90, 40)


def test_crop_pixels_are_views_of_the_working_image_like_the_wire_crops() -> None:
    decoded = _decoded(2000, 1000, 0.25)
    regions = [Region((400.0, 200.0, 800.0, 600.0), "bag", 0.9, padded=True)]
    (view,) = crop_pixels(decoded, regions, padding=0.1)
    assert np.shares_memory(view, decoded.pixels)  # no copy until it goes on the wire
    (wire,) = crop_regions(decoded, regions, padding=0.1)
    np.testing.assert_array_equal(view, from_proto(wire))
