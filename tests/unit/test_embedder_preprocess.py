import numpy as np
import numpy.typing as npt
import pytest

from services.embedder.manifest import load_manifest
from services.embedder.preprocess import (
    PreprocessSpec,
    build_batch,
    centre_crop,
    resize_and_crop,
    resize_shorter,
    resized_size,
)

MOBILENET = load_manifest().get("mobilenetv2-features").preprocessing
TORCHVISION = load_manifest().get("resnet50").preprocessing
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])  # torchvision's constants, in 0..1 units
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def constant(height: int, width: int, rgb: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (height, width, 3)).copy()


def random_image(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [(300, 400, (256, 341)), (400, 300, (341, 256)), (256, 256, (256, 256)), (3, 900, (256, 76800))],
)
def test_resized_size_sets_the_shorter_side(height: int, width: int, expected: tuple[int, int]) -> None:
    assert resized_size(height, width, 256) == expected


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (224, 224), (17, 33), (1, 1), (3, 900), (900, 3)])
def test_any_size_gives_the_model_shape(shape: tuple[int, int]) -> None:
    batch = build_batch([random_image(*shape), random_image(50, 60)], MOBILENET)
    assert batch.shape == (2, 3, 224, 224)
    assert batch.dtype == np.float32
    assert batch.flags.c_contiguous
    assert np.isfinite(batch).all()


def test_empty_batch() -> None:
    assert build_batch([], MOBILENET).shape == (0, 3, 224, 224)


@pytest.mark.parametrize(("value", "expected"), [(0, -1.0), (255, 1.0), (51, -0.6), (204, 0.6)])
def test_mobilenet_normalisation_is_minus_one_to_one(value: int, expected: float) -> None:
    batch = build_batch([constant(300, 200, (value, value, value))], MOBILENET)
    np.testing.assert_allclose(batch, expected, atol=1e-6)


def test_torchvision_normalisation_per_channel() -> None:
    rgb = (200, 100, 50)
    batch = build_batch([constant(240, 320, rgb)], TORCHVISION)  # (1, 3, 224, 224)
    expected = (np.array(rgb) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD  # ~ [1.44, -0.28, -0.93]
    for channel in range(3):
        np.testing.assert_allclose(batch[0, channel], expected[channel], atol=1e-5)


def test_bgr_models_get_channels_reversed() -> None:
    spec = PreprocessSpec(224, 224, (0.0, 0.0, 0.0), (1.0, 2.0, 4.0), bgr=True)
    batch = build_batch([constant(224, 224, (10, 20, 40))], spec)
    np.testing.assert_array_equal(batch[0, :, 0, 0], [40.0, 10.0, 2.5])  # B/1, G/2, R/4


def test_centre_crop_keeps_the_middle() -> None:
    # Left and right quarters red and blue, the middle half green: the centre crop is all green.
    wide = constant(256, 512, (0, 255, 0))
    wide[:, :128] = (255, 0, 0)
    wide[:, 384:] = (0, 0, 255)
    np.testing.assert_array_equal(resize_and_crop(wide, 256, 224), constant(224, 224, (0, 255, 0)))
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    np.testing.assert_array_equal(resize_and_crop(tall, 256, 224), constant(224, 224, (0, 255, 0)))


@pytest.mark.parametrize("shape", [(300, 400), (512, 341), (17, 33), (5, 400), (224, 500), (1, 1)])
def test_fused_resize_crop_matches_resize_then_crop(shape: tuple[int, int]) -> None:
    image = random_image(*shape, seed=sum(shape))
    two_step = centre_crop(resize_shorter(image, 256), 224)
    fused = resize_and_crop(image, 256, 224)
    # Same sample positions and filter; only the uint8 rounding of PIL's two passes may differ.
    assert np.abs(fused.astype(int) - two_step.astype(int)).max() <= 1


def test_identity_resize_is_exact() -> None:
    image = random_image(256, 320)
    np.testing.assert_array_equal(resize_and_crop(image, 256, 224), image[16:240, 48:272])


def test_non_contiguous_and_read_only_input() -> None:
    image = random_image(256, 320)  # an even margin around the crop: flipping commutes with cropping
    flipped = image[:, ::-1]
    read_only = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.shape)
    batch = build_batch([flipped, read_only], MOBILENET)
    np.testing.assert_array_equal(batch[0], batch[1][:, :, ::-1])


def test_spec_rejects_a_crop_bigger_than_the_resize() -> None:
    with pytest.raises(ValueError, match="resize_shorter"):
        PreprocessSpec(200, 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
