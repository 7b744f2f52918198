"""Retrieval metrics over ranked product lists, computed per query and then averaged.

Rankings are of catalog *products* (not images), so a product with several photos counts once and
a query's number of relevant items is the number of distinct catalog products sharing its
match_key. All functions are pure so the numbers can be checked by hand in unit tests.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bench.qualitykit.manifest import Row

CUTOFF = 10
DECIMALS = 4


@dataclass(frozen=True)
class QueryScores:
    """What one query contributes to each averaged metric."""

    hit_at_1: bool
    hit_at_5: bool
    hit_at_10: bool
    ap_at_10: float
    rr: float


def query_scores(ranked_keys: Sequence[str], key: str, relevant: int) -> QueryScores:
    """Score one ranking (best first) against the query's match_key.

    AP@10 is normalised by min(relevant, 10) so a perfect top 10 scores 1 even when more than ten
    products are relevant. A ranking holding more relevant products than ``relevant`` says the
    caller counted images instead of products (or used another catalog), so it is rejected
    rather than allowed to push AP above 1.
    """
    if relevant < 0:
        raise ValueError(f"relevant must be >= 0, got {relevant}")
    hits = [k == key for k in ranked_keys]
    if sum(hits) > relevant:
        raise ValueError(
            f"ranking holds {sum(hits)} products with key {key!r}, but only {relevant} are relevant"
        )
    return QueryScores(
        hit_at_1=any(hits[:1]),
        hit_at_5=any(hits[:5]),
        hit_at_10=any(hits[:CUTOFF]),
        ap_at_10=_average_precision(hits[:CUTOFF], relevant),
        rr=_reciprocal_rank(hits),
    )


def _average_precision(hits: Sequence[bool], relevant: int) -> float:
    """Sum of precision@r at each relevant rank r, over the best achievable number of hits."""
    if relevant == 0:
        return 0.0
    total, found = 0.0, 0
    for rank, hit in enumerate(hits, start=1):
        if hit:
            found += 1
            total += found / rank
    return total / min(relevant, CUTOFF)


def _reciprocal_rank(hits: Sequence[bool]) -> float:
    """1/rank of the first relevant product anywhere in the returned list; 0 when there is none."""
    for rank, hit in enumerate(hits, start=1):
        if hit:
            return 1.0 / rank
    return 0.0


def summarise(scores: Sequence[QueryScores]) -> dict[str, float]:
    """Average over queries (fractions, 4 decimals); an empty set has no meaningful mean."""
    if not scores:
        raise ValueError("no query scores to summarise")
    n = len(scores)
    return {
        "recall@1": round(sum(s.hit_at_1 for s in scores) / n, DECIMALS),
        "recall@5": round(sum(s.hit_at_5 for s in scores) / n, DECIMALS),
        "recall@10": round(sum(s.hit_at_10 for s in scores) / n, DECIMALS),
        "map@10": round(sum(s.ap_at_10 for s in scores) / n, DECIMALS),
        "mrr": round(sum(s.rr for s in scores) / n, DECIMALS),
    }


def per_category_recall1(
    categories: Sequence[str], scores: Sequence[QueryScores]
) -> dict[str, dict[str, float | int]]:
    """Recall@1 per query category, sorted by name, to show where a pipeline gains or loses."""
    if len(categories) != len(scores):
        raise ValueError(f"{len(categories)} categories for {len(scores)} query scores")
    groups: defaultdict[str, list[bool]] = defaultdict(list)
    for category, score in zip(categories, scores, strict=True):
        groups[category].append(score.hit_at_1)
    return {
        category: {"queries": len(hits), "recall@1": round(sum(hits) / len(hits), DECIMALS)}
        for category, hits in sorted(groups.items())
    }


def relevant_counts(catalog: Sequence[Row]) -> dict[str, int]:
    """Distinct catalog products per match_key: several photos of one product count once.

    Rows without a match_key can never be relevant to a query, so they are not counted.
    """
    products = {(row.match_key, row.product_id) for row in catalog if row.match_key}
    return dict(Counter(match_key for match_key, _ in products))
