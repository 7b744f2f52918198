"""The ablation's pooling and post-processing on tiny arrays whose results are worked out by hand."""

import numpy as np
import numpy.typing as npt
import pytest

from bench.qualitykit.ablation_methods import (
    alpha_query_expansion,
    aspect_size,
    avg_pool,
    category_indices,
    category_rerank,
    database_augmentation,
    evenly_spaced,
    fit_whitening,
    gem_pool,
    max_pool,
    product_scores,
    regional_pool,
    semantic_vectors,
    top_indices,
    unit,
    unit_sum,
)


def f32(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    return np.asarray(values, dtype=np.float32)


def test_unit_and_unit_sum() -> None:
    np.testing.assert_allclose(unit(f32([[3, 4], [0, 0]])), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    summed = unit_sum(f32([[[2, 0], [0, 5]]]))  # (1 item, 2 views, 2 dims)
    np.testing.assert_allclose(summed, [[1, 1]])


def test_pools_of_one_channel() -> None:
    maps = f32([[[[1, 2], [3, 6]]]])  # (1, 1, 2, 2)
    assert avg_pool(maps).tolist() == [[3.0]]
    assert max_pool(maps).tolist() == [[6.0]]
    assert gem_pool(maps, p=1.0)[0, 0] == pytest.approx(3.0)
    assert gem_pool(maps, p=3.0)[0, 0] == pytest.approx(((1 + 8 + 27 + 216) / 4) ** (1 / 3))
    assert gem_pool(maps, p=50.0)[0, 0] == pytest.approx(6.0, rel=0.03)


def test_regional_pool_sums_unit_vectors_of_whole_map_and_five_windows() -> None:
    maps = np.zeros((1, 2, 4, 4), np.float32)
    maps[0, 0] = 1.0  # channel 0 everywhere
    maps[0, 1, :2, :2] = 1.0  # channel 1 only in the top-left quarter
    # fraction 0.5 on 4x4: 2x2 windows at the centre (rows/cols 1-2) and the four corners
    whole, centre = f32([1, 0.25]), f32([1, 0.25])
    top_left, other = f32([1, 1]), f32([1, 0])
    expected = sum(v / np.linalg.norm(v) for v in (whole, centre, top_left, other, other, other))
    np.testing.assert_allclose(regional_pool(maps, 0.5)[0], expected / np.linalg.norm(expected), rtol=1e-6)


def test_regional_pool_of_a_uniform_map_is_its_direction() -> None:
    maps = np.ones((2, 3, 7, 7), np.float32) * f32([1, 2, 2])[None, :, None, None]
    np.testing.assert_allclose(regional_pool(maps), [[1 / 3, 2 / 3, 2 / 3]] * 2, rtol=1e-6)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((384, 640), (192, 320)),
        ((640, 384), (320, 192)),
        ((480, 640), (256, 320)),
        ((100, 1000), (32, 320)),
        ((512, 512), (320, 320)),
    ],
)
def test_aspect_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert aspect_size(*size) == expected


def test_product_scores_take_the_best_row_per_product() -> None:
    sims = f32([[0.1, 0.9, 0.3, 0.2], [0.5, 0.4, 0.1, 0.7]])  # (2 queries, 4 rows)
    out = product_scores(sims, np.array([1, 0, 1, 2], np.intp), 3)
    np.testing.assert_allclose(out, [[0.9, 0.3, 0.2], [0.4, 0.5, 0.7]])


def test_top_indices_best_first_ties_by_index() -> None:
    scores = f32([[0.2, 0.9, 0.5, 0.9, 0.1]])
    assert top_indices(scores, 3).tolist() == [[1, 3, 2]]
    assert top_indices(scores, 10).tolist() == [[1, 3, 2, 0, 4]]


def test_alpha_query_expansion_adds_the_two_nearest_weighted_by_sim_cubed() -> None:
    catalog = f32([[1, 0], [0, 1], [-1, 0]])
    query = f32([[0.8, 0.6]])  # sims 0.8, 0.6, -0.8
    expected = f32([0.8 + 0.8**3, 0.6 + 0.6**3])
    np.testing.assert_allclose(alpha_query_expansion(query, catalog)[0], unit(expected[None])[0], rtol=1e-6)
    # a third neighbour with a negative similarity gets weight 0
    np.testing.assert_allclose(
        alpha_query_expansion(query, catalog, top=3), alpha_query_expansion(query, catalog)
    )


def test_database_augmentation_mixes_each_row_with_its_nearest_other_row() -> None:
    catalog = f32([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    out = database_augmentation(catalog)
    np.testing.assert_allclose(out[0], unit(f32([[1 + 0.216 * 0.6, 0.216 * 0.8]]))[0], rtol=1e-6)
    np.testing.assert_allclose(out[2], unit(f32([[0.512 * 0.6, 1 + 0.512 * 0.8]]))[0], rtol=1e-6)


def test_whitening_gives_identity_covariance_on_the_fitted_rows() -> None:
    x = f32([[3, 0, 1], [-3, 0, 1], [0, 1, 1], [0, -1, 1]])  # mean (0, 0, 1), variances 4.5 and 0.5
    w = fit_whitening(x, dims=8, power=1.0)
    assert w.projection.shape == (2, 3)  # the constant third axis has no variance: dropped
    projected = (x - w.mean) @ w.projection.T  # (4, 2)
    np.testing.assert_allclose(projected.T @ projected / len(x), np.eye(2), atol=1e-9)
    soft = fit_whitening(x, dims=1, power=0.5)  # only the main axis, divided by std^0.5
    np.testing.assert_allclose(
        np.abs((x - soft.mean) @ soft.projection.T)[:, 0], [3 / 4.5**0.25] * 2 + [0, 0], atol=1e-9
    )
    np.testing.assert_allclose(np.abs(w.apply(x)), [[1, 0], [1, 0], [0, 1], [0, 1]], atol=1e-6)


def test_whitening_is_capped_at_the_rank_of_few_rows() -> None:
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    assert fit_whitening(x, dims=128).projection.shape == (4, 16)


CATEGORIES = np.array([0, 1, 1, -1, 0], np.intp)


def test_category_rerank_adds_the_vote_share_of_each_products_category() -> None:
    scores = f32([[0.9, 0.85, 0.8, 0.1, 0.05]])
    cat0, cat1 = 0.9**3, 0.85**3 + 0.8**3  # the 3 nearest vote with similarity^3
    share0, share1 = cat0 / (cat0 + cat1), cat1 / (cat0 + cat1)
    out = category_rerank(scores, CATEGORIES, 0.1, neighbours=3, depth=1)
    np.testing.assert_allclose(out[0, :4], [0.9 + 0.1 * share0, 0.85 + 0.1 * share1, 0.8 + 0.1 * share1, 0.1])
    assert out[0, 4] == pytest.approx(0.05)  # category 0, but beyond neighbours + depth: no gain
    assert top_indices(category_rerank(scores, CATEGORIES, 0.5, neighbours=3, depth=1), 2).tolist() == [
        [1, 2]
    ]


def test_category_rerank_leaves_scores_without_votes_or_weight() -> None:
    scores = f32([[-0.1, -0.2, -0.3, 0.9, -0.5]])  # the only positive neighbour has no category
    np.testing.assert_allclose(category_rerank(scores, CATEGORIES, 0.1, neighbours=3), scores)
    assert category_rerank(scores, CATEGORIES, 0.0) is scores
    assert category_rerank(scores, np.full(5, -1, np.intp), 0.1) is scores  # no product has a category


def test_semantic_vectors_dot_is_the_bhattacharyya_coefficient() -> None:
    p, q = f32([0.5, 0.5, 0.0]), f32([0.25, 0.25, 0.5])
    vectors = semantic_vectors(np.stack([p, q]))
    assert float(vectors[0] @ vectors[1]) == pytest.approx(float(np.sqrt(p * q).sum()))


def test_category_indices_and_evenly_spaced() -> None:
    assert category_indices(["b", "", "a", "b"]).tolist() == [1, -1, 0, 1]
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(3, None) == [0, 1, 2]
    assert evenly_spaced(3, 5) == [0, 1, 2]
