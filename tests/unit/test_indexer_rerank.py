from services.indexer.rerank import CategoryRerank, rerank_by_category
from services.indexer.search import Hit

CATEGORIES = {"bag1": "Bags", "shoe1": "Shoes", "shoe2": "Shoes", "shoe3": "Shoes", "bag2": "Bags", "x": ""}


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(pid, sim, f"{pid}.jpg") for pid, sim in pairs]


def ids(ranked: list[Hit]) -> list[str]:
    return [h.product_id for h in ranked]


def test_the_neighbourhoods_category_overtakes_a_lone_look_alike() -> None:
    ranked = hits(("bag1", 0.80), ("shoe1", 0.79), ("shoe2", 0.78), ("shoe3", 0.70), ("bag2", 0.50))
    out = rerank_by_category(ranked, CATEGORIES.__getitem__, CategoryRerank(weight=0.1, neighbours=4))
    assert ids(out) == ["shoe1", "shoe2", "bag1", "shoe3", "bag2"]
    assert [h.similarity for h in out][:2] == [0.79, 0.78]  # reported similarities stay the cosine


def test_a_small_weight_only_breaks_near_ties() -> None:
    ranked = hits(("bag1", 0.90), ("shoe1", 0.60), ("shoe2", 0.59))
    out = rerank_by_category(ranked, CATEGORIES.__getitem__, CategoryRerank(weight=0.05, neighbours=3))
    assert ids(out) == ["bag1", "shoe1", "shoe2"]


def test_off_and_uncategorised_catalogs_keep_the_cosine_order() -> None:
    ranked = hits(("bag1", 0.8), ("shoe1", 0.79), ("shoe2", 0.78))
    assert rerank_by_category(ranked, CATEGORIES.__getitem__, CategoryRerank(weight=0.0)) is ranked
    blank = rerank_by_category(ranked, lambda _: "", CategoryRerank(weight=0.5))
    assert ids(blank) == ids(ranked)
    assert ids(rerank_by_category(hits(("x", 0.9)), CATEGORIES.__getitem__, CategoryRerank(0.5))) == ["x"]


def test_the_pool_reaches_past_the_page_only_when_enabled() -> None:
    assert CategoryRerank(weight=0.0).pool(10) == 10
    assert CategoryRerank(weight=0.1, neighbours=20, depth=50).pool(10) == 70
