"""Descriptor pooling and retrieval post-processing measured by ``bench/quality_ablation.py``.

Everything is a pure numpy function on small arrays so each method can be checked by hand in
unit tests; the ablation script only runs the backbone and wires these together. Descriptors are
rows of a matrix; "unit" means L2-normalised rows (an all-zero row stays zero).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.embedder.views import view_boxes

Matrix = npt.NDArray[np.float32]  # (n, d)
FeatureMaps = npt.NDArray[np.float32]  # (n, c, h, w)
Indices = npt.NDArray[np.intp]
Vectors = dict[str, Matrix]  # descriptor name -> (n, d) rows, or one image's (d,) vectors
NORM_EPS = 1e-12


def unit(x: npt.NDArray[np.floating]) -> Matrix:
    """(n, d) -> (n, d) float32 rows of unit length; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)  # (n, 1)
    return np.asarray(x / np.maximum(norms, np.float32(NORM_EPS)), dtype=np.float32)


def unit_sum(views: npt.NDArray[np.floating]) -> Matrix:
    """(n, v, d) -> (n, d): the sum of each item's unit view vectors (not normalised again)."""
    return np.asarray(unit(views).sum(axis=1), dtype=np.float32)


def avg_pool(maps: FeatureMaps) -> Matrix:
    """(n, c, h, w) -> (n, c) spatial mean: what the backbone's GlobalAveragePool computes."""
    return np.asarray(maps.mean(axis=(2, 3)), dtype=np.float32)


def max_pool(maps: FeatureMaps) -> Matrix:
    """(n, c, h, w) -> (n, c) spatial maximum (MAC)."""
    return np.asarray(maps.max(axis=(2, 3)), dtype=np.float32)


def gem_pool(maps: FeatureMaps, p: float = 3.0, eps: float = 1e-6) -> Matrix:
    """(n, c, h, w) -> (n, c) generalised mean (mean of x^p)^(1/p); p=1 is avg, p->inf is max."""
    powered = np.maximum(maps, np.float32(eps)).astype(np.float64) ** p  # (n, c, h, w)
    return np.asarray(powered.mean(axis=(2, 3)) ** (1.0 / p), dtype=np.float32)


def regional_pool(maps: FeatureMaps, fraction: float = 0.7) -> Matrix:
    """(n, c, h, w) -> (n, c) unit: whole map + centre/corner windows, each avg-pooled, unit, summed.

    The windows are the multi-crop view boxes (services.embedder.views) laid on the map grid.
    """
    boxes = view_boxes(maps.shape[2], maps.shape[3], fraction)
    regions = np.stack([maps[:, :, y0:y1, x0:x1].mean(axis=(2, 3)) for y0, x0, y1, x1 in boxes], axis=1)
    return unit(unit_sum(regions))  # regions: (n, 1 + 5, c)


def aspect_size(height: int, width: int, longest: int = 320, multiple: int = 32) -> tuple[int, int]:
    """(h, w) keeping the aspect ratio with the longest side ~``longest``, both sides multiples of ``multiple``."""
    scale = longest / max(height, width)
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


def softmax(logits: npt.NDArray[np.floating]) -> Matrix:
    """(..., k) logits -> (..., k) probabilities along the last axis."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)


def semantic_vectors(probs: Matrix) -> Matrix:
    """(n, k) class probabilities -> (n, k) unit sqrt(p): their dot product is the Bhattacharyya coefficient."""
    return unit(np.sqrt(np.maximum(probs, 0.0)))


def product_scores(sims: Matrix, product_of_row: Indices, products: int) -> Matrix:
    """(q, rows) similarities -> (q, products): each product scores its best catalog row."""
    out = np.full((sims.shape[0], products), -np.inf, dtype=np.float32)
    np.maximum.at(out.T, product_of_row, sims.T)  # out.T: (products, q) view, rows (rows, q)
    return out


def top_indices(scores: Matrix, depth: int) -> Indices:
    """(q, p) scores -> (q, min(depth, p)) column indices, best first (ties: lower index first)."""
    depth = min(depth, scores.shape[1])
    part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]  # (q, depth) unordered
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


@dataclass(frozen=True)
class Whitening:
    """Centre on ``mean`` (d,), project on ``projection`` (k, d) rows scaled by eigenvalue^-power/2."""

    mean: npt.NDArray[np.float64]
    projection: npt.NDArray[np.float64]

    def apply(self, x: Matrix) -> Matrix:
        """(n, d) -> (n, k) unit whitened descriptors."""
        return unit((x - self.mean) @ self.projection.T)


def fit_whitening(x: Matrix, dims: int, power: float = 1.0, rel_eps: float = 1e-6) -> Whitening:
    """PCA-whitening fitted on (n, d) rows, keeping at most ``dims`` components of non-zero variance.

    power 1 is full whitening, 0.5 a softer one (divides by the std^0.5). Directions whose
    singular value is below rel_eps * the largest (a catalog of n rows spans at most n - 1) are
    dropped rather than amplified into noise.
    """
    mean = x.astype(np.float64).mean(axis=0)  # (d,)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)  # s: (r,), vt: (r, d)
    keep = min(dims, int(np.count_nonzero(s > rel_eps * s[0]))) if s.size and s[0] > 0 else 0
    std = s[:keep] / np.sqrt(len(x))  # (keep,) per-component standard deviation
    return Whitening(mean, vt[:keep] / (std[:, None] ** power))


def alpha_query_expansion(queries: Matrix, catalog: Matrix, top: int = 2, alpha: float = 3.0) -> Matrix:
    """(q, d), (r, d) unit -> (q, d) unit: query + its ``top`` nearest rows weighted by sim^alpha."""
    sims = queries @ catalog.T  # (q, r)
    nearest = top_indices(sims, top)  # (q, top)
    weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 0.0) ** alpha  # (q, top)
    return unit(queries + np.einsum("qt,qtd->qd", weights, catalog[nearest]))


def database_augmentation(catalog: Matrix, top: int = 2, alpha: float = 3.0) -> Matrix:
    """(r, d) unit -> (r, d) unit: each row replaced by its ``top`` nearest rows (itself included), sim^alpha-weighted."""
    sims = catalog @ catalog.T  # (r, r)
    nearest = top_indices(sims, top)  # (r, top)
    weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 0.0) ** alpha  # (r, top)
    return unit(np.einsum("rt,rtd->rd", weights, catalog[nearest]))


def category_rerank(
    scores: Matrix,
    categories: Indices,
    weight: float,
    neighbours: int = 10,
    depth: int = 50,
    power: float = 3.0,
) -> Matrix:
    """(q, p) product scores -> (q, p): + weight * share of the top products' sim^power votes for each one's category.

    ``categories`` (p,) holds a category index per product, -1 for none (never votes, never
    gains). As in services/indexer/rerank.py only the best ``neighbours + depth`` products can
    gain, and a query whose neighbours cast no vote keeps its scores.
    """
    ncat = int(categories.max()) + 1 if categories.size else 0
    if weight <= 0 or ncat == 0:
        return scores
    best = top_indices(scores, neighbours + depth)  # (q, pool)
    voters = best[:, :neighbours]  # (q, n)
    ballots = np.maximum(np.take_along_axis(scores, voters, axis=1), 0.0) ** power  # (q, n)
    voted = categories[voters]  # (q, n)
    votes = np.zeros((scores.shape[0], ncat + 1))  # last column collects the uncategorised
    np.add.at(votes, (np.arange(scores.shape[0])[:, None], np.where(voted >= 0, voted, ncat)), ballots)
    votes = votes[:, :ncat]
    share = votes / np.maximum(votes.sum(axis=1, keepdims=True), NORM_EPS)  # (q, ncat)
    pool_cats = categories[best]  # (q, pool)
    gain = np.where(pool_cats >= 0, np.take_along_axis(share, np.maximum(pool_cats, 0), axis=1), 0.0)
    out = scores.copy()
    np.put_along_axis(out, best, np.take_along_axis(scores, best, axis=1) + weight * gain, axis=1)
    return out


def category_indices(labels: Sequence[str]) -> Indices:
    """Category labels -> (n,) indices in sorted-label order, -1 for an empty label."""
    names = sorted({label for label in labels if label})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(label, -1) for label in labels], dtype=np.intp)


def evenly_spaced(n: int, limit: int | None) -> list[int]:
    """Indices of ``limit`` items spread over ``n`` (all of them when limit is None or >= n)."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, max(limit, 1))})


def image_descriptors(maps: FeatureMaps, aspect: FeatureMaps, weight: Matrix, bias: Matrix) -> Vectors:
    """One image's backbone runs -> raw (unnormalised) descriptors, each (c,), "probs" (k,).

    ``maps`` (2v, c, h, w): the v multi-crop views (view 0 is the seed's centre crop), then their
    mirrors; ``aspect`` (1, c, h', w'): the aspect-preserving run; ``weight`` (k, c) and ``bias``
    (k,): the ImageNet classifier head, applied to each pooled view.
    """
    views = maps.shape[0] // 2
    pooled = avg_pool(maps)  # (2v, c)
    return {
        "seed": pooled[0],
        "seed_mirror": pooled[views],
        "gem": gem_pool(maps[:1])[0],
        "max": max_pool(maps[:1])[0],
        "regional": regional_pool(maps[:1])[0],
        "mc": unit_sum(pooled[None, :views])[0],
        "mc_mirror": unit_sum(pooled[None, views:])[0],
        "aspect": avg_pool(aspect)[0],
        "aspect_gem": gem_pool(aspect)[0],
        "probs": softmax(pooled[:views] @ weight.T + bias).mean(axis=0),  # averaged over the views
    }


def derive(raw: Mapping[str, Matrix]) -> Vectors:
    """Raw descriptors (n, d) by name -> the unit descriptors the ablation compares."""
    return {
        "seed": unit(raw["seed"]),
        "seed+flip": unit(unit(raw["seed"]) + unit(raw["seed_mirror"])),
        "gem": unit(raw["gem"]),
        "max": unit(raw["max"]),
        "regional": unit(raw["regional"]),
        "aspect": unit(raw["aspect"]),
        "aspect+gem": unit(raw["aspect_gem"]),
        "mc": unit(raw["mc"]),
        "mc+flip": unit(raw["mc"] + raw["mc_mirror"]),  # all 12 unit view vectors summed
        "semantic": semantic_vectors(raw["probs"]),
    }


@dataclass(frozen=True)
class Split:
    """Unit descriptors of catalog rows, scored queries and train photos, and the catalog's products."""

    catalog: Vectors  # name -> (rows, d)
    queries: Vectors  # name -> (q, d)
    train: Vectors  # name -> (t, d); empty without train photos
    product_of_row: Indices  # (rows,)
    categories: Indices  # (products,), -1 = none

    def scores(self, queries: Matrix, catalog: Matrix) -> Matrix:
        """(q, d), (rows, d) -> (q, products) cosine, best row per product."""
        return product_scores(queries @ catalog.T, self.product_of_row, len(self.categories))

    def cosine(self, name: str) -> Matrix:
        """(q, products) plain cosine k-NN scores of one descriptor."""
        return self.scores(self.queries[name], self.catalog[name])

    def whitened(self, whitening: Whitening, name: str = "mc") -> Matrix:
        """(q, products) scores of one descriptor after ``whitening``."""
        return self.scores(whitening.apply(self.queries[name]), whitening.apply(self.catalog[name]))
