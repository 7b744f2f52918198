"""From vector hits to products: a product scores its best-matching vector.

FAISS returns vectors, and one product may own many, so the k best vectors can be fewer than k
products. :func:`nearest_products` oversamples and doubles until every query has enough distinct
products (or the candidates run out), which keeps the result exact for a flat index.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.indexer.index import Similarities
from services.indexer.records import VectorIds, Vectors

# (queries (q, dim), n) -> ((q, n) similarities best-first, (q, n) ids padded with -1)
Searcher = Callable[[Vectors, int], tuple[Similarities, VectorIds]]
# vector ids -> {vector id: (product_id, image_key)}
Owners = Callable[[Sequence[int]], Mapping[int, tuple[str, str]]]


@dataclass(frozen=True)
class Hit:
    product_id: str
    similarity: float
    image_key: str


def first_fetch(need: int) -> int:
    """How many vectors to ask for first when ``need`` distinct products are wanted."""
    return need * 4 + 16


def group_by_product(
    sims: Similarities, ids: VectorIds, owners: Mapping[int, tuple[str, str]], exclude: str | None = None
) -> list[Hit]:
    """One row of best-first hits (n,), (n,) -> one Hit per product, best-first.

    Ids that are padding (-1) or unknown to ``owners`` are skipped, as is the ``exclude`` product.
    """
    best: dict[str, Hit] = {}
    for sim, vid in zip(sims.tolist(), ids.tolist(), strict=True):
        owner = owners.get(vid) if vid >= 0 else None
        if owner is None or owner[0] == exclude or owner[0] in best:
            continue
        best[owner[0]] = Hit(owner[0], sim, owner[1])
    return list(best.values())


def merge_best(lists: Iterable[list[Hit]]) -> list[Hit]:
    """Several best-first lists -> one, each product at its best similarity; ties by product_id."""
    best: dict[str, Hit] = {}
    for hits in lists:
        for hit in hits:
            seen = best.get(hit.product_id)
            if seen is None or hit.similarity > seen.similarity:
                best[hit.product_id] = hit
    return sorted(best.values(), key=lambda h: (-h.similarity, h.product_id))


def select_page(hits: list[Hit], offset: int, k: int, min_similarity: float) -> list[Hit]:
    kept = [h for h in hits if h.similarity >= min_similarity]
    return kept[offset : offset + k]


def nearest_products(
    search: Searcher,
    owners: Owners,
    queries: Vectors,
    need: int,
    candidates: int,
    min_similarity: float = -1.0,
    exclude: str | None = None,
) -> list[list[Hit]]:
    """For each query (q, dim), at least ``need`` products best-first when that many exist.

    ``candidates`` is how many vectors may match at all (index size, or the filter's allowed set);
    fetching that many is exhaustive, so the loop always ends.
    """
    results: list[list[Hit]] = [[] for _ in range(len(queries))]
    pending = list(range(len(queries)))
    n = min(first_fetch(need), candidates)
    while pending and n > 0:
        sims, ids = search(queries[pending], n)  # (p, n), (p, n)
        known = owners(np.unique(ids[ids >= 0]).tolist())
        still: list[int] = []
        for row, query in enumerate(pending):
            results[query] = group_by_product(sims[row], ids[row], known, exclude)
            if n < candidates and _wants_more(results[query], sims[row], ids[row], need, min_similarity):
                still.append(query)
        pending, n = still, min(n * 2, candidates)
    return results


def _wants_more(
    hits: list[Hit], sims: Similarities, ids: VectorIds, need: int, min_similarity: float
) -> bool:
    """More vectors can only help if the row was full and its worst hit still passed the threshold."""
    return len(hits) < need and ids[-1] >= 0 and float(sims[-1]) >= min_similarity
