from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.common.images import decode_image
from services.embedder.manifest import ModelEntry, ResolvedModel, load_manifest, resolve_model
from services.embedder.model import ModelError, OnnxEmbedder, flatten_features, l2_normalise
from services.embedder.preprocess import build_batch

WATCH_A = "fashion_products/images/10099.jpg"  # Fastrack Men Analogue Grey Watch
WATCH_B = "fashion_products/images/19291.jpg"  # Guess Women Quilty Black Watch
APPLE = "grocery_store/catalog/Pink-Lady_Iconic.jpg"


@pytest.fixture(scope="module")
def resolved(models_dir: Path) -> ResolvedModel:
    return resolve_model(load_manifest().get("mobilenetv2-features"), models_dir)


@pytest.fixture(scope="module")
def embedder(resolved: ResolvedModel) -> OnnxEmbedder:
    return OnnxEmbedder(resolved, threads=2)


def photo(datasets_dir: Path, path: str) -> npt.NDArray[np.uint8]:
    return decode_image((datasets_dir / path).read_bytes()).pixels


def embed(model: OnnxEmbedder, *images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return model.embed(build_batch(list(images), model.preprocessing))


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows_zero() -> None:
    vectors = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0], [-2.0, 0.0]])
    normalised = l2_normalise(vectors)
    assert normalised.dtype == np.float32
    expected = np.array([[0.6, 0.8], [0.0, 0.0], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(normalised, expected, atol=1e-7)
    assert np.isfinite(normalised).all()


def test_flatten_features_accepts_pooled_shapes_only() -> None:
    assert flatten_features(np.zeros((2, 7, 1, 1))).shape == (2, 7)
    assert flatten_features(np.zeros((2, 7))).shape == (2, 7)
    with pytest.raises(ModelError, match=r"got \[2, 7, 3, 3\]"):
        flatten_features(np.zeros((2, 7, 3, 3)))


def test_dim_and_id_are_read_from_the_model(embedder: OnnxEmbedder) -> None:
    assert embedder.dim == 1280
    assert embedder.model_id == "mobilenetv2-features@e69b04dfa63c"
    assert embed(embedder, np.zeros((32, 32, 3), np.uint8)).shape == (1, 1280)
    assert embedder.embed(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 1280)


def test_vectors_are_unit_norm_and_deterministic(embedder: OnnxEmbedder, datasets_dir: Path) -> None:
    watch = photo(datasets_dir, WATCH_A)
    vectors = embed(embedder, watch, watch, photo(datasets_dir, APPLE))
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)


def test_a_flipped_photo_stays_close(embedder: OnnxEmbedder, datasets_dir: Path) -> None:
    for path in (WATCH_A, APPLE):
        image = photo(datasets_dir, path)
        original, flipped = embed(embedder, image, image[:, ::-1])
        assert float(original @ flipped) > 0.9, path


def test_same_category_is_closer_than_another_category(embedder: OnnxEmbedder, datasets_dir: Path) -> None:
    watch_a, watch_b, apple = embed(embedder, *(photo(datasets_dir, p) for p in (WATCH_A, WATCH_B, APPLE)))
    # Measured: watch/watch 0.58, watch/apple 0.28.
    assert float(watch_a @ watch_b) > float(watch_a @ apple) + 0.15
    assert float(watch_a @ watch_b) > float(watch_b @ apple) + 0.15


def test_batch_equals_one_by_one(embedder: OnnxEmbedder, datasets_dir: Path) -> None:
    images = [photo(datasets_dir, p) for p in (WATCH_A, WATCH_B, APPLE)] + [np.zeros((3, 900, 3), np.uint8)]
    batched = embed(embedder, *images)
    singles = np.concatenate([embed(embedder, image) for image in images])
    np.testing.assert_allclose(batched, singles, atol=1e-4)


def test_int8_variant_agrees_with_fp32(embedder: OnnxEmbedder, models_dir: Path, datasets_dir: Path) -> None:
    int8 = OnnxEmbedder(resolve_model(load_manifest().get("mobilenetv2-features-int8"), models_dir))
    assert int8.dim == 1280
    assert int8.model_id.startswith("mobilenetv2-features-int8@43bf3262314a")
    images = [photo(datasets_dir, p) for p in (WATCH_A, APPLE)]
    cosines = np.sum(embed(embedder, *images) * embed(int8, *images), axis=1)
    assert cosines.min() > 0.97  # MODELS.md: mean 0.9935, min 0.9894 on 22 images


def with_entry(resolved: ResolvedModel, **changes: object) -> ResolvedModel:
    entry = ModelEntry.model_validate({**resolved.entry.model_dump(), **changes})
    return ResolvedModel(entry, resolved.path, resolved.sha256)


def test_wrong_tensor_names_list_the_real_ones(resolved: ResolvedModel) -> None:
    with pytest.raises(ModelError, match=r"has inputs \['input'\] and outputs \['embedding'\].*'features'"):
        OnnxEmbedder(with_entry(resolved, output="features"))
    with pytest.raises(ModelError, match=r"names input 'images'"):
        OnnxEmbedder(with_entry(resolved, input="images"))


def test_manifest_dim_and_crop_are_checked_against_the_model(resolved: ResolvedModel) -> None:
    with pytest.raises(ModelError, match=r"produces 1280-d vectors but .* says dim = 2048"):
        OnnxEmbedder(with_entry(resolved, dim=2048))
    with pytest.raises(ModelError, match=r"is 224x224 but the manifest crops 299x299"):
        OnnxEmbedder(with_entry(resolved, resize_shorter=320, crop=299))


def test_a_corrupt_file_is_a_clear_error(resolved: ResolvedModel, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match=r"cannot load ONNX model .*broken\.onnx"):
        OnnxEmbedder(ResolvedModel(resolved.entry, broken, "0" * 64))


def test_parallel_chunked_runs_give_the_vectors_of_one_run(
    resolved: ResolvedModel, datasets_dir: Path
) -> None:
    # 7 images over 2 threads in chunks of at most 3: uneven chunks, rows must stay in order.
    images = [photo(datasets_dir, p) for p in (WATCH_A, WATCH_B, APPLE)] * 2 + [photo(datasets_dir, APPLE)]
    batch = build_batch(images, OnnxEmbedder(resolved, threads=1).preprocessing)
    one_run = OnnxEmbedder(resolved, threads=1, run_chunk=64)
    chunked = OnnxEmbedder(resolved, threads=2, run_chunk=3)
    try:
        np.testing.assert_allclose(chunked.embed(batch), one_run.embed(batch), atol=1e-5)
        # The micro-batcher hands over items (one (3, crop, crop) array each), not one tensor.
        np.testing.assert_allclose(chunked.embed(list(batch)), one_run.embed(batch), atol=1e-5)
    finally:
        chunked.close()


def test_threads_and_run_chunk_must_be_positive(resolved: ResolvedModel) -> None:
    with pytest.raises(ValueError, match="threads >= 1"):
        OnnxEmbedder(resolved, threads=0)
    with pytest.raises(ValueError, match="run_chunk >= 1"):
        OnnxEmbedder(resolved, run_chunk=0)
