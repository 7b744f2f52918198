"""Retrieval metrics checked against rankings whose scores are computed by hand."""

from pathlib import Path

import pytest

from bench.qualitykit.manifest import Row
from bench.qualitykit.metrics import (
    QueryScores,
    per_category_recall1,
    query_scores,
    relevant_counts,
    summarise,
)


def test_relevant_at_ranks_1_and_3_of_2() -> None:
    scores = query_scores(["a", "x", "a", "y"], "a", relevant=2)
    assert (scores.hit_at_1, scores.hit_at_5, scores.hit_at_10) == (True, True, True)
    assert scores.ap_at_10 == pytest.approx((1 + 2 / 3) / 2)
    assert scores.rr == 1.0


def test_first_hit_at_rank_2_of_3_relevant() -> None:
    scores = query_scores(["x", "a", "y", "z", "a"], "a", relevant=3)
    assert not scores.hit_at_1
    assert (scores.hit_at_5, scores.hit_at_10) == (True, True)
    assert scores.ap_at_10 == pytest.approx((1 / 2 + 2 / 5) / 3)
    assert scores.rr == 0.5


def test_hit_only_at_rank_6() -> None:
    scores = query_scores(["x1", "x2", "x3", "x4", "x5", "a", "x7"], "a", relevant=1)
    assert (scores.hit_at_1, scores.hit_at_5, scores.hit_at_10) == (False, False, True)
    assert scores.ap_at_10 == pytest.approx(1 / 6)
    assert scores.rr == pytest.approx(1 / 6)


def test_more_than_ten_relevant_normalises_by_ten() -> None:
    perfect = query_scores(["a"] * 12, "a", relevant=25)
    assert perfect.ap_at_10 == pytest.approx(1.0)
    half = query_scores(["a", "x"] * 5, "a", relevant=25)
    assert half.ap_at_10 == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 7 + 5 / 9) / 10)


def test_hit_beyond_rank_10_counts_for_rr_only() -> None:
    scores = query_scores([f"x{i}" for i in range(11)] + ["a"], "a", relevant=1)
    assert not scores.hit_at_10
    assert scores.ap_at_10 == 0.0
    assert scores.rr == pytest.approx(1 / 12)


def test_no_relevant_item_returned() -> None:
    scores = query_scores(["x", "y", "z"], "a", relevant=4)
    assert scores == QueryScores(False, False, False, 0.0, 0.0)


def test_empty_ranking() -> None:
    assert query_scores([], "a", relevant=1) == QueryScores(False, False, False, 0.0, 0.0)


def test_zero_relevant_scores_zero() -> None:
    assert query_scores(["x"], "a", relevant=0).ap_at_10 == 0.0


def test_more_hits_than_relevant_is_rejected() -> None:
    with pytest.raises(ValueError, match="only 1 are relevant"):
        query_scores(["a", "a"], "a", relevant=1)
    with pytest.raises(ValueError, match=">= 0"):
        query_scores([], "a", relevant=-1)


def test_summarise_means_rounded() -> None:
    scores = [
        query_scores(["a", "x", "a"], "a", relevant=2),  # AP 5/6, RR 1
        query_scores(["x", "a"], "a", relevant=1),  # AP 1/2, RR 1/2
        query_scores(["x", "y"], "a", relevant=1),  # AP 0, RR 0
    ]
    assert summarise(scores) == {
        "recall@1": 0.3333,
        "recall@5": 0.6667,
        "recall@10": 0.6667,
        "map@10": round((5 / 6 + 1 / 2) / 3, 4),
        "mrr": 0.5,
    }


def test_summarise_empty_raises() -> None:
    with pytest.raises(ValueError, match="no query scores"):
        summarise([])


def test_per_category_recall1_sorted() -> None:
    hit = QueryScores(True, True, True, 1.0, 1.0)
    miss = QueryScores(False, False, False, 0.0, 0.0)
    result = per_category_recall1(["Milk", "Apple", "Milk", "Milk"], [hit, miss, hit, miss])
    assert list(result) == ["Apple", "Milk"]
    assert result["Apple"] == {"queries": 1, "recall@1": 0.0}
    assert result["Milk"] == {"queries": 3, "recall@1": 0.6667}


def test_per_category_recall1_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 categories for 1"):
        per_category_recall1(["a", "b"], [QueryScores(True, True, True, 1.0, 1.0)])


def _row(product_id: str, match_key: str, image: str) -> Row:
    return Row(Path("/m") / image, product_id, match_key, "c", "catalog", "train")


def test_relevant_counts_distinct_products() -> None:
    catalog = [
        _row("p1", "Shirts", "1a.jpg"),
        _row("p1", "Shirts", "1b.jpg"),  # second photo of the same product
        _row("p2", "Shirts", "2.jpg"),
        _row("p3", "Shoes", "3.jpg"),
        _row("p4", "", "4.jpg"),
    ]
    assert relevant_counts(catalog) == {"Shirts": 2, "Shoes": 1}
