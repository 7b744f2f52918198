import numpy as np
import pytest

from services.detector.postprocess import undo_letterbox
from services.detector.preprocess import PAD_VALUE, choose_input, letterbox, letterbox_geometry


@pytest.mark.parametrize(
    ("height", "width", "ratio", "new_size", "pad"),
    [
        (288, 512, 1.25, (640, 360), (0, 140)),  # landscape: full width, padded top and bottom
        (512, 384, 1.25, (480, 640), (80, 0)),  # portrait: full height, padded left and right
        (1280, 1280, 0.5, (640, 640), (0, 0)),  # square: no padding
        (100, 641, 640 / 641, (640, 100), (0, 270)),  # rounding of the short side
    ],
)
def test_geometry(
    height: int, width: int, ratio: float, new_size: tuple[int, int], pad: tuple[int, int]
) -> None:
    got_ratio, got_size, got_pad = letterbox_geometry(height, width, 640)
    assert got_ratio == pytest.approx(ratio)
    assert got_size == new_size
    assert got_pad == pad


def test_tensor_layout_scale_and_padding() -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red
    boxed = letterbox(pixels, 64)
    assert boxed.tensor.shape == (1, 3, 64, 64)
    assert boxed.tensor.dtype == np.float32
    assert boxed.pad == (0, 16)
    # Image rows are red in 0..1, the padding rows are grey 114/255 in every channel.
    assert boxed.tensor[0, :, 32, 10].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert boxed.tensor[0, :, 5, 10].tolist() == pytest.approx([PAD_VALUE / 255] * 3)


def test_bgr_raw_range_for_yolox() -> None:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[..., 0] = 200  # red
    boxed = letterbox(pixels, 32, bgr=True, scale=1.0)
    assert boxed.ratio == 1.0
    assert boxed.tensor[0, :, 0, 0].tolist() == [0.0, 0.0, 200.0]  # B, G, R


@pytest.mark.parametrize(("height", "width"), [(300, 500), (500, 300), (37, 91)])
def test_box_round_trip_through_the_letterbox(height: int, width: int) -> None:
    """A bright rectangle drawn in the source image comes back at its own coordinates."""
    x1, y1, x2, y2 = width // 4, height // 3, width // 2, (2 * height) // 3
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[y1:y2, x1:x2] = 255
    boxed = letterbox(pixels, 320)
    bright = np.argwhere(boxed.tensor[0, 0] > 0.5)  # (K, 2) as (row, col) in letterbox pixels
    (top, left), (bottom, right) = bright.min(axis=0), bright.max(axis=0) + 1
    found = np.array([[left, top, right, bottom]], dtype=np.float32)
    back = undo_letterbox(found, boxed.ratio, boxed.pad, width, height)[0]
    # Bilinear resampling blurs each edge by up to about one source pixel.
    tolerance = 1.0 + 1.0 / boxed.ratio
    assert back.tolist() == pytest.approx([x1, y1, x2, y2], abs=tolerance)


CANVASES = {640: [(640, 640), (384, 640), (480, 640), (640, 384), (640, 480)], 320: [(320, 320)]}


@pytest.mark.parametrize(
    ("height", "width", "size", "canvas"),
    [
        (3024, 4032, 640, (480, 640)),  # a 4:3 phone photo
        (4032, 3024, 640, (640, 480)),  # the same, held upright
        (1080, 1920, 640, (384, 640)),  # a 16:9 video frame: 360 rows fit 384
        (1000, 1500, 640, (480, 640)),  # 3:2: 427 rows need the 480 rectangle
        (2000, 2000, 640, (640, 640)),
        (500, 400, 640, (640, 640)),  # 640x512 fits no rectangle but the square
        (224, 224, 320, (320, 320)),  # a thumbnail is not blown up to 640
        (320, 100, 320, (320, 320)),
        (321, 100, 640, (640, 384)),  # just above the small size: the full size again
    ],
)
def test_the_smallest_input_that_holds_the_photo_is_chosen(
    height: int, width: int, size: int, canvas: tuple[int, int]
) -> None:
    assert choose_input(height, width, CANVASES) == (size, canvas)


def test_a_rectangular_canvas_keeps_the_scale_and_centres_the_photo() -> None:
    pixels = np.full((300, 400, 3), 200, dtype=np.uint8)
    square = letterbox(pixels, 640)
    rect = letterbox(pixels, 640, canvas=(480, 640))
    assert rect.tensor.shape == (1, 3, 480, 640)
    assert rect.ratio == square.ratio == 1.6
    assert (square.pad, rect.pad) == ((0, 80), (0, 0))
    assert np.array_equal(rect.tensor, square.tensor[:, :, 80:560])  # the same pixels, less padding
    with pytest.raises(ValueError, match="does not fit"):
        letterbox(pixels, 640, canvas=(384, 640))
