from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from services.indexer.index import Similarities
from services.indexer.records import VectorIds, Vectors
from services.indexer.search import (
    Hit,
    first_fetch,
    group_by_product,
    merge_best,
    nearest_products,
    select_page,
)

OWNERS = {1: ("a", "a1"), 2: ("a", "a2"), 3: ("b", "b1"), 4: ("c", "c1"), 5: ("b", "b2")}


def test_group_keeps_each_products_best_vector_in_order() -> None:
    sims = np.array([0.9, 0.8, 0.7, 0.6, -1.0], dtype=np.float32)
    ids = np.array([2, 1, 5, 4, -1], dtype=np.int64)
    hits = group_by_product(sims, ids, OWNERS)
    assert [(h.product_id, h.image_key) for h in hits] == [("a", "a2"), ("b", "b2"), ("c", "c1")]
    assert hits[0].similarity == pytest.approx(0.9)


def test_group_skips_excluded_product_and_unknown_ids() -> None:
    sims = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    ids = np.array([1, 99, 3], dtype=np.int64)
    assert [h.product_id for h in group_by_product(sims, ids, OWNERS, exclude="a")] == ["b"]


def test_merge_best_takes_the_max_per_product() -> None:
    merged = merge_best(
        [[Hit("a", 0.5, "a1"), Hit("b", 0.4, "b1")], [Hit("b", 0.9, "b2"), Hit("c", 0.5, "c1")]]
    )
    assert [(h.product_id, h.similarity, h.image_key) for h in merged] == [
        ("b", 0.9, "b2"),
        ("a", 0.5, "a1"),
        ("c", 0.5, "c1"),  # ties broken by product_id
    ]


def test_select_page_applies_threshold_then_offset_and_k() -> None:
    hits = [Hit(p, s, "") for p, s in [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.2)]]
    assert [h.product_id for h in select_page(hits, 1, 2, -1.0)] == ["b", "c"]
    assert [h.product_id for h in select_page(hits, 0, 10, 0.75)] == ["a", "b"]
    assert select_page(hits, 4, 10, -1.0) == []


class FakeIndex:
    """Brute force over explicit vectors, recording how many vectors each call asked for."""

    def __init__(self, vectors: Vectors, owners: dict[int, tuple[str, str]]) -> None:
        self.vectors, self.owners = vectors, owners
        self.ids = np.array(sorted(owners), dtype=np.int64)
        self.calls: list[int] = []

    def search(self, queries: Vectors, n: int) -> tuple[Similarities, VectorIds]:
        self.calls.append(n)
        sims = queries @ self.vectors.T  # (q, total)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(sims, order, axis=1).astype(np.float32), self.ids[order]

    def lookup(self, ids: Sequence[int]) -> Mapping[int, tuple[str, str]]:
        return {i: self.owners[i] for i in ids}


def crowded_index(crowd: int) -> FakeIndex:
    """One product owns the `crowd` vectors nearest the query [1, 0]; ten others follow, farther."""
    angles = np.concatenate([np.linspace(0.0, 0.1, crowd), np.linspace(0.5, 1.5, 10)])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)  # (crowd + 10, 2)
    owners = {i + 1: ("big", f"v{i}") for i in range(crowd)}
    owners |= {crowd + j + 1: (f"p{j}", "only") for j in range(10)}
    return FakeIndex(vectors, owners)


QUERY = np.array([[1.0, 0.0]], dtype=np.float32)


def test_oversampling_doubles_until_enough_distinct_products() -> None:
    index = crowded_index(crowd=100)  # more vectors than the first fetch for need=3
    [hits] = nearest_products(index.search, index.lookup, QUERY, need=3, candidates=110)
    assert [h.product_id for h in hits[:3]] == ["big", "p0", "p1"]
    first = first_fetch(3)
    assert index.calls[0] == first
    assert index.calls[1:] == [min(first * 2**i, 110) for i in range(1, len(index.calls))]


def test_oversampling_stops_when_the_candidates_are_exhausted() -> None:
    index = crowded_index(crowd=5)
    [hits] = nearest_products(index.search, index.lookup, QUERY, need=50, candidates=15)
    assert index.calls == [15]
    assert len(hits) == 11


def test_oversampling_stops_once_hits_fall_below_min_similarity() -> None:
    index = crowded_index(crowd=100)
    [hits] = nearest_products(
        index.search, index.lookup, QUERY, need=3, candidates=110, min_similarity=0.9999
    )
    assert index.calls == [first_fetch(3)]
    assert [h.product_id for h in hits] == ["big"]


def test_nearest_excludes_a_product_and_still_fills() -> None:
    index = crowded_index(crowd=100)
    [hits] = nearest_products(index.search, index.lookup, QUERY, need=2, candidates=110, exclude="big")
    assert [h.product_id for h in hits[:2]] == ["p0", "p1"]


def test_nearest_with_no_candidates_returns_empty_lists() -> None:
    index = crowded_index(crowd=1)
    assert nearest_products(index.search, index.lookup, np.vstack([QUERY, QUERY]), 3, 0) == [[], []]
    assert index.calls == []
