import numpy as np
import pytest

from services.embedder.views import (
    combine_views,
    expand_views,
    view_boxes,
    view_count,
    views_model_id,
)


def test_boxes_are_the_whole_image_then_centre_and_corner_crops() -> None:
    assert view_boxes(100, 200, 0.7) == [
        (0, 0, 100, 200),
        (15, 30, 85, 170),
        (0, 0, 70, 140),
        (0, 60, 70, 200),
        (30, 0, 100, 140),
        (30, 60, 100, 200),
    ]


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 900), (3, 2), (17, 33)])
def test_boxes_are_never_empty_and_stay_inside(height: int, width: int) -> None:
    for top, left, bottom, right in view_boxes(height, width, 0.7):
        assert 0 <= top < bottom <= height
        assert 0 <= left < right <= width


def test_expand_keeps_the_views_of_one_image_together() -> None:
    first = np.zeros((10, 20, 3), np.uint8)
    second = np.full((30, 10, 3), 255, np.uint8)
    views = expand_views([first, second], "multi-crop", 0.5)
    assert len(views) == 2 * view_count("multi-crop") == 12
    assert [v.shape for v in views[:2]] == [(10, 20, 3), (5, 10, 3)]
    assert all(v.max() == 0 for v in views[:6])
    assert all(v.min() == 255 for v in views[6:])
    assert expand_views([first], "whole", 0.5)[0] is first


def test_combine_sums_each_images_views_into_a_unit_vector() -> None:
    rows = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], np.float32)  # two images, two views each
    combined = combine_views(rows, 2)
    expected = np.array([[2**-0.5, 2**-0.5], [1.0, 0.0]], np.float32)
    assert np.allclose(combined, expected, atol=1e-6)
    assert combine_views(rows, 1) is rows


def test_model_id_names_the_views_so_indexes_never_mix_them() -> None:
    assert views_model_id("m@abc", "whole", 0.7) == "m@abc"
    assert views_model_id("m@abc", "multi-crop", 0.7) == "m@abc+mc70"
